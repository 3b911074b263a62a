#!/usr/bin/env python3
"""Fail when checkov finds an unexplained problem in the synthesized CloudFormation templates.

    python -m scripts.checkov_gate [--dir cdk.out] [--summary]

Runs checkov offline (`--framework cloudformation --skip-download`) on every `DIR/*.template.json` (named one
by one: cdk.out also holds the bundles, thousands of files checkov must not read), then fails, listing:
- every failed check the resource does not skip: check ID, logical ID, template file;
- every skip without a reason: a resource's `Metadata.checkov.skip` entry with no non-empty `comment`
  (checkov itself honours those silently). Skips are written only by `checkov_skip` in
  stacks/constructs/nag.py, which demands the reason.
`--summary` adds the failure counts by check ID.

checkov runs in its own environment (`uv tool run`, pinned by requirements-checkov.txt): it pins a boto3 that
cannot share .venv with the project's. `--checkov CMD` (or the CHECKOV environment variable) runs another
checkov executable instead.

Exit status: 0 clean, 1 findings, 2 the gate could not run (no templates, checkov failed to start or
produced no readable report).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.bundling.indexes import find_uv

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "requirements-checkov.txt"
CHECKOV_ARGS = ("--framework", "cloudformation", "-o", "json", "--quiet", "--skip-download")


@dataclass(frozen=True, order=True)
class Finding:
    check_id: str
    resource: str  # logical ID
    file: str
    why: str = ""

    def line(self) -> str:
        suffix = f": {self.why}" if self.why else ""
        return f"{self.check_id} {self.resource} ({self.file}){suffix}"


def templates_in(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.template.json"))


def unexplained_skips(template: Mapping[str, Any], file: str) -> list[Finding]:
    """Skips in resources' Metadata.checkov.skip that have no non-empty comment (or are malformed)."""
    found = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        checkov_meta = (resource.get("Metadata") or {}).get("checkov")
        if checkov_meta is None:
            continue
        skips = checkov_meta.get("skip") if isinstance(checkov_meta, dict) else None
        if not isinstance(skips, list):
            found.append(Finding("-", logical_id, file, "Metadata.checkov must be {'skip': [{id, comment}]}"))
            continue
        for skip in skips:
            check_id = str(skip.get("id", "-")) if isinstance(skip, dict) else "-"
            comment = skip.get("comment") if isinstance(skip, dict) else None
            if not isinstance(comment, str) or not comment.strip():
                found.append(Finding(check_id, logical_id, file, "skipped without a reason (comment)"))
    return found


def checkov_command(override: str | None) -> list[str]:
    if override:
        return shlex.split(override)
    pin = next(
        (
            line.split("#")[0].strip()
            for line in REQUIREMENTS.read_text().splitlines()
            if line.startswith("checkov==")
        ),
        None,
    )
    if pin is None:
        raise SystemExit(f"checkov_gate: no checkov==VERSION line in {REQUIREMENTS}")
    uv = find_uv()
    if uv is None:
        raise SystemExit("checkov_gate: uv not found (it is in requirements.txt: run `make setup`)")
    return [uv, "tool", "run", "--constraints", str(REQUIREMENTS), "--from", pin, "checkov"]


def _reports(raw: str) -> list[dict[str, Any]]:
    data = json.loads(raw)
    reports = data if isinstance(data, list) else [data]
    return [r for r in reports if isinstance(r, dict)]


def failed_checks(reports: Sequence[Mapping[str, Any]], base: Path) -> list[Finding]:
    """Failed checks in checkov's JSON report (skipped ones are not among them)."""
    found = []
    for report in reports:
        for check in (report.get("results") or {}).get("failed_checks") or []:
            resource = str(check.get("resource", "?"))
            # checkov names a CloudFormation resource TYPE.LogicalId
            logical_id = resource.rsplit(".", 1)[-1]
            path = Path(str(check.get("file_abs_path") or check.get("file_path", "?")))
            file = path.name if path.parent.resolve() == base.resolve() else str(path)
            found.append(
                Finding(str(check.get("check_id", "?")), logical_id, file, str(check.get("check_name", "")))
            )
    return found


def run_checkov(command: Sequence[str], templates: Sequence[Path]) -> list[dict[str, Any]]:
    args = [*command, *(a for t in templates for a in ("-f", str(t))), *CHECKOV_ARGS]
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    # checkov exits 1 when a check failed: that is a report, not a crash. Anything else is.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        return _reports(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(
            f"checkov printed no JSON report ({exc}); stderr: {proc.stderr.strip()[-2000:]}"
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / "cdk.out", help="folder of *.template.json")
    parser.add_argument("--checkov", default=os.environ.get("CHECKOV"), help="checkov command to run instead")
    parser.add_argument("--summary", action="store_true", help="also print failure counts by check ID")
    args = parser.parse_args(argv)

    templates = templates_in(args.dir)
    if not templates:
        print(f"checkov_gate: no *.template.json in {args.dir} (run `make synth` first)", file=sys.stderr)
        return 2
    bad_skips = [
        finding for t in templates for finding in unexplained_skips(json.loads(t.read_text()), t.name)
    ]
    try:
        failures = failed_checks(run_checkov(checkov_command(args.checkov), templates), args.dir)
    except (OSError, RuntimeError) as exc:
        print(f"checkov_gate: {exc}", file=sys.stderr)
        return 2

    for finding in sorted(bad_skips):
        print(f"UNEXPLAINED SKIP {finding.line()}")
    for finding in sorted(failures):
        print(f"FAILED {finding.line()}")
    if args.summary and failures:
        print("failed checks by ID:")
        for check_id, count in sorted(
            Counter(f.check_id for f in failures).items(), key=lambda kv: (-kv[1], kv[0])
        ):
            print(f"  {check_id}: {count}")
    names = ", ".join(t.name for t in templates)
    if failures or bad_skips:
        print(
            f"checkov_gate: {len(failures)} failed check(s), {len(bad_skips)} skip(s) without a reason "
            f"in {names}. "
            "Fix the resource, or skip the check with checkov_skip(construct, check_id, reason) "
            "(stacks/constructs/nag.py) stating why it does not apply."
        )
        return 1
    print(f"checkov_gate: no unexplained findings in {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
