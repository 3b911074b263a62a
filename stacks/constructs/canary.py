"""CodeDeploy canary for one function's `live` alias, and the hooks' code asset.

Each function gets its own deployment group; the hooks and CodeDeploy's role are the environment's, shared
by every group (stacks/constructs/deploy_hooks.py), with grants that still name each function's exact new
version and alias.

The hook asset is built by the project's bundler (`hooks_code`): the hook sources plus their pinned
requirements (PyYAML), for the hooks' own runtime, HOOK_RUNTIME, the newest Python runtime both this
aws-cdk-lib and Lambda know. The backend's runtime is configured separately and does not move the hooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from aws_cdk import AssetHashType, Aws, Duration, Fn
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.bundling.build import build_bundle
from stacks.bundling.spec import DEFAULT_EXCLUDES, BundleSpec, BundlingError
from stacks.config import CustomCanary
from stacks.constructs.deploy_hooks import HOOK_RUNTIME, DeploymentHooks
from stacks.constructs.guarded_function import GuardedFunction
from stacks.constructs.lambda_bundle import _HOST_ARCH, _log

HOOKS_SRC = Path(__file__).resolve().parents[2] / "lambda_src" / "hooks"
# Every module of lambda_src/hooks: the shared core (hook_calls, hook_report, hook_target, hook_checks) and
# the two hooks. test_hooks_bundle checks that none is missing.
HOOK_MODULES = ("hook_calls", "hook_report", "hook_target", "hook_checks", "pre_traffic", "post_traffic")
# The AWS SDK: every Lambda Python runtime provides it, so the hook asset does not ship it (nor its 20 MB).
# Verification imports these first, from the host, and judges only what the hook modules import beyond
# them: everything else must come from the asset.
RUNTIME_PROVIDED_MODULES = ("boto3", "botocore.config", "botocore.exceptions", "botocore.response")
TRIGGER_EVENTS = (
    "DeploymentStart",
    "DeploymentSuccess",
    "DeploymentFailure",
    "DeploymentStop",
    "DeploymentRollback",
)


# ---------------------------------------------------------------------------------------------------------
# The hooks' code asset


def hooks_bundle_spec(
    cache_dir: Path, runtime: str = HOOK_RUNTIME.name, *, source_dir: Path = HOOKS_SRC
) -> BundleSpec:
    """The bundler's spec for the hook asset: lambda_src/hooks and its requirements.txt, for `runtime`."""
    return BundleSpec(
        source_dir=source_dir,
        requirements=source_dir / "requirements.txt",
        cache_dir=cache_dir,
        runtime=runtime,
        # The hook functions' architecture (lambda_.Function's default): PyYAML's wheel is native.
        architecture="x86_64",
        excludes=(*DEFAULT_EXCLUDES, "requirements.txt", "requirements.lock"),
        migrations_dir=None,
    )


def hooks_code(
    cache_dir: Path,
    runtime: str = HOOK_RUNTIME.name,
    *,
    verify: bool = True,
    log: Callable[[str], None] = _log,
    source_dir: Path = HOOKS_SRC,
) -> lambda_.Code:
    """The hooks' code: built (or reused) by the bundler with their pinned requirements, then verified.

    `runtime` must be the runtime the hook functions run (HOOK_RUNTIME, what CanaryDeployment sets).
    Bytecode: the bundler compiles only with the target's own interpreter; without it on this machine the
    asset ships sources only (said in the log), and Lambda compiles these few small modules at cold start.
    """
    spec = hooks_bundle_spec(cache_dir, runtime, source_dir=source_dir)
    result = build_bundle(spec, log=log)
    log(result.summary(["hooks"]))
    if not result.bytecode:
        log(
            f"[bundle] notice: hooks ship without precompiled bytecode: {runtime} is not this machine's "
            f"Python ({sys.version_info.major}.{sys.version_info.minor}); Lambda compiles them at cold start"
        )
    if verify:
        verify_hooks_bundle(spec, log=log)
    else:
        log("[bundle] WARNING: hook bundle verification SKIPPED (skip_bundle_verification)")
    return lambda_.Code.from_asset(
        str(result.zip_path), asset_hash=result.asset_hash, asset_hash_type=AssetHashType.CUSTOM
    )


