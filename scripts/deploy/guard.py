#!/usr/bin/env python3
"""Refuse deploy commands that bypass the canary for staging and prod. `make deploy` runs this first:

    python -m scripts.deploy.guard STACK [CDK ARGS...]      # e.g. credmate-backend-prod --hotswap -> refused

Why: `cdk deploy --hotswap`, `--hotswap-fallback`, `cdk watch` (and `cdk deploy --watch`, which hotswaps by
default) and `sam sync` update Lambda code and configuration with direct Lambda API calls
(UpdateFunctionCode, UpdateFunctionConfiguration), not through a CloudFormation update. So no new version
is published through the stack, CodeDeploy never shifts the `live` alias, the pre-/post-traffic hooks and the
deployment alarms never run, nothing rolls back, and the stack policy never sees the change. The stack then
no longer describes what runs: the first incident. They are fine for a personal dev stack, never for staging
or prod. (`sam sync` is not a cdk argument; docs, DirectMutationDenyPolicy and the alerts cover it.)

Prod also refuses a silent downgrade of the bundle's safety. With `--assembly DIR` (after `cdk synth`,
before `cdk deploy --app DIR`) the guard reads `DIR/<stack>.template.json`, whose top-level
`Metadata.CredmateBundles` records each bundle's synth-time verification:

    python -m scripts.deploy.guard --assembly cdk.out credmate-backend-prod

A bundle synthesized with `-c skip_bundle_verification=true` has never been imported: the first outage's
failure mode. Prod refuses it (and a template without the record, or none at all); staging deploys it with
a warning, so the pre-traffic hook is its only check. The `skip_bundle_verification` context flag itself
is refused for prod before any synth.

Exit status: 0 allowed, 2 refused (with one line per reason on stderr).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTECTED_ENVIRONMENTS = ("staging", "prod")
STACK_PREFIX = "credmate-backend-"
PROTECTED_STACKS = tuple(
    f"{STACK_PREFIX}{env}{suffix}" for env in PROTECTED_ENVIRONMENTS for suffix in ("", "-policy")
)
BYPASS_FLAGS = ("--hotswap", "--hotswap-fallback", "--watch")
BYPASS_COMMANDS = ("watch",)
FALSE_VALUES = ("false", "0", "no")
# Environments whose deploys must run verified bundles; the others get a warning.
VERIFIED_BUNDLES_REQUIRED = ("prod",)
BUNDLES_METADATA_KEY = "CredmateBundles"
SKIP_VERIFICATION_CONTEXT = "skip_bundle_verification"
ASSEMBLY_OPTION = "--assembly"
RESYNTH = f"re-synthesize without `-c {SKIP_VERIFICATION_CONTEXT}=true`, then deploy that assembly"
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


def context_values(argv: Sequence[str], key: str) -> list[str]:
    """Values given to context `key` with `-c key=value`, `--context key=value` or `--context=key=value`."""
    values = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--context") and i + 1 < len(argv):
            setting = argv[i + 1]
        elif arg.startswith(("--context=", "-c=")):
            setting = arg.split("=", 1)[1]
        else:
            continue
        name, _, value = setting.partition("=")
        if name == key:
            values.append(value)
    return values


def environment_of(stack: str) -> str | None:
    for env in PROTECTED_ENVIRONMENTS:
        if stack == f"{STACK_PREFIX}{env}":
            return env
    return None


def check_context(argv: Sequence[str]) -> list[Refusal]:
    """Prod refuses the skip-verification flag before anything is synthesized."""
    words, flags = split_args(argv)
    strict = [
        s
        for s in targeted_protected_stacks(words, flags)
        if any(s.startswith(f"{STACK_PREFIX}{env}") for env in VERIFIED_BUNDLES_REQUIRED)
    ]
    enabled = [
        v for v in context_values(argv, SKIP_VERIFICATION_CONTEXT) if v.strip().lower() not in FALSE_VALUES
    ]
    if not strict or not enabled:
        return []
    return [
        Refusal(
            f"-c {SKIP_VERIFICATION_CONTEXT}={enabled[0]} is not allowed for {', '.join(strict)}: the "
            "bundle's handlers would never be imported before the deploy; drop the flag"
        )
    ]


def bundle_problems(template_path: Path, stack: str) -> list[str]:
    """What makes this stack's bundles unverified, one line each (empty: every bundle verified)."""
    if not template_path.is_file():
        return [
            f"{stack}: no synthesized template at {template_path}: synthesize first (`cdk synth {stack}`), "
            "and deploy that assembly"
        ]
    try:
        template = json.loads(template_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"{stack}: {template_path} is not a readable template ({exc}): synthesize again"]
    metadata = template.get("Metadata") if isinstance(template, dict) else None
    bundles = metadata.get(BUNDLES_METADATA_KEY) if isinstance(metadata, dict) else None
    if not isinstance(bundles, list) or not bundles:
        return [
            f"{stack}: {template_path} records no bundle verification (Metadata.{BUNDLES_METADATA_KEY} is "
            "missing or empty): synthesized by an older or modified app; synthesize again with this one"
        ]
    problems = []
    zips = _zip_assets(template_path.parent, stack)
    for i, entry in enumerate(bundles):
        if not isinstance(entry, dict):
            problems.append(f"{stack}: Metadata.{BUNDLES_METADATA_KEY}[{i}] is not an object: {entry!r}")
            continue
        problems += _entry_problems(stack, entry, zips)
    return problems


