"""Deploy tools, each `python -m scripts.deploy.<name>`:

* guard: `make deploy` runs it before synth (refuses hotswap/watch in staging and prod) and on the assembly
  it then deploys (refuses an unverified bundle);
* wait_deployments: `make wait-deployments`, waits for the stack's CodeDeploy deployments to finish;
* smoke_test: `make smoke URL=...`, the post-traffic hook's API checks from a laptop.
"""
