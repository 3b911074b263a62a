"""The project's tools, one package per tool. Each runs from the repository root as `python -m scripts.<tool>`
(or `scripts.<tool>.<command>` where a package holds several commands); the Makefile's targets call them.

* pr_diff: `make diff`, the risk summary of a change per environment stack.
* local: `make local-api`, `local-invoke`, `local-event`, `local-user`; the Lambda functions on this machine.
* bench: `make bench`, this bundler against `sam build`, and the catalog-size benchmark.
* diagram: `make diagram`, the architecture SVG drawn from cdk.out/tree.json.
* deploy: `make deploy`'s guard, `make wait-deployments`, `make smoke`.
* bundle: the bundler's command line (a cold bundle) and `make lock`.
* checkov_gate: `make synth`'s offline checkov gate.
* alarm_table: `make lint`'s check of README's alarm table.
* dependency_graph: `make graph`, which functions reach which shared backend modules.
"""
