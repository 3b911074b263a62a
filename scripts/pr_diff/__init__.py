"""The PR diff: `make diff` (and CI) writes cdk.out/diff/<stack>.md, a risk summary on top of `cdk diff`.

Entry point: `python -m scripts.pr_diff [--base REF] [--offline] [--stacks S1,S2] [--out DIR]` (cli.py).

* cli: synthesizes base and head (worktree or deployed template) and writes one report per stack;
* inputs, model: templates, stack policies and asset manifests read into a typed model;
* library: @aws-cdk/cloudformation-diff's verdict, through cfn_diff.mjs run with the pinned Node;
* summary, render: this project's judgement on the changes (policy, canaries, replacements) as Markdown;
* source_impact, migration_diff: which functions run a changed source file; the migrations a deploy applies.
"""
