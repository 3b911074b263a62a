"""CodeDeploy canary for one function's `live` alias, with its pre- and post-traffic hook Lambdas.

One generic hook code asset (lambda_src/hooks) serves every function; each deployment group gets its own
hook *instances*, configured by environment, so a hook can only invoke its own target function and only
report to its own deployment group (least privilege is per instance, not per code path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Aws, Duration, Fn, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.config import CustomCanary
from stacks.constructs.guarded_function import LIVE_ALIAS, GuardedFunction

HOOKS_SRC = Path(__file__).resolve().parents[2] / "lambda_src" / "hooks"
HOOK_TIMEOUT = Duration.minutes(3)
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
    # A path that must answer 401 to credentials that cannot exist; None skips that check.
    login_path: str | None = None
    login_body: str = "json"


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
        health_path: str = "/health",
        uses_database: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        fn = target.function
        self.target_function = fn
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
                "USES_DATABASE": "true" if uses_database else "false",
                "SCHEMA_MISMATCH": schema_mismatch,
            },
        )
        # Invoke rights on this function's versions only (function ARN and `:qualifier` ARNs).
        fn.grant_invoke(self.pre_traffic_hook)
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
                    "LOGIN_PATH": post_traffic.login_path or "",
                    "LOGIN_BODY": post_traffic.login_body,
                },
            )
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            application=application,
            alias=target.alias,
            deployment_config=deployment_config(self, config),
            alarms=list(alarms),
            pre_hook=self.pre_traffic_hook,
            post_hook=self.post_traffic_hook,
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
        topic.grant_publish(self.deployment_group.role)
        # The hook reads its deployment's AppSpec for the exact TargetVersion CodeDeploy will shift to.
        for hook in filter(None, (self.pre_traffic_hook, self.post_traffic_hook)):
            hook.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["codedeploy:GetDeployment"],
                    resources=[self.deployment_group.deployment_group_arn],
                )
            )

    def _hook(
        self, construct_id: str, code: lambda_.Code, handler: str, env: dict[str, str]
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.RETAIN,
        )
        return lambda_.Function(
            self,
            construct_id,
            code=code,
            handler=handler,
            runtime=lambda_.Runtime.PYTHON_3_11,
            timeout=HOOK_TIMEOUT,
            memory_size=256,
            description=f"CodeDeploy {construct_id} for the {LIVE_ALIAS} alias (credmate-lambda)",
            environment=env,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )


def stage_url(rest_api_id: str, stage_name: str) -> str:
    """The stage URL built from the API ID only: referencing the Stage would create a dependency cycle
    (alias -> post-traffic hook -> stage -> deployment -> methods -> alias)."""
    return Fn.join(
        "", ["https://", rest_api_id, ".execute-api.", Aws.REGION, ".", Aws.URL_SUFFIX, "/", stage_name, "/"]
    )
