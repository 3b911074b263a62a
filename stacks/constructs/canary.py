"""CodeDeploy canary for one function's `live` alias, with its pre- and post-traffic hook Lambdas.

One generic hook code asset (lambda_src/hooks) serves every function; each deployment group gets its own
hook *instances*, configured by environment, so a hook can only invoke its own target function and only
report to its own deployment group (least privilege is per instance, not per code path).

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
from dataclasses import dataclass, replace
from pathlib import Path

from aws_cdk import AssetHashType, Aws, Duration, Fn, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.bundling.build import build_bundle
from stacks.bundling.spec import DEFAULT_EXCLUDES, BundleSpec, BundlingError
from stacks.config import CustomCanary
from stacks.constructs.guarded_function import LIVE_ALIAS, GuardedFunction
from stacks.constructs.lambda_bundle import _HOST_ARCH, _log
from stacks.constructs.managed_policy_role import ManagedPolicyRole, path_below_stack
from stacks.hook_budget import DEFAULT_INVOKES, MIN_HOOK_TIMEOUT_SECONDS, hook_timeout_seconds

HOOKS_SRC = Path(__file__).resolve().parents[2] / "lambda_src" / "hooks"
# The post-traffic hook calls the API (API Gateway ends a request at 29 s), never the function directly: a
# fixed timeout fits every function. The pre-traffic hook's timeout comes from its target's (hook_budget).
HOOK_TIMEOUT = Duration.seconds(MIN_HOOK_TIMEOUT_SECONDS)
# The newest Python runtime aws-cdk-lib 2.275 knows and Lambda runs (tests/test_stacks.py checks it is
# the newest Python member of lambda_.Runtime).
HOOK_RUNTIME = lambda_.Runtime.PYTHON_3_14
HOOK_MODULES = ("hook_core", "pre_traffic", "post_traffic")
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


@dataclass(frozen=True)
class PostTrafficChecks:
    """What the post-traffic hook checks against the deployed API stage."""

    api_url: str
    allowed_origin: str
    cors_methods: tuple[str, ...]
    cors_headers: tuple[str, ...]
    health_path: str = "/health"
    # The API's login route, checked to answer 401 to bad credentials; None: the check is skipped (logged)
    # and the CORS preflight targets the health route instead.
    login_path: str | None = None
    login_body: str = "json"  # "json" or "form": how the login route takes credentials


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
        hooks_code: lambda_.Code,
        check_http_health: bool,
        schema_mismatch: str,
        post_traffic: PostTrafficChecks | None = None,
        uses_database: bool = False,
        health_path: str = "/health",
    ) -> None:
        super().__init__(scope, construct_id)
        fn = target.function
        self.target_function = fn
        self.hook_roles: dict[str, ManagedPolicyRole] = {}
        # Long enough for every invoke of the target to run to its own timeout and still report; a target
        # timeout too long for any hook raises here, naming it (hook_budget.check_fits).
        function_timeout = int(target.timeout.to_seconds())
        invokes = DEFAULT_INVOKES if check_http_health else 1
        try:
            self.pre_traffic_timeout_seconds = hook_timeout_seconds(function_timeout, invokes=invokes)
        except ValueError as exc:
            raise ValueError(f"function {target.label}: {exc}") from exc
        self.pre_traffic_hook = self._hook(
            "PreTrafficHook",
            hooks_code,
            "pre_traffic.handler",
            {
                "TARGET_FUNCTION_NAME": fn.function_name,
                "TARGET_ALIAS": LIVE_ALIAS,
                # SAM's pattern, kept as the fallback when the deployment's AppSpec cannot be read.
                "FALLBACK_TARGET_VERSION_ARN": target.version.function_arn,
                "CHECK_HTTP_HEALTH": "true" if check_http_health else "false",
                "HEALTH_PATH": health_path,
                "SCHEMA_MISMATCH": schema_mismatch,
                "USES_DATABASE": "true" if uses_database else "false",
            },
            timeout=Duration.seconds(self.pre_traffic_timeout_seconds),
        )
        # Invoke rights on exactly the version this deploy publishes, the one CodeDeploy shifts to (the
        # AppSpec's TargetVersion when CloudFormation starts the deployment, and the fallback above): not
        # `ARN:*`, so the hook can run no other version, nor the alias. The version ARN is a token, so the
        # policy follows every new version, and the hook waits for its policy (a function depends on its
        # role, the policy included); the alias waits for both (below). A deployment started by hand to
        # another version fails this hook: nothing but the stack moves the alias. AWS's own SAM
        # safe-deployment example grants the hook exactly `!Ref Function.Version`. The one case this
        # cannot cover: should a CloudFormation stack rollback move the alias back through a deployment that
        # runs this hook on the previous version (not observable here, without an AWS account), the hook
        # would be denied, because its policy reverts only after the alias does.
        self.pre_traffic_hook.add_to_role_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[target.version.function_arn])
        )
        self.post_traffic_hook: lambda_.Function | None = None
        if post_traffic:
            self.post_traffic_hook = self._hook(
                "PostTrafficHook",
                hooks_code,
                "post_traffic.handler",
                {
                    # Only for its log lines: which function's deployment a failed check belongs to.
                    "TARGET_FUNCTION_NAME": fn.function_name,
                    "API_URL": post_traffic.api_url,
                    "ALLOWED_ORIGIN": post_traffic.allowed_origin,
                    "CORS_METHODS": ",".join(post_traffic.cors_methods),
                    "CORS_HEADERS": ",".join(post_traffic.cors_headers),
                    "HEALTH_PATH": post_traffic.health_path,
                    "LOGIN_BODY": post_traffic.login_body,
                    **({"LOGIN_PATH": post_traffic.login_path} if post_traffic.login_path else {}),
                },
                timeout=HOOK_TIMEOUT,
            )
        self.deployment_group_role = self._deployment_group_role(target, alarms)
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            role=self.deployment_group_role,
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
        # Not topic.grant_publish: its key grant adds kms:GenerateDataKey*; an SNS publisher to an encrypted
        # topic needs exactly GenerateDataKey and Decrypt on the topic's key.
        self.deployment_group.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn])
        )
        key: kms.IKey | None = getattr(topic, "master_key", None)
        if key is not None:
            self.deployment_group.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[key.key_arn])
            )
        # The hook reads its deployment's AppSpec for the exact TargetVersion CodeDeploy will shift to.
        for hook in filter(None, (self.pre_traffic_hook, self.post_traffic_hook)):
            hook.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["codedeploy:GetDeployment"],
                    resources=[self.deployment_group.deployment_group_arn],
                )
            )
        self._wire_hooks(target)
        # The alias update is the deployment: CodeDeploy's role and the pre-traffic hook's must hold this
        # deploy's permissions before it starts (the hook's grant names the new version). Only the alias
        # resource waits, not its permissions or event source mapping.
        cfn_alias = target.alias.node.default_child
        assert isinstance(cfn_alias, lambda_.CfnAlias)
        cfn_alias.node.add_dependency(*self.hook_roles.values(), self.deployment_group_role)

    def _wire_hooks(self, target: GuardedFunction) -> None:
        """What LambdaDeploymentGroup's pre_hook/post_hook do, with CodeDeploy's invoke right on exactly each
        hook's ARN: the alias's UpdatePolicy names the hooks (CloudFormation puts them in the deployment's
        AppSpec), each hook may report its lifecycle status to this group, and CodeDeploy's role may invoke
        it. CodeDeploy invokes the function named in the AppSpec, the unqualified hook (no version or alias
        of a hook is ever published), so the library's `ARN:*` (every version) grants nothing it uses.
        """
        cfn_alias = target.alias.node.default_child
        assert isinstance(cfn_alias, lambda_.CfnAlias)
        update = "UpdatePolicy.CodeDeployLambdaAliasUpdate"
        hooks = {
            "BeforeAllowTrafficHook": self.pre_traffic_hook,
            "AfterAllowTrafficHook": self.post_traffic_hook,
        }
        for key, hook in hooks.items():
            if hook is None:
                continue
            cfn_alias.add_override(f"{update}.{key}", hook.function_name)
            self.deployment_group.grant_put_lifecycle_event_hook_execution_status(hook)
        self.deployment_group_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="InvokeThisGroupsHooks",
                actions=["lambda:InvokeFunction"],
                resources=[h.function_arn for h in hooks.values() if h is not None],
            )
        )

    def _deployment_group_role(
        self, target: GuardedFunction, alarms: Sequence[cloudwatch.IAlarm]
    ) -> ManagedPolicyRole:
        """CodeDeploy's role for this group: what AWS's AWSCodeDeployRoleForLambdaLimited allows for a
        Lambda deployment, scoped to this group's alias and alarms, in a customer-managed policy.

        The AWS policy allows cloudwatch:DescribeAlarms, lambda:GetAlias, lambda:UpdateAlias and
        lambda:GetProvisionedConcurrencyConfig on every resource, s3:GetObject(Version) for AppSpecs kept
        in S3 (CloudFormation passes the AppSpec inline: not needed) and lambda:InvokeFunction on
        `CodeDeployHook_*` functions (here: this group's own hooks, granted by `_wire_hooks`). Lambda
        documents the alias actions on the function ARN and on the alias ARN, so both are named (nothing
        wider). DescribeAlarms is scoped to the group's alarms: CloudWatch allows that
        for metric alarms, and every deployment alarm here is one (only composite alarms need `*`).
        NOT VERIFIED AGAINST AWS from here (no account): the first deploy of this role is its test.
        """
        role = ManagedPolicyRole(
            self,
            "DeploymentGroupRole",
            assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
            description=f"CodeDeploy: shifts {target.label}'s {LIVE_ALIAS} alias",
            policy_description=f"CodeDeploy: {target.label}'s {LIVE_ALIAS} alias, its alarms and hooks",
            keep_logical_id=(*path_below_stack(self), "DeploymentGroup", "ServiceRole", "Resource"),
            # The deployment group attaches it to any role; the statements below replace it.
            replaces_aws_managed=("service-role/AWSCodeDeployRoleForLambdaLimited",),
        )
        fn_arn = target.function.function_arn
        # The alias ARN built from the function's, not the alias's own attribute: the alias depends on this
        # role's policy, so the policy must not depend on the alias.
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ShiftTheLiveAlias",
                actions=["lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig"],
                resources=[fn_arn, f"{fn_arn}:{LIVE_ALIAS}"],
            )
        )
        if alarms:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadTheDeploymentAlarms",
                    actions=["cloudwatch:DescribeAlarms"],
                    resources=[a.alarm_arn for a in alarms],
                )
            )
        return role

    def _hook(
        self, construct_id: str, code: lambda_.Code, handler: str, env: dict[str, str], *, timeout: Duration
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.RETAIN,
        )
        role = ManagedPolicyRole(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"CodeDeploy {construct_id} for the {LIVE_ALIAS} alias",
            policy_description=f"CodeDeploy {construct_id}: its log group and its deployment group",
            keep_logical_id=(*path_below_stack(self), construct_id, "ServiceRole", "Resource"),
        )
        role.allow_function_basics(log_group)
        self.hook_roles[construct_id] = role
        return lambda_.Function(
            self,
            construct_id,
            role=role,
            code=code,
            handler=handler,
            runtime=HOOK_RUNTIME,
            timeout=timeout,
            memory_size=256,
            description=f"CodeDeploy {construct_id} for the {LIVE_ALIAS} alias (credmate-lambda)",
            environment=env,
            log_group=log_group,
            # CodeDeploy runs one lifecycle event of a deployment group at a time, and a deployment group
            # one deployment at a time: one concurrent run is all a hook ever needs.
            reserved_concurrent_executions=HOOK_RESERVED_CONCURRENCY,
        )


HOOK_RESERVED_CONCURRENCY = 1


def stage_url(rest_api_id: str, stage_name: str) -> str:
    """The stage URL built from the API ID only: referencing the Stage would create a dependency cycle
    (alias -> post-traffic hook -> stage -> deployment -> methods -> alias)."""
    return Fn.join(
        "", ["https://", rest_api_id, ".execute-api.", Aws.REGION, ".", Aws.URL_SUFFIX, "/", stage_name, "/"]
    )
