"""cfn-lint from the test venv, shared by every test that lints a synthesized template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def cfn_lint_errors(*templates: Path) -> list[dict[str, Any]]:
    """The Error-level findings of cfn-lint on the templates (warnings are not errors)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [m for m in json.loads(done.stdout or "[]") if m["Level"] == "Error"]
