"""`python -m scripts.bundle.build`: the bundler from the shell (the benchmark's cold row times it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.bundle import build
from tests.conftest import REPO_ROOT


def test_an_unknown_environment_is_named_with_the_ones_cdk_json_has(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build.main(["--env", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert "environment 'nowhere' is not in cdk.json" in err
    assert "staging" in err


def test_the_command_line_does_not_load_the_local_api() -> None:
    """Its cold run is a benchmark row: the emulator and the local API's modules are not its to import."""
    code = (
        "import sys, scripts.bundle.build; "
        "print(sorted(m for m in sys.modules if m.startswith(('scripts.local.edit_loop', 'rie'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
