#!/usr/bin/env python3
"""What `make diff` and CI run: for each environment stack, a risk summary on top of the `cdk diff` output,
written to cdk.out/diff/<stack>.md (one PR comment per environment).

    python -m scripts.pr_diff [--base REF] [--offline] [--stacks S1,S2] [--out DIR]

Two modes:

* **offline** (the default without AWS credentials; forced by --offline or --base): the base ref is checked
  out in a temporary `git worktree`, which borrows this checkout's .venv, node_modules and .cache through
  symlinks (nothing is reinstalled; bundles already built are reused by hash), and synthesized there with the
  pinned CDK CLI. The head (this working tree, uncommitted changes included) is synthesized too. Each stack
  is then compared with `cdk diff --app cdk.out STACK --template <base template>`, which needs no AWS at all.
  The stack policy is the base's cdk.out/<stack>.stack-policy.json: the one in force when this change
  deploys (the head's is used, with a note, when the base has none). The worktree is always removed.
* **deployed** (AWS credentials in the environment): the deployed template is fetched with CloudFormation
  GetTemplate (TemplateStage=Original: the template exactly as CDK submitted it) and the policy in force
  with GetStackPolicy, then compared the same way with `cdk diff --template`. Chosen over a plain
  `cdk diff` (change set) so that the PR role stays read-only: cloudformation:GetTemplate,
  GetStackPolicy and DescribeStacks are all it needs. NOT TESTABLE OFFLINE: only the two CloudFormation
  calls are tested (botocore Stubber); the end-to-end run needs an account.

Exit status: 0 reports written, 1 a tool failed (synth, git, cdk), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from scripts.pr_diff import migration_diff, source_impact
from scripts.pr_diff.inputs import DiffInputError, load_asset_info, load_policy, load_template
from scripts.pr_diff.library import CfnDiffError, run_cfn_diff
from scripts.pr_diff.summary import summarize
from stacks.bundling.spec import source_root
from stacks.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
# Borrowed by the base worktree: installing them again would cost minutes; bundles are keyed by input hash.
SHARED_DIRS = (".venv", "node_modules", ".cache")
# Any of these means the AWS SDK can find credentials (keys, profile, web identity, container role).
CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
POLICY_STACK_SUFFIX = "-policy"
# A GitHub comment holds 65,536 characters; the summary must always fit, the raw diff is cut first.
CDK_OUTPUT_LIMIT = 45_000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Mode = Literal["offline", "deployed"]


class PrDiffError(RuntimeError):
    """A step failed; the message names the step and what to do."""


class UsageError(ValueError):
    """Bad arguments; the message names the argument."""


@dataclass(frozen=True)
class Options:
    base: str | None = None
    offline: bool = False
    stacks: tuple[str, ...] = ()
    out_dir: Path = REPO_ROOT / "cdk.out" / "diff"
    repo: Path = REPO_ROOT


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description="cdk diff with a risk summary, per environment stack")
    parser.add_argument("--base", help="git ref to compare with (implies offline mode), e.g. origin/main")
    parser.add_argument("--offline", action="store_true", help="compare with a synth of the base ref")
    parser.add_argument(
        "--stacks", default="", help="comma-separated stacks (default: every environment stack)"
    )
    parser.add_argument("--out", type=Path, help="report folder (default: cdk.out/diff)")
    ns = parser.parse_args(argv)
    if ns.base is not None and not ns.base.strip():
        raise UsageError("--base: empty git ref; pass a branch, tag or commit (e.g. origin/main)")
    stacks = tuple(s.strip() for s in ns.stacks.split(",") if s.strip())
    return Options(base=ns.base, offline=ns.offline, stacks=stacks, out_dir=ns.out or Options.out_dir)


def has_credentials(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in CREDENTIAL_VARS)


def choose_mode(options: Options, env: Mapping[str, str]) -> Mode:
    if options.offline or options.base is not None or not has_credentials(env):
        return "offline"
    return "deployed"


# ---------------------------------------------------------------------------------------------------------
# Processes

Runner = Callable[[Sequence[str], Path], str]


def tool_env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(
        [str(repo / ".venv" / "bin"), str(repo / "node_modules" / ".bin"), env["PATH"]]
    )
    env.update(PYTHONDONTWRITEBYTECODE="1", NO_COLOR="1")
    return env


def run_process(command: Sequence[str], cwd: Path) -> str:
    """Run a command; its stdout and stderr together (cdk prints diffs on stderr)."""
    try:
        proc = subprocess.run(
            list(command), cwd=cwd, env=tool_env(REPO_ROOT), capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise PrDiffError(f"{command[0]}: not found; run `make setup` first") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise PrDiffError(f"`{' '.join(command)}` failed in {cwd} (exit {proc.returncode}):\n{tail}")
    return output


def cdk(repo: Path) -> str:
    return str(repo / "node_modules" / ".bin" / "cdk")


def synth(repo: Path, cwd: Path, run: Runner) -> Path:
    """Synthesize the app in `cwd` into cwd/cdk.out with this checkout's pinned CLI."""
    run([cdk(repo), "synth", "--quiet", "--no-notices", "--output", str(cwd / "cdk.out")], cwd)
    return cwd / "cdk.out"