def _zip_assets(assembly: Path, stack: str) -> set[str]:
    """The sha256 of every zip file the assembly uploads for `stack` (its `<stack>.assets.json`)."""
    try:
        files = json.loads((assembly / f"{stack}.assets.json").read_text()).get("files", {})
    except (OSError, ValueError, AttributeError):
        return set()
    digests = set()
    for asset in files.values() if isinstance(files, dict) else ():
        source = asset.get("source", {}) if isinstance(asset, dict) else {}
        path = assembly / str(source.get("path", ""))
        if source.get("packaging") == "file" and path.suffix == ".zip" and path.is_file():
            with path.open("rb") as data:
                digests.add(hashlib.file_digest(data, "sha256").hexdigest())
    return digests


def _entry_problems(stack: str, entry: dict[str, Any], zips: set[str]) -> list[str]:
    functions = entry.get("functions")
    names = ", ".join(str(f) for f in functions) if isinstance(functions, list) and functions else "?"
    asset = str(entry.get("asset_hash") or "?")[:12]
    what = f"{stack}: the bundle of {names} (asset {asset})"
    problems = []
    if entry.get("verified") is not True:
        problems.append(
            f"{what} was not verified at synth (synthesized with {SKIP_VERIFICATION_CONTEXT}, or not "
            "importable-checked)"
        )
    # Verified means these bytes: a zip damaged or replaced in cdk.out after synth is not what was checked.
    digest = entry.get("zip_sha256")
    if not isinstance(digest, str) or not digest:
        problems.append(f"{what} records no zip digest: synthesized by an older or modified app")
    elif digest not in zips:
        problems.append(
            f"{what}: no zip the assembly uploads is the one verified (sha256 {digest[:12]}); its asset in "
            f"{stack}.assets.json was damaged or replaced after synth"
        )
    return problems


def check_assembly(assembly: Path, argv: Sequence[str]) -> tuple[list[Refusal], list[str]]:
    """(refusals for prod, warnings for staging) about the synthesized bundles of the targeted stacks."""
    words, flags = split_args(argv)
    refusals: list[Refusal] = []
    warnings: list[str] = []
    for stack in targeted_protected_stacks(words, flags):
        env = environment_of(stack)
        if env is None:  # the stack-policy stacks hold no bundle
            continue
        problems = bundle_problems(assembly / f"{stack}.template.json", stack)
        if env in VERIFIED_BUNDLES_REQUIRED:
            refusals += [Refusal(f"{p}: {RESYNTH}") for p in problems]
        else:
            warnings += problems
    return refusals, warnings


def pop_assembly(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """(the `--assembly DIR` value if given, the other arguments)."""
    rest: list[str] = []
    assembly: Path | None = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == ASSEMBLY_OPTION:
            if not args:
                raise SystemExit(f"deploy_guard: {ASSEMBLY_OPTION} needs a folder (the cloud assembly)")
            assembly = Path(args.pop(0))
        elif arg.startswith(f"{ASSEMBLY_OPTION}="):
            assembly = Path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return assembly, rest


def main(argv: Sequence[str] | None = None) -> int:
    assembly, args = pop_assembly(sys.argv[1:] if argv is None else argv)
    refusals = check(args) + check_context(args)
    if assembly is not None:
        bundle_refusals, warnings = check_assembly(assembly, args)
        refusals += bundle_refusals
        for warning in warnings:
            print(
                f"deploy_guard: WARNING: {warning}; the pre-traffic hook is its only import check",
                file=sys.stderr,
            )
    if not refusals:
        return 0
    print("deploy_guard: refusing to deploy.", file=sys.stderr)
    for refusal in refusals:
        print(f"  - {refusal.reason}", file=sys.stderr)
    print(
        "  Deploy with plain `make deploy ENV=<env>` (cdk deploy through CloudFormation and CodeDeploy, "
        "of an assembly whose bundles were verified at synth). Hotswap is for personal dev stacks only; see "
        "docs/guardrails.md.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
