#!/usr/bin/env python3
"""Synth time against catalog size: `cdk synth` as a whole process for catalogs of 3, 15 and 60 functions.

The catalogs are today's three functions grown with functions of mixed triggers (tests/catalogs.py), the same
bundle and cache on every side. Each round runs every size once, in turn (3, 15, 60, 3, 15, 60, ...), after
one warm-up round, so a drift of the machine's speed hits every size alike; each figure is the median of the
rounds with its min-max spread, and the 60/3 ratio is taken round by round. What is timed: `npx cdk synth
--quiet` from the shell, both environments, cdk-nag included; bundle verification as a developer's second
synth has it (results carried over: the warm-up round verified each catalog once). The edit rows add a
one-line change in the middle of a backend module before each run, so the bundle is rebuilt and every check
that read the module runs again.

    python -m scripts.bench.catalog [--runs 5] [--out docs/benchmark-catalog.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from tests.catalogs import mixed_catalog  # noqa: E402

SIZES = (3, 15, 60)
EDITED = REPO_ROOT / "apps" / "backend-api" / "src" / "app" / "security.py"
TARGET_RATIO = 2.5


def synth(size: int, outdir: Path, catalog_file: Path) -> float:
    env = {**os.environ, "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    env["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}:{REPO_ROOT / 'node_modules' / '.bin'}:{env['PATH']}"
    command = [
        "npx",
        "--no-install",
        "cdk",
        "synth",
        "--quiet",
        "-o",
        str(outdir),
        "-c",
        f"functions={catalog_file.read_text()}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"cdk synth of the {size}-function catalog failed:\n{proc.stderr[-3000:]}")
    return seconds


def edit_middle(path: Path, round_: int) -> None:
    """A one-line change in the middle of the module: a comment whose text changes every round."""
    lines = path.read_text().splitlines(keepends=True)
    marker = "# bench edit "
    lines = [line for line in lines if not line.startswith(marker)]
    middle = len(lines) // 2
    while middle < len(lines) and lines[middle - 1].rstrip().endswith(("\\", ",", "(", "[", "{")):
        middle += 1
    lines.insert(middle, f"{marker}{round_}\n")
    path.write_text("".join(lines))


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmark-catalog.md")
    args = parser.parse_args()
    original = EDITED.read_text()
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        work = Path(tmp)
        files = {}
        for size in SIZES:
            files[size] = work / f"catalog-{size}.json"
            files[size].write_text(json.dumps(mixed_catalog(size), separators=(",", ":")))
        warm: dict[int, list[float]] = {s: [] for s in SIZES}
        edit: dict[int, list[float]] = {s: [] for s in (SIZES[0], SIZES[-1])}
        try:
            for round_ in range(args.runs + 1):
                for size in SIZES:
                    seconds = synth(size, work / f"out-{size}", files[size])
                    if round_:
                        warm[size].append(seconds)
                    print(f"round {round_} size {size}: {seconds:.2f} s", file=sys.stderr, flush=True)
                for size in edit:
                    edit_middle(EDITED, round_ * 10 + size)
                    seconds = synth(size, work / f"edit-{size}", files[size])
                    if round_:
                        edit[size].append(seconds)
                    print(f"round {round_} size {size} after an edit: {seconds:.2f} s", file=sys.stderr)
        finally:
            EDITED.write_text(original)
    ratios = [b / a for a, b in zip(warm[SIZES[0]], warm[SIZES[-1]], strict=True)]
    edit_ratios = [b / a for a, b in zip(edit[SIZES[0]], edit[SIZES[-1]], strict=True)]
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    rows = [
        f"| catalog | `cdk synth` (median of {args.runs}, min-max) | after a one-line edit |",
        "|---|---|---|",
        *(
            f"| {size} functions | {summary(warm[size])} | {summary(edit[size]) if size in edit else '-'} |"
            for size in SIZES
        ),
        f"| 60 / 3, round by round | {ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}): **{verdict}** "
        f"(target <= {TARGET_RATIO}x) | {statistics.median(edit_ratios):.2f}x "
        f"({min(edit_ratios):.2f}-{max(edit_ratios):.2f}) |",
    ]
    text = "\n".join(rows)
    print(text)
    args.out.write_text(
        "# Synth time against catalog size\n\n"
        f"Measured by `make bench` (scripts/bench/catalog.py) on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores. Method: the script's docstring.\n\n{text}\n"
    )


if __name__ == "__main__":
    main()