def cdk_diff(repo: Path, assembly: Path, stack: str, old_template: Path, run: Runner) -> str:
    """`cdk diff` of the synthesized head against a template file: no synth, no AWS."""
    output = run(
        [
            cdk(repo),
            "diff",
            "--app",
            str(assembly),
            stack,
            "--template",
            str(old_template),
            "--no-color",
            "--no-notices",
        ],
        repo,
    )
    return _ANSI.sub("", output)


# ---------------------------------------------------------------------------------------------------------
# The base worktree


def default_base(repo: Path, run: Runner) -> str:
    for ref in ("origin/main", "main"):
        with contextlib.suppress(PrDiffError):
            run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo)
            return ref
    return "HEAD"


@contextlib.contextmanager
def base_worktree(repo: Path, ref: str, run: Runner) -> Iterator[Path]:
    """A detached worktree of `ref` that borrows SHARED_DIRS; removed on exit, whatever happened."""
    try:
        run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], repo)
    except PrDiffError:
        raise PrDiffError(
            f"base ref {ref!r} not found in {repo}; fetch it (git fetch origin) or pass BASE=<branch|commit>"
        ) from None
    holder = Path(tempfile.mkdtemp(prefix="credmate-diff-base-"))
    path = holder / "base"
    try:
        run(["git", "worktree", "add", "--detach", "--quiet", str(path), ref], repo)
        for name in SHARED_DIRS:
            source, link = repo / name, path / name
            if source.exists() and not link.exists() and not link.is_symlink():
                link.symlink_to(source, target_is_directory=True)
        yield path
    finally:
        with contextlib.suppress(PrDiffError):
            run(["git", "worktree", "remove", "--force", str(path)], repo)
        shutil.rmtree(holder, ignore_errors=True)
        with contextlib.suppress(PrDiffError):
            run(["git", "worktree", "prune"], repo)


# ---------------------------------------------------------------------------------------------------------
# Assemblies and reports


def environment_stacks(assembly: Path) -> list[str]:
    """Stack artifacts of a cloud assembly, without the small stack-policy stacks."""
    manifest_path = assembly / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as err:
        raise PrDiffError(
            f"{manifest_path}: cannot read the cloud assembly manifest ({err}); synth first"
        ) from None
    artifacts = manifest.get("artifacts") or {}
    return sorted(
        name
        for name, artifact in artifacts.items()
        if artifact.get("type") == "aws:cloudformation:stack" and not name.endswith(POLICY_STACK_SUFFIX)
    )


def select_stacks(available: Sequence[str], wanted: Sequence[str]) -> list[str]:
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise UsageError(
            f"--stacks: {', '.join(unknown)} not in the synthesized app; available: "
            f"{', '.join(available) or 'none'}"
        )
    return list(wanted) or list(available)


def template_path(assembly: Path, stack: str) -> Path:
    return assembly / f"{stack}.template.json"


_NESTED = re.compile(
    r"^(?P<prefix>[A-Za-z0-9]+?)(?P<group>FunctionGroup[0-9]+)[0-9A-F]{8}\.nested\.template\.json$"
)


def nested_templates(assembly: Path, stack: str) -> dict[str, Path]:
    """{group: template} of `stack`'s nested function groups (stacks/function_groups.py): CDK names a nested
    template after its parent's path without punctuation, the group's construct ID and a hash."""
    compact = re.sub(r"[^A-Za-z0-9]", "", stack)
    found = {}
    for path in assembly.glob("*.nested.template.json"):
        match = _NESTED.match(path.name)
        if match and match["prefix"] == compact:
            found[match["group"]] = path
    return found


def policy_path(assembly: Path, stack: str) -> Path:
    return assembly / f"{stack}.stack-policy.json"


EMPTY_TEMPLATE: dict[str, Any] = {"Resources": {}}


