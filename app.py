#!/usr/bin/env python3
"""credmate-lambda: the CDK app. The only place that reads configuration (CDK context and environment)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from stacks.backend_stack import BackendStack, BackendStackProps
from stacks.bundling.manifest import find_manifest
from stacks.bundling.spec import BundlingError
from stacks.config import ConfigError, EnvironmentConfig, parse_environments
from stacks.constructs.lambda_bundle import join_verifications
from stacks.constructs.stack_policy import protect
from stacks.deploy_limits import DeployLimitError, check_resource_counts, check_templates
from stacks.policy_stack import StackPolicyStack

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_BACKEND_ROOT = "apps/backend-api"


def _flag(app: cdk.App, key: str) -> bool:
    value = app.node.try_get_context(key)
    if value in (None, False, "false", "0", ""):
        return False
    if value in (True, "true", "1"):
        return True
    raise ConfigError(f"cdk context {key}: invalid value {value!r}; allowed: true or false")


def backend_root(app: cdk.App) -> Path:
    raw = app.node.try_get_context("backend_root") or DEFAULT_BACKEND_ROOT
    root = Path(raw)
    root = root if root.is_absolute() else (REPO_ROOT / root)
    if not root.is_dir():
        raise ConfigError(
            f"cdk context backend_root={raw!r}: {root} is not a folder; backend_root must be the backend's "
            "project folder, holding its dependency manifest (pyproject.toml with uv.lock or poetry.lock, or "
            "requirements.txt) and its code, in src/ or beside the manifest"
        )
    try:
        find_manifest(root)
    except BundlingError as err:
        raise ConfigError(f"cdk context backend_root={raw!r}: {err}") from None
    return root.resolve()


def build_app(
    app: cdk.App, *, join: bool = True
) -> tuple[dict[str, BackendStack], dict[str, StackPolicyStack]]:
    """Both stacks of every environment. `join=False` leaves the background bundle verification running:
    the caller must then call join_verifications() before anything uses the assembly (main() does)."""
    environments: dict[str, EnvironmentConfig] = parse_environments(
        app.node.try_get_context("environments"), app.node.try_get_context("functions")
    )
    props_common: dict[str, Any] = {
        "backend_root": backend_root(app),
        "cache_dir": REPO_ROOT / ".cache",
        "verify_bundle": not _flag(app, "skip_bundle_verification"),
    }
    stacks: dict[str, BackendStack] = {}
    policies: dict[str, StackPolicyStack] = {}
    props = {name: BackendStackProps(config=config, **props_common) for name, config in environments.items()}
    for stack_props in props.values():
        BackendStack.start_bundle_checks(stack_props)
    for name, config in environments.items():
        env = cdk.Environment(account=config.account, region=config.region) if config.account else None
        stack = BackendStack(
            app,
            config.stack_name,
            props=props[name],
            env=env,
            stack_name=config.stack_name,
        )
        policy = StackPolicyStack(
            app,
            f"{config.stack_name}-policy",
            target=stack,
            policy=protect(stack, stack.protected_resources),
            nested=[
                (g.stack, protect(g.stack, g.protected))
                for g in stack.groups
                if isinstance(g.stack, cdk.NestedStack)
            ],
            encryption_key=stack.data_key.key,
            env=env,
            stack_name=f"{config.stack_name}-policy",
        )
        for tagged in (stack, policy):
            cdk.Tags.of(tagged).add("project", "credmate-lambda")
            cdk.Tags.of(tagged).add("environment", name)
        stacks[name] = stack
        policies[name] = policy
    # Compliance on every synth: findings fail synth; acknowledgements carry their reasons in the code that
    # needs them. CredentialMate holds health-care credentials, hence the HIPAA Security pack.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
    # A catalog too large for CloudFormation stops here, in one line (CDK's own check is a jsii traceback).
    check_resource_counts(app)
    if join:
        # Bundle verification ran in the background while the stacks were built; a failure stops here.
        join_verifications()
    return stacks, policies


def main(outdir: Path | None = None) -> None:
    """`outdir`: where to write the assembly (tests); the CDK CLI passes it as CDK_OUTDIR."""
    app = cdk.App(outdir=str(outdir)) if outdir else cdk.App()
    try:
        _stacks, policies = build_app(app, join=False)
    except (ConfigError, BundlingError, DeployLimitError) as err:
        stop(err)
    # The bundles' import checks go on while synth runs cdk-nag and writes the assembly, the longest step
    # (in Node, while this process waits). They are joined before the process ends: a failure withdraws
    # the assembly, so no template or manifest of an unverified bundle is left for a deploy to pick up.
    try:
        outdir = Path(app.synth().directory)
        join_verifications()
    except Exception as err:  # whatever broke, nothing unverified is left for a deploy to pick up
        withdraw_assembly(Path(app.outdir))
        stop(err)
    try:
        check_templates(outdir.glob("*.template.json"))
    except DeployLimitError as err:
        withdraw_assembly(outdir)
        stop(err)
    write_policies(outdir, policies)
    prune_assets(outdir)


def stop(err: Exception) -> NoReturn:
    print(f"\ncredmate-lambda: synth stopped.\n{err}\n", file=sys.stderr)
    sys.exit(1)


# What a synth writes that makes an assembly deployable or reviewable; asset folders and zips stay (their
# names are content hashes, and the next synth reuses them).
ASSEMBLY_FILES = (
    "manifest.json",
    "tree.json",
    "validation-report.json",
    "*.template.json",
    "*.assets.json",
    "*.metadata.json",
    "*.stack-policy.json",
)


def withdraw_assembly(outdir: Path) -> None:
    """Delete the assembly files a failed synth wrote, so neither `cdk deploy --app <outdir>` nor a review
    reads templates whose bundle failed verification."""
    for pattern in ASSEMBLY_FILES:
        for path in outdir.glob(pattern):
            path.unlink(missing_ok=True)


def prune_assets(outdir: Path) -> list[Path]:
    """Delete the assets of earlier synths that this assembly no longer references (every source edit
    copies a new ~37 MB bundle zip into the output folder); returns what was deleted."""
    referenced: set[str] = set()
    for manifest in outdir.glob("*.assets.json"):
        files = json.loads(manifest.read_text()).get("files", {})
        referenced.update(str(asset.get("source", {}).get("path", "")) for asset in files.values())
    # A nested stack's template is an asset too: a catalog that shrank leaves no group template behind.
    candidates = [*outdir.glob("asset.*"), *outdir.glob("*.nested.template.json")]
    stale = [path for path in candidates if path.name not in referenced]
    for path in stale:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return stale


def write_policies(outdir: Path, policies: dict[str, StackPolicyStack]) -> None:
    """The stack policy each deploy applies, beside its template, for `make diff` and reviewers."""
    for policy in policies.values():
        (outdir / f"{policy.target_name}.stack-policy.json").write_text(policy.body + "\n")
        for group, body in policy.nested_bodies.items():
            (outdir / f"{policy.target_name}.{group}.stack-policy.json").write_text(body + "\n")


if __name__ == "__main__":
    main()
