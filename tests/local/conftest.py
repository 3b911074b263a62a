# mypy: allow-untyped-defs, allow-incomplete-defs
"""The real app, synthesized once per run, for the local runtime's tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scripts.local import stack as local_stack
from tests.local.local_api_server import shared_assembly

STACK = "credmate-backend-staging"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory) -> Path:
    return shared_assembly(tmp_path_factory)


@pytest.fixture(scope="module")
def template(assembly) -> Any:
    return local_stack.Template(assembly / f"{STACK}.template.json")