# Runs in the host interpreter, `-I` (no PYTHONPATH, no user site): the runtime-provided SDK is imported
# first from the interpreter's site-packages, then the bundle's folders go first on sys.path. Prints one JSON
# line: hook modules that failed to import, and every module they loaded from outside the bundle and the
# standard library.
_VERIFY_HOOKS = r"""
import importlib, json, os, sys, sysconfig
bundles = [os.path.realpath(p) for p in sys.argv[1].split(os.pathsep)]
modules, provided = sys.argv[2].split(","), sys.argv[3].split(",")
for name in provided:
    importlib.import_module(name)
sys.path[0:0] = bundles
before = set(sys.modules)
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"[:500]
stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
outside = {}
for name in sorted(set(sys.modules) - before):
    path = getattr(sys.modules[name], "__file__", None)
    if not path:
        continue
    real = os.path.realpath(path)
    if any(real.startswith(bundle + os.sep) for bundle in bundles):
        continue
    if "site-packages" not in real and any(real.startswith(s + os.sep) for s in stdlib):
        continue
    outside.setdefault(name.partition(".")[0], real)
sys.stdout.write("\n" + json.dumps({"failed": failed, "outside": outside}) + "\n")
"""
VERIFY_HOOKS_TIMEOUT_SECONDS = 120


def verify_hooks_bundle(spec: BundleSpec, *, log: Callable[[str], None] = _log) -> None:
    """Import every hook module from the bundle; raise BundlingError naming what does not import or what
    the bundle lacks.

    The hooks' runtime is usually not this machine's Python, and the PyYAML wheel is native, so the check
    runs on a host-compatible twin: the same sources and pinned requirements, built by the same bundler
    for this interpreter and architecture. It proves the requirements install and that every module the
    hooks import comes from the bundle, the standard library, or what the runtime-provided SDK
    (RUNTIME_PROVIDED_MODULES) loads; what it cannot prove is a failure specific to the target Python version.
    """
    host = f"python{sys.version_info.major}.{sys.version_info.minor}"
    twin_spec = replace(spec, runtime=host, architecture=_HOST_ARCH)  # type: ignore[arg-type]
    twin = build_bundle(twin_spec, log=log)
    # The same twin, interpreter and module lists passed before: nothing to prove again (a new bundle, or
    # another Python, gives another key).
    key = hashlib.sha256(
        json.dumps(
            [twin.asset_hash, sys.executable, sys.version, HOOK_MODULES, RUNTIME_PROVIDED_MODULES]
        ).encode()
    ).hexdigest()[:16]
    marker = twin.directory.parent / f"verified-hooks-{key}"
    twin_note = "" if twin_spec == spec else f" (a {host} twin of the {spec.runtime} bundle)"
    if marker.exists():
        log(f"[bundle] verified hook modules {', '.join(HOOK_MODULES)}{twin_note}: passed before")
        return
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-B",
            "-c",
            _VERIFY_HOOKS,
            os.pathsep.join(str(path.resolve()) for path in twin.paths),
            ",".join(HOOK_MODULES),
            ",".join(RUNTIME_PROVIDED_MODULES),
        ],
        capture_output=True,
        text=True,
        cwd=twin.directory,
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1", "PYTHONHASHSEED": "0"},
        timeout=VERIFY_HOOKS_TIMEOUT_SECONDS,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise BundlingError(
            f"hook bundle verification crashed (exit {proc.returncode}): {proc.stderr[-1500:]}"
        )
    report = json.loads(lines[-1])
    problems = [
        f"module {name} does not import from the hook bundle: {error}\n    hint: fix {spec.source_dir}/"
        f"{name}.py, or add what it needs to {spec.requirements} (pinned)"
        for name, error in sorted(report["failed"].items())
    ]
    problems += [
        f"the hooks import {top} from {path}, outside their bundle: Lambda would not have it\n"
        f"    hint: add it to {spec.requirements} (pinned)"
        for top, path in sorted(report["outside"].items())
    ]
    if problems:
        raise BundlingError("hook bundle verification failed:\n  " + "\n  ".join(problems))
    marker.write_text("ok\n")
    log(f"[bundle] verified hook modules {', '.join(HOOK_MODULES)} import from their bundle{twin_note}")


