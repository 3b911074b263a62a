"""The local runtime: the synthesized stack's functions on this machine, under the Lambda RIE.

* api: `make local-api` (`python -m scripts.local.api --env ENV --port PORT [--watch]`), the environment's
  API on 127.0.0.1; edit_loop and zygote are its `--watch` fast path;
* invoke: `make local-invoke` (`python -m scripts.local.invoke --function F --event E`), one handler;
* event: `make local-event` (`python -m scripts.local.event --env ENV --function F --kind sqs|schedule`);
* user: `make local-user` (`python -m scripts.local.user --env ENV --email E --password-stdin`);
* stack: the synthesized template read as functions and triggers (shared by the commands above); routes,
  proxy and gateway: API Gateway's part; assets: zip assets unzipped once, the folder bounded;
* postgres, database: a real local PostgreSQL server and the environment's migrated database in it;
* fetch_rie: the emulator binary, from the pinned aws-sam-cli wheel.

The emulator driver itself (tests/harness/rie.py) lives with the harness tests that share it.
"""

import sys
from pathlib import Path

# The emulator driver (rie) and the bundle helpers (harness_bundles) live in tests/harness, shared with the
# harness tests, which import them by their own names; the package makes that folder importable once, here,
# before any of its modules runs.
_HARNESS = str(Path(__file__).resolve().parents[2] / "tests" / "harness")
if _HARNESS not in sys.path:
    sys.path.insert(0, _HARNESS)
