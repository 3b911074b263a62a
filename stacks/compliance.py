"""cdk-nag (AwsSolutions + HIPAA Security) acknowledgements for the backend stack, each with its reason.

Every acknowledgement names one rule (with its finding where the rule has several) on one construct: nothing
is silenced stack-wide. Every reason states a fact about this template or its configuration that
tests/test_security_acknowledgements.py checks (e.g. "no network in cdk.json" is checked against the parsed
config), so an acknowledgement cannot outlive its reason. Guardrail and alarm constructs acknowledge their
own findings where they are built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import EnvironmentConfig, ScheduleTrigger, SqsTrigger
from stacks.constructs.deploy_hooks import HOOK_RUNTIME, DeploymentHooks
from stacks.constructs.guarded_function import GuardedFunction
from stacks.constructs.nag import checkov_skip

AS, HIPAA = "AwsSolutions::AwsSolutions", "HIPAA.Security::HIPAA.Security"

# Reasons (checked by tests/test_security_acknowledgements.py, which matches on these texts).
XRAY_REASON = (
    "the only statement on Resource * allows xray:PutTraceSegments and xray:PutTelemetryRecords, which "
    "X-Ray does not scope to resources (active tracing)"
)
NO_NETWORK_REASON = "this environment has no network in cdk.json (environments.<env>.network is null)"
NO_RESERVED_REASON = "the function catalog sets no reserved_concurrency for this function in this environment"
API_SYNC_REASON = (
    "trigger type api: invoked synchronously by API Gateway, which returns the error to the caller"
)
SQS_REDRIVE_REASON = (
    "trigger type sqs: failed messages go to the function's own dead-letter queue (the queue's RedrivePolicy)"
)
NO_TRIGGER_REASON = (
    "trigger type none: no event source mapping, rule or subscription invokes it; its callers, granted "
    "lambda:InvokeFunction on the live alias, own its retries"
)
# Only with a network configured (not checked by the default synth's tests).
HOOK_NO_VPC_REASON = (
    "calls only AWS APIs and the public API URL, which a VPC without a NAT gateway cannot reach, and reads "
    "no database"
)
APIGW_LOGS_POLICY_REASON = (
    "AWS's AmazonAPIGatewayPushToCloudWatchLogs on a role only apigateway.amazonaws.com may assume"
)
PROXY_REASON = (
    "every method of this API is a Lambda proxy integration (AWS_PROXY) to a catalog function, which "
    "authenticates and validates requests itself (its own JWTs; login and /health are public)"
)
NO_CACHE_REASON = "the stage has no cache cluster: responses carry per-user credential data"
NO_HTTP_BACKEND_REASON = (
    "every integration is AWS_PROXY to Lambda; a client certificate only authenticates HTTP backends"
)
WAF_NO_LOGS_REASON = (
    "security.waf.log_destination_arn is null in cdk.json: WAF logs only to a destination named "
    "aws-waf-logs-*, and this app creates no physical names"
)
NO_WAF_REASON = "security.waf.enabled is false for this environment in cdk.json"


# Facts tests/test_security_acknowledgements.py checks against the template.
HOOK_DEPLOYMENTS_REASON = (
    "the shared hooks read and report the deployments of every deployment group of this environment's "
    "CodeDeploy application (the `/*` is the group name: one group per function); they may invoke only the "
    "exact versions each stack's DeploymentGrants name"
)
STACK_ALARMS_REASON = (
    "cloudwatch:DescribeAlarms on this stack's alarms only: CloudFormation names every alarm after its stack "
    "(nested stacks' names start with it too), and CodeDeploy reads the alarms of any group it deploys"
)


def acknowledge_shared_deployment(hooks: DeploymentHooks, function_roles: Iterable[Construct]) -> None:
    """The environment's shared hooks and CodeDeploy role (deploy_hooks.py), and each stack's FunctionRole,
    which carries the X-Ray statement of the functions that share it."""
    stack = Stack.of(hooks)
    for hook in hooks.hooks:
        if isinstance(hook.role, Construct):
            _ack(
                hook.role,
                [
                    (
                        f"{AS}-IAM5[Resource::{_nag_text(stack, hooks.deployments_arn)}]",
                        HOOK_DEPLOYMENTS_REASON,
                    )
                ],
            )
    _ack(hooks.role, [(f"{AS}-IAM5[Resource::{_nag_text(stack, hooks.alarms_arn)}]", STACK_ALARMS_REASON)])
    for role in function_roles:
        _ack(role, [(f"{AS}-IAM5[Resource::*]", XRAY_REASON)])


def _nag_text(stack: Stack, value: str) -> str:
    """A resource as cdk-nag writes it in a finding's ID: literal text, `<AWS::Region>` for a pseudo
    parameter, `<LogicalId>` for a reference."""

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, dict) and "Ref" in part:
            return f"<{part['Ref']}>"
        if isinstance(part, dict) and "Fn::Join" in part:
            separator, parts = part["Fn::Join"]
            return separator.join(text(p) for p in parts)
        raise ValueError(f"cannot name {part!r} as cdk-nag does")

    return text(stack.resolve(value))


def _ack(scope: Construct, findings: Iterable[tuple[str, str]]) -> None:
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule, reason in findings))


def _function_common(in_vpc: bool) -> list[tuple[str, str]]:
    findings = [(f"{AS}-IAM5[Resource::*]", XRAY_REASON)]
    if not in_vpc:
        findings.append((f"{HIPAA}-LambdaInsideVPC", NO_NETWORK_REASON))
    return findings


def acknowledge_scheduled_checks(checks: Sequence[lambda_.Function], *, in_vpc: bool) -> None:
    """The health and drift checks (their failed runs go to the failed-invocations queue)."""
    vpc_reason = HOOK_NO_VPC_REASON if in_vpc else NO_NETWORK_REASON
    for check in checks:
        _ack(check, [(f"{HIPAA}-LambdaInsideVPC", vpc_reason)])
        checkov_skip(check, "CKV_AWS_117", vpc_reason)


def acknowledge_backend(
    stack: Stack,
    *,
    config: EnvironmentConfig,
    functions: Iterable[GuardedFunction],
    hooks: Iterable[lambda_.Function],
    api: Construct | None,
    in_vpc: bool,
    runtime: str,
    has_firewall: bool = False,
    checks: Sequence[lambda_.Function] = (),
) -> None:
    """`checks`: the scheduled health and drift checks. The API's access log group needs nothing: it is
    encrypted with the environment's key like every other."""
    vpc_reason = HOOK_NO_VPC_REASON if in_vpc else NO_NETWORK_REASON
    acknowledge_scheduled_checks(checks, in_vpc=in_vpc)
    for g in functions:
        fn_config = config.function_named(g.label)
        findings = [
            *_function_common(in_vpc),
            (
                f"{AS}-L1",
                f"runtime {runtime} is the one pinned in cdk.json (function.runtime), the interpreter the "
                "backend is verified with at synth",
            ),
        ]
        if fn_config.reserved_concurrency is None:
            findings.append((f"{HIPAA}-LambdaConcurrency", NO_RESERVED_REASON))
        trigger = fn_config.trigger
        # A scheduled function has the failed-invocations queue (alarms.AsyncFailures).
        if not isinstance(trigger, ScheduleTrigger):
            dlq_reason = (
                SQS_REDRIVE_REASON
                if isinstance(trigger, SqsTrigger)
                else API_SYNC_REASON
                if fn_config.is_api
                else NO_TRIGGER_REASON
            )
            findings.append((f"{HIPAA}-LambdaDLQ", dlq_reason))
            checkov_skip(g.function, "CKV_AWS_116", dlq_reason)
        _ack(g, findings)
        if fn_config.reserved_concurrency is None:
            checkov_skip(g.function, "CKV_AWS_115", NO_RESERVED_REASON)
        if not in_vpc:
            checkov_skip(g.function, "CKV_AWS_117", NO_NETWORK_REASON)
    for hook in hooks:
        _ack(
            hook,
            [
                (
                    f"{AS}-L1",
                    f"hooks run {HOOK_RUNTIME.name} (deploy_hooks.HOOK_RUNTIME), the newest Python runtime "
                    "this aws-cdk-lib knows",
                ),
                (f"{HIPAA}-LambdaInsideVPC", vpc_reason),
            ],
        )
        checkov_skip(hook, "CKV_AWS_117", vpc_reason)
    if api is None:
        return
    assert isinstance(api, apigw.RestApi)
    for method in api.methods:
        if method.http_method != "OPTIONS":
            checkov_skip(method, "CKV_AWS_59", PROXY_REASON)
    checkov_skip(api.deployment_stage, "CKV_AWS_120", NO_CACHE_REASON)
    _ack(
        api,
        [
            (f"{AS}-APIG2", PROXY_REASON),
            (f"{AS}-APIG4", PROXY_REASON),
            (f"{AS}-COG4", PROXY_REASON),
            (
                f"{AS}-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                APIGW_LOGS_POLICY_REASON,
            ),
            (f"{HIPAA}-APIGWCacheEnabledAndEncrypted", NO_CACHE_REASON),
            (f"{HIPAA}-APIGWSSLEnabled", NO_HTTP_BACKEND_REASON),
            *([] if has_firewall else [(f"{AS}-APIG3", NO_WAF_REASON)]),
        ],
    )
