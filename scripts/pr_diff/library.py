"""@aws-cdk/cloudformation-diff's verdict on two templates: cfn_diff.mjs (beside this file) run with the
pinned Node.

The library behind `cdk diff` decides how CloudFormation applies each change (update in place, may replace,
will replace, destroy) and which IAM statements and security-group rules are added or removed; see
scripts/pr_diff/cfn_diff.mjs for the JSON it prints.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scripts.pr_diff.model import Template

REPO_ROOT = Path(__file__).resolve().parents[2]
CFN_DIFF = Path(__file__).resolve().with_name("cfn_diff.mjs")
LibraryDiff = Mapping[str, Any]


class CfnDiffError(RuntimeError):
    """scripts/pr_diff/cfn_diff.mjs could not run; the message says what to do."""


def node_binary() -> str:
    """The Node pinned in package.json (node_modules/.bin/node), else the first `node` on PATH."""
    pinned = REPO_ROOT / "node_modules" / ".bin" / "node"
    found = str(pinned) if pinned.exists() else shutil.which("node")
    if found is None:
        raise CfnDiffError(
            "node: not found; run `make setup` (it installs the pinned Node into node_modules)"
        )
    return found


def run_cfn_diff(old_path: Path, new_path: Path) -> dict[str, Any]:
    """The library's verdict on two template files (see scripts/pr_diff/cfn_diff.mjs for the JSON)."""
    command = [node_binary(), str(CFN_DIFF), str(old_path), str(new_path)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise CfnDiffError(f"{CFN_DIFF.name} failed (exit {proc.returncode}):\n{tail}")
    data = json.loads(proc.stdout)
    return dict(data)


@functools.lru_cache(maxsize=32)
def _cfn_diff_text(old_text: str, new_text: str) -> str:
    with tempfile.TemporaryDirectory(prefix="cfn-diff-") as tmp:
        old_path, new_path = Path(tmp) / "old.json", Path(tmp) / "new.json"
        old_path.write_text(old_text)
        new_path.write_text(new_text)
        return json.dumps(run_cfn_diff(old_path, new_path))


def library_diff(old: Template, new: Template) -> dict[str, Any]:
    """run_cfn_diff on in-memory templates (cached: the same pair is asked for by several checks)."""
    return dict(json.loads(_cfn_diff_text(json.dumps(old, sort_keys=True), json.dumps(new, sort_keys=True))))
