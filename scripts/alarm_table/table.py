#!/usr/bin/env python3
"""Print the README's alarm table from the alarm catalogue the constructs build their alarms from.

    python -m scripts.alarm_table                      # Markdown table on stdout
    python -m scripts.alarm_table --write README.md    # replace the table between the markers
    python -m scripts.alarm_table --check README.md    # exit 1 if README's table is stale (CI)

Thresholds come from cdk.json (each environment's `alarms.thresholds` over AlarmThresholds' defaults),
parsed by the same stacks.config the app uses. Nothing here is hand-written: a new alarm or a changed
threshold changes the table. The markers in the README are:

    <!-- alarm-table:start -->  ...  <!-- alarm-table:end -->
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from stacks.config import (  # noqa: E402
    AlarmThresholds,
    ConfigError,
    parse_environments,
)
from stacks.constructs.alarms import AUDIENCE_TEXT, CATALOGUE  # noqa: E402

START, END = "<!-- alarm-table:start -->", "<!-- alarm-table:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(thresholds_by_env: Mapping[str, AlarmThresholds]) -> str:
    """The Markdown table: one row per catalogue alarm, one threshold column per environment."""
    envs = list(thresholds_by_env)
    header = [
        "Alarm",
        "Applies to",
        "Meaning",
        *(f"Threshold ({e})" for e in envs),
        "Who is told",
        "Rolls back a deploy",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for spec in CATALOGUE:
        row = [
            f"`{spec.key}`",
            spec.applies_to,
            spec.meaning[:1].upper() + spec.meaning[1:],
            *(spec.threshold_text(thresholds_by_env[e]) for e in envs),
            AUDIENCE_TEXT[spec.audience] + ("; pages via `ServiceUnhealthy`" if spec.in_composite else ""),
            "yes" if spec.rolls_back else "no",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def thresholds_from_cdk_json(path: Path) -> dict[str, AlarmThresholds]:
    try:
        context = json.loads(path.read_text())["context"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f'{path}: cannot read its "context" object ({err})') from err
    environments = parse_environments(context.get("environments"))
    return {name: env.thresholds for name, env in environments.items()}


def replace_between_markers(document: str, table: str, *, where: str) -> str:
    if document.count(START) != 1 or document.count(END) != 1 or document.index(START) > document.index(END):
        raise ValueError(f"{where}: needs exactly one {START} followed by one {END}")
    head, rest = document.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdk-json", type=Path, default=REPO_ROOT / "cdk.json")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", type=Path, metavar="README", help="replace the table between the markers")
    action.add_argument("--check", type=Path, metavar="README", help="exit 1 if the table there is stale")
    args = parser.parse_args(argv)
    try:
        table = render_table(thresholds_from_cdk_json(args.cdk_json))
        target: Path | None = args.write or args.check
        if target is None:
            sys.stdout.write(table)
            return 0
        current = target.read_text()
        updated = replace_between_markers(current, table, where=str(target))
    except (ConfigError, ValueError, OSError) as err:
        print(f"alarm_table: {err}", file=sys.stderr)
        return 2
    if args.check:
        if updated != current:
            print(
                f"alarm_table: {target} is stale; run: python -m scripts.alarm_table --write {target}",
                file=sys.stderr,
            )
            return 1
        return 0
    target.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
