#!/usr/bin/env python3
"""Refuse deploy commands that bypass the canary for staging and prod. `make deploy` runs this first:

    python scripts/deploy_guard.py STACK [CDK ARGS...]      # e.g. credmate-backend-prod --hotswap -> refused

Why: `cdk deploy --hotswap`, `--hotswap-fallback`, `cdk watch` (and `cdk deploy --watch`, which hotswaps by
default) and `sam sync` update Lambda code and configuration with direct Lambda API calls
(UpdateFunctionCode, UpdateFunctionConfiguration), not through a CloudFormation update. So no new version
is published through the stack, CodeDeploy never shifts the `live` alias, the pre-/post-traffic hooks and the
deployment alarms never run, nothing rolls back, and the stack policy never sees the change. The stack then
no longer describes what runs: the first incident. They are fine for a personal dev stack, never for staging
or prod. (`sam sync` is not a cdk argument; docs, DirectMutationDenyPolicy and the alerts cover it.)

Exit status: 0 allowed, 2 refused (with one line per reason on stderr).
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Sequence
from dataclasses import dataclass

PROTECTED_ENVIRONMENTS = ("staging", "prod")
STACK_PREFIX = "credmate-backend-"
PROTECTED_STACKS = tuple(
    f"{STACK_PREFIX}{env}{suffix}" for env in PROTECTED_ENVIRONMENTS for suffix in ("", "-policy")
)
BYPASS_FLAGS = ("--hotswap", "--hotswap-fallback", "--watch")
BYPASS_COMMANDS = ("watch",)
FALSE_VALUES = ("false", "0", "no")
# cdk options that take a value (from `cdk deploy --help`, CLI 2.1148): the value is not a stack name. Keep in
# sync with the pinned CLI: the value of an option missing here would be read as a stack name.
OPTIONS_WITH_VALUE = frozenset(
    {
        "-a",
        "--app",
        "--build",
        "-c",
        "--context",
        "-p",
        "--plugin",
        "--profile",
        "--region",
        "--proxy",
        "--ca-bundle-path",
        "-r",
        "--role-arn",
        "-o",
        "--output",
        "--unstable",
        "--telemetry-file",
        "-E",
        "--build-exclude",
        "--require-approval",
        "--notification-arns",
        "--rollback-trigger-alarm-arns",
        "--monitoring-time-minutes",
        "-t",
        "--tags",
        "--change-set-name",
        "-m",
        "--method",
        "--parameters",
        "-O",
        "--outputs-file",
        "--toolkit-stack-name",
        "--progress",
        "--concurrency",
        "--asset-build-concurrency",
        "--hotswap-ecs-minimum-healthy-percent",
        "--hotswap-ecs-maximum-healthy-percent",
        "--hotswap-ecs-stabilization-timeout-seconds",
    }
)


@dataclass(frozen=True)
class Refusal:
    reason: str


def _flag_enabled(arg: str, flag: str) -> bool:
    if arg == flag:
        return True
    if arg.startswith(f"{flag}="):
        return arg.split("=", 1)[1].strip().lower() not in FALSE_VALUES
    return False


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(positional words: the cdk sub-command if any and stack names/patterns, flags)."""
    words: list[str] = []
    flags: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            flags.append(arg)
            skip = arg in OPTIONS_WITH_VALUE
        else:
            words.append(arg)
    return words, flags


def targeted_protected_stacks(words: Sequence[str], flags: Sequence[str]) -> list[str]:
    """Protected stacks these arguments would deploy. `--all`, a pattern or no stack at all counts as every
    stack: the guard cannot know the app's stack list, so it assumes the worst."""
    stacks = [w for w in words if w not in ("deploy", *BYPASS_COMMANDS)]
    if "--all" in flags or not stacks:
        return list(PROTECTED_STACKS)
    hits = [p for p in PROTECTED_STACKS for s in stacks if fnmatch.fnmatchcase(p, s)]
    # Anything naming an environment, however spelled (e.g. a path like App/credmate-backend-prod).
    hits += [s for s in stacks if any(f"-{env}" in s for env in PROTECTED_ENVIRONMENTS)]
    return sorted(set(hits))


def check(argv: Sequence[str]) -> list[Refusal]:
    words, flags = split_args(argv)
    protected = targeted_protected_stacks(words, flags)
    if not protected:
        return []
    target = ", ".join(protected)
    refusals = []
    for flag in BYPASS_FLAGS:
        if any(_flag_enabled(f, flag) for f in flags):
            refusals.append(
                Refusal(
                    f"{flag} is not allowed for {target}: it updates Lambda directly, bypassing "
                    "CloudFormation, the CodeDeploy canary, its hooks and alarms, and the rollback"
                )
            )
    for command in BYPASS_COMMANDS:
        if command in words:
            refusals.append(
                Refusal(
                    f"`cdk {command}` is not allowed for {target}: it hotswaps Lambda code on every file "
                    "change, bypassing CloudFormation and the CodeDeploy canary"
                )
            )
    return refusals


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    refusals = check(args)
    if not refusals:
        return 0
    print("deploy_guard: refusing to deploy.", file=sys.stderr)
    for refusal in refusals:
        print(f"  - {refusal.reason}", file=sys.stderr)
    print(
        "  Deploy with plain `make deploy ENV=<env>` (cdk deploy through CloudFormation and CodeDeploy). "
        "Hotswap is for personal dev stacks only; see docs/guardrails.md.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
