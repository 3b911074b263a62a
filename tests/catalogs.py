"""Function catalogs for the scale tests and the benchmark: today's catalog plus N more of mixed triggers.

The added functions reuse the sample backend's real handlers (what matters is that no code names them), so
they bundle and verify like the real ones. Names include ones the stacks use themselves (`Api`, `Alarms`,
`Dashboard`, `Key`), which must synthesize like any other.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TRIGGER_CYCLE = ("api", "sqs", "schedule", "none")
AWKWARD_NAMES = ("Api", "Alarms", "Dashboard", "Key")


def base_catalog() -> dict[str, Any]:
    return copy.deepcopy(json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["functions"])


def extra_function(i: int, name: str) -> dict[str, Any]:
    kind = TRIGGER_CYCLE[i % len(TRIGGER_CYCLE)]
    if kind == "api":
        return {
            "handler": "handler.lambda_handler",
            "trigger": {"type": "api", "paths": [f"/r{i}"]},
            "health_path": "/health",
            "reserved_concurrency": 2,
        }
    if kind == "sqs":
        return {
            "handler": "worker.lambda_handler",
            "trigger": {"type": "sqs", "batch_size": 5},
            "reserved_concurrency": 2,
        }
    if kind == "schedule":
        return {
            "handler": "campaign_scheduler.lambda_handler",
            "trigger": {"type": "schedule", "expression": "rate(1 day)"},
            "reserved_concurrency": 2,
        }
    return {"handler": "handler.lambda_handler", "trigger": {"type": "none"}, "reserved_concurrency": 2}


def mixed_catalog(size: int) -> dict[str, Any]:
    """Today's catalog grown to `size` functions, the added ones cycling api, sqs, schedule and none."""
    catalog = base_catalog()
    extra = size - len(catalog)
    names = [*AWKWARD_NAMES, *(f"Fn{i:03d}" for i in range(extra))][:extra]
    for i, name in enumerate(names):
        catalog[name] = extra_function(i, name)
    return catalog


if __name__ == "__main__":
    import sys

    print(json.dumps(mixed_catalog(int(sys.argv[1])), separators=(",", ":")))