def deployment_config(scope: Construct, setting: str | CustomCanary) -> codedeploy.ILambdaDeploymentConfig:
    if isinstance(setting, CustomCanary):
        traffic = (
            codedeploy.TrafficRouting.time_based_canary(
                interval=Duration.minutes(setting.interval_minutes), percentage=setting.percent
            )
            if setting.kind == "canary"
            else codedeploy.TrafficRouting.time_based_linear(
                interval=Duration.minutes(setting.interval_minutes), percentage=setting.percent
            )
        )
        # No deployment_config_name: CloudFormation names it, so no physical name is fixed here.
        return codedeploy.LambdaDeploymentConfig(scope, "DeploymentConfig", traffic_routing=traffic)
    return codedeploy.LambdaDeploymentConfig.from_lambda_deployment_config_name(
        scope, "DeploymentConfig", f"CodeDeployDefault.Lambda{setting}"
    )


class CanaryDeployment(Construct):
    """One function's deployment group: CodeDeploy shifts its `live` alias by `config`, with the
    environment's shared hooks and role (stacks/constructs/deploy_hooks.py), rolls back on any of `alarms`,
    and tells on-call of every start, success, failure, stop and rollback."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        target: GuardedFunction,
        application: codedeploy.ILambdaApplication,
        config: str | CustomCanary,
        alarms: Sequence[cloudwatch.IAlarm],
        topic: sns.ITopic,
        hooks: DeploymentHooks,
        grants: Sequence[Construct],
        post_traffic: bool,
    ) -> None:
        """`post_traffic`: the function has post-traffic checks (its CREDMATE_CHECKS say which)."""
        super().__init__(scope, construct_id)
        self.target_function = target.function
        self.pre_traffic_hook = hooks.pre_traffic_hook
        self.post_traffic_hook = hooks.post_traffic_hook
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            role=hooks.role,
            application=application,
            alias=target.alias,
            deployment_config=deployment_config(self, config),
            alarms=list(alarms),
            # The hooks are wired below (_wire_hooks), not through pre_hook/post_hook.
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        # CDK has no prop for trigger configurations (aws-cdk issue 11110): set them on the L1 so on-call
        # hears of every start, success, failure, stop and rollback.
        cfn_group = self.deployment_group.node.default_child
        assert isinstance(cfn_group, codedeploy.CfnDeploymentGroup)
        cfn_group.add_property_override(
            "TriggerConfigurations",
            [
                {
                    "TriggerEvents": list(TRIGGER_EVENTS),
                    "TriggerName": f"{target.label}-deployments",
                    "TriggerTargetArn": topic.topic_arn,
                }
            ],
        )
        self._wire_hooks(target, hooks, post_traffic=post_traffic)
        # The alias update is the deployment: the grants naming this deploy's new version and this alias
        # must be in place before it starts. Only the alias resource waits, not its permissions or event
        # source mapping.
        cfn_alias = target.alias.node.default_child
        assert isinstance(cfn_alias, lambda_.CfnAlias)
        cfn_alias.node.add_dependency(*grants)

    @staticmethod
    def _wire_hooks(target: GuardedFunction, hooks: DeploymentHooks, *, post_traffic: bool) -> None:
        """What LambdaDeploymentGroup's pre_hook/post_hook do, without their per-group grants (the shared
        hooks report to every group of the application, and the shared role invokes exactly the hooks):
        the alias's UpdatePolicy names the hooks, and CloudFormation puts them in the deployment's AppSpec."""
        cfn_alias = target.alias.node.default_child
        assert isinstance(cfn_alias, lambda_.CfnAlias)
        update = "UpdatePolicy.CodeDeployLambdaAliasUpdate"
        cfn_alias.add_override(f"{update}.BeforeAllowTrafficHook", hooks.pre_traffic_hook.function_name)
        if hooks.post_traffic_hook is not None and post_traffic:
            cfn_alias.add_override(f"{update}.AfterAllowTrafficHook", hooks.post_traffic_hook.function_name)


def stage_url(rest_api_id: str, stage_name: str) -> str:
    """The stage URL built from the API ID only: referencing the Stage would create a dependency cycle
    (alias -> post-traffic hook -> stage -> deployment -> methods -> alias)."""
    return Fn.join(
        "", ["https://", rest_api_id, ".execute-api.", Aws.REGION, ".", Aws.URL_SUFFIX, "/", stage_name, "/"]
    )
