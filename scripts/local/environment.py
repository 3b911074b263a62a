"""One environment's configuration read from cdk.json as the app reads it, for the tools that build or serve
the backend outside `cdk synth` (the local API, `python -m scripts.bundle.build`, the benchmark).

Kept apart from edit_loop.py so that the bundler's command line does not import the emulator and the HTTP
stack just to read cdk.json (a fifth of a second of its cold run).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stacks.config import ConfigError, parse_environments

REPO_ROOT = Path(__file__).resolve().parents[2]


def environment_config(context: Mapping[str, str], environment: str) -> Any:
    """The environment's configuration as the app reads it: cdk.json's context, then `-c` values."""
    merged: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    for key, value in context.items():
        try:
            merged[key] = json.loads(value)
        except ValueError:
            merged[key] = value
    environments = parse_environments(merged["environments"], merged.get("functions"))
    if environment not in environments:
        raise ConfigError(
            f"environment {environment!r} is not in cdk.json; one of: {', '.join(environments)}"
        )
    return environments[environment]