def compose_report(stack: str, summary: str, cdk_output: str, compared_with: str) -> str:
    text = cdk_output.strip()
    if len(text) > CDK_OUTPUT_LIMIT:
        text = (
            text[:CDK_OUTPUT_LIMIT]
            + f"\n… cut at {CDK_OUTPUT_LIMIT} characters; run `make diff` for all of it"
        )
    return "\n".join(
        [
            f"<!-- credmate-lambda diff: {stack} -->",
            f"## cdk diff: `{stack}`",
            "",
            f"Compared with: {compared_with}.",
            "",
            summary.strip(),
            "",
            "<details><summary>Full <code>cdk diff</code> output</summary>",
            "",
            "```",
            text.replace("```", "'''"),
            "```",
            "",
            "</details>",
            "",
        ]
    )


@dataclass(frozen=True)
class Comparison:
    stack: str
    old_template: dict[str, Any]
    policy: dict[str, Any] | None
    assets: dict[str, dict[str, Any]]
    compared_with: str
    notes: tuple[str, ...] = ()


def extra_sections(options: Options, head: Path, comparison: Comparison) -> list[str]:
    """The sections this project adds to a stack's summary: which functions run the changed source, and the
    migrations the deploy will apply. Against `--base` (default: HEAD, i.e. the uncommitted change)."""
    base = options.base or "HEAD"
    if not (options.repo / "cdk.json").is_file():
        return []  # not this app's checkout (no catalog to read)
    try:
        configs, backend = source_impact.environments(options.repo)
        config = next((c for c in configs.values() if c.stack_name == comparison.stack), None)
        if config is None:
            return []
        source = source_root(backend)
        sections = [source_impact.render_markdown(source_impact.source_impact(source, config, base))]
        versions = source / config.migrations.directory / "versions"
        if versions.is_dir():
            migrations = migration_diff.render_markdown(
                migration_diff.migration_changes(backend, base, migrations_dir=config.migrations.directory)
            )
            if migrations and not config.migrations.enabled:
                migrations += (
                    "\n**Not applied by this deploy**: `migrations.enabled` is false for this environment; "
                    "the code's schema head will not match the database until they run.\n"
                )
            sections.append(migrations)
    except (ConfigError, migration_diff.MigrationDiffError) as err:
        return [f"#### Source impact\n\nnot computed: {err}\n"]
    return [s for s in sections if s]


def write_nested_reports(
    options: Options, base: Path, head: Path, stack: str, compared_with: str
) -> list[Path]:
    """One report per nested function group of `stack`: `cdk diff --template` compares a main template
    only, so a change to the functions of a nested stack would otherwise reach no reviewer. The summary and
    the CloudFormation library's diff compare the group's templates; its own stack policy is applied."""
    old_groups, new_groups = nested_templates(base, stack), nested_templates(head, stack)
    reports = []
    for group in sorted(set(old_groups) | set(new_groups)):
        name = f"{stack}.{group}"
        old_dir = options.out_dir / "base"
        old_dir.mkdir(parents=True, exist_ok=True)
        old_file, new_file = old_dir / f"{name}.template.json", options.out_dir / f"{name}.head.template.json"
        old = load_template(old_groups[group], f"base template of {name}") if group in old_groups else None
        new = load_template(new_groups[group], f"head template of {name}") if group in new_groups else None
        old_file.write_text(json.dumps(old or EMPTY_TEMPLATE, indent=1) + "\n")
        new_file.write_text(json.dumps(new or EMPTY_TEMPLATE, indent=1) + "\n")
        policy, notes = _policy(policy_path(base, name), policy_path(head, name))
        if old is None:
            notes = (f"`{group}` is new: every function in it is created.", *notes)
        if new is None:
            notes = (f"`{group}` is gone: CloudFormation deletes every function in it.", *notes)
        library = run_cfn_diff(old_file, new_file)
        summary = summarize(
            old or EMPTY_TEMPLATE,
            new or EMPTY_TEMPLATE,
            policy=policy,
            assets={
                **load_asset_info(base, old or EMPTY_TEMPLATE),
                **load_asset_info(head, new or EMPTY_TEMPLATE),
            },
            stack=name,
            notes=notes,
            library=library,
        )
        report = options.out_dir / f"{name}.md"
        report.write_text(
            compose_report(
                name,
                summary,
                f"(nested stack of {stack}: deployed with it; the summary above compares its templates)",
                compared_with,
            )
        )
        reports.append(report)
    return reports


