"""The local runtime: the synthesized stack's functions on this machine, under the Lambda RIE.

* api: `make local-api` (`python -m scripts.local.api --env ENV --port PORT [--watch]`), the environment's
  API on 127.0.0.1; edit_loop and zygote are its `--watch` fast path;
* invoke: `make local-invoke` (`python -m scripts.local.invoke --function F --event E`), one handler;
* event: `make local-event` (`python -m scripts.local.event --env ENV --function F --kind sqs|schedule`);
* user: `make local-user` (`python -m scripts.local.user --env ENV --email E --password-stdin`);
* stack: the synthesized template read as functions and triggers (shared by the commands above); routes,
  proxy and gateway: API Gateway's part; assets: zip assets unzipped once, the folder bounded;
* postgres, database: a real local PostgreSQL server and the environment's migrated database in it;
* fetch_rie: the emulator binary, from the pinned aws-sam-cli wheel; emulator: runs a bundle under it;
* environment and backend: cdk.json's environment, and the backend bundle as the stack builds it.
"""
