# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The PR diff's fixture template pairs (tests/fixtures/diff): base.template.json is a trimmed synth of
credmate-backend-prod; each <case>.template.json is the same stack after one kind of change;
sg_broadening has its own old template (a VPC-placed variant)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "diff"
STACK = "credmate-backend-prod"
FUNCTIONS = {
    "BackendApi/Function": "BackendApiFunction1069C09C",
    "Worker/Function": "WorkerFunctionACE6A4B0",
    "CampaignScheduler/Function": "CampaignSchedulerFunction5D8E2A11",
}
OLD_ASSET = "3f1c9a0d5b7e4c2a8f6d1e0b9c7a5d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c"
NEW_ASSET = "c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.template.json").read_text())


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    return json.loads((FIXTURES / "stack-policy.json").read_text())


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load("base")