def write_report(options: Options, head: Path, comparison: Comparison, run: Runner) -> Path:
    base_dir = options.out_dir / "base"
    base_dir.mkdir(parents=True, exist_ok=True)
    # Kept beside the report so the summary can be re-run by hand:
    # python -m scripts.pr_diff.summary --old ... --new ...
    old_file = template_path(base_dir, comparison.stack)
    old_file.write_text(json.dumps(comparison.old_template, indent=1) + "\n")
    new_file = template_path(head, comparison.stack)
    new_template = load_template(new_file, f"head template of {comparison.stack}")
    assets = {**comparison.assets, **load_asset_info(head, new_template)}
    summary = summarize(
        comparison.old_template,
        new_template,
        policy=comparison.policy,
        assets=assets,
        stack=comparison.stack,
        notes=comparison.notes,
        library=run_cfn_diff(old_file, new_file),  # @aws-cdk/cloudformation-diff, as `cdk diff` sees it
        extra_sections=extra_sections(options, head, comparison),
    )
    output = cdk_diff(options.repo, head, comparison.stack, old_file, run)
    report = options.out_dir / f"{comparison.stack}.md"
    report.write_text(compose_report(comparison.stack, summary, output, comparison.compared_with))
    return report


def _policy(primary: Path, fallback: Path) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    if primary.is_file():
        return load_policy(primary), ()
    if fallback.is_file():
        return load_policy(fallback), (
            f"The base has no {primary.name}; checked against the head's stack policy.",
        )
    return None, ()  # the summary itself says that no stack policy was given


def run_offline(options: Options, run: Runner) -> list[Path]:
    ref = options.base or default_base(options.repo, run)
    head = synth(options.repo, options.repo, run)
    stacks = select_stacks(environment_stacks(head), options.stacks)
    reports = []
    with base_worktree(options.repo, ref, run) as worktree:
        try:
            base = synth(options.repo, worktree, run)
        except PrDiffError as err:
            raise PrDiffError(
                f"synthesizing the base ref {ref!r} (temporary worktree) failed: {err}"
            ) from None
        commit = run(["git", "rev-parse", "--short", "HEAD"], worktree).strip()
        for stack in stacks:
            old_file = template_path(base, stack)
            notes: tuple[str, ...] = ()
            old = (
                load_template(old_file, f"base template of {stack}") if old_file.is_file() else EMPTY_TEMPLATE
            )
            if not old_file.is_file():
                notes = (f"`{stack}` does not exist at {ref}: everything is new.",)
            policy, policy_notes = _policy(policy_path(base, stack), policy_path(head, stack))
            comparison = Comparison(
                stack,
                old,
                policy,
                load_asset_info(base, old),
                f"a synth of `{ref}` ({commit}), offline",
                notes + policy_notes,
            )
            reports.append(write_report(options, head, comparison, run))
            reports += write_nested_reports(options, base, head, stack, comparison.compared_with)
    return reports


# ---------------------------------------------------------------------------------------------------------
# Deployed mode (needs AWS: only the CloudFormation calls are tested, with botocore's Stubber)


def fetch_deployed(client: Any, stack: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(template as submitted, stack policy) of a deployed stack; (None, None) when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        body = client.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    except ClientError as err:
        if "does not exist" in str(err):
            return None, None
        raise PrDiffError(f"CloudFormation GetTemplate {stack}: {err}") from None
    try:
        template = body if isinstance(body, dict) else json.loads(body)
    except ValueError:
        raise PrDiffError(f"deployed template of {stack} is not JSON (was it deployed by CDK?)") from None
    try:
        policy_body = client.get_stack_policy(StackName=stack).get("StackPolicyBody")
    except ClientError as err:
        raise PrDiffError(f"CloudFormation GetStackPolicy {stack}: {err}") from None
    return dict(template), (json.loads(policy_body) if policy_body else None)


def run_deployed(options: Options, run: Runner, client: Any) -> list[Path]:
    head = synth(options.repo, options.repo, run)
    reports = []
    for stack in select_stacks(environment_stacks(head), options.stacks):
        template, policy = fetch_deployed(client, stack)
        notes: tuple[str, ...] = ()
        if template is None:
            notes = (f"`{stack}` is not deployed yet: everything is new.",)
        elif policy is None:
            notes = ("The deployed stack has no stack policy: protection was not checked.",)
        comparison = Comparison(
            stack,
            template or EMPTY_TEMPLATE,
            policy,
            {},
            "the deployed stack (CloudFormation GetTemplate)",
            notes,
        )
        reports.append(write_report(options, head, comparison, run))
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
        mode = choose_mode(options, os.environ)
        print(f"[diff] mode: {mode}", file=sys.stderr)
        if mode == "deployed":
            import boto3

            reports = run_deployed(options, run_process, boto3.client("cloudformation"))
        else:
            reports = run_offline(options, run_process)
    except UsageError as err:
        print(f"pr_diff: error: {err}", file=sys.stderr)
        return 2
    except (PrDiffError, DiffInputError, CfnDiffError) as err:
        print(f"pr_diff: error: {err}", file=sys.stderr)
        return 1
    for report in reports:
        print(report.read_text())
        print(f"[diff] wrote {report}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
