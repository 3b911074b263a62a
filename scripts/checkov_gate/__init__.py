"""`make synth`'s checkov gate: `python -m scripts.checkov_gate --dir cdk.out --summary` fails on any checkov
finding that is neither fixed nor skipped with its reason (gate.py)."""
