"""cdk-nag (AwsSolutions + HIPAA Security) acknowledgements for the backend stack, each with its reason.

Every acknowledgement names one rule (with its finding where the rule has several) on one construct: nothing
is silenced stack-wide. Guardrail and alarm constructs acknowledge their own findings where they are built.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import Construct

from stacks.constructs.canary import HOOK_RUNTIME, CanaryDeployment
from stacks.constructs.guarded_function import GuardedFunction

AS, HIPAA = "AwsSolutions::AwsSolutions", "HIPAA.Security::HIPAA.Security"


def _ack(scope: Construct, findings: Iterable[tuple[str, str]]) -> None:
    Validations.of(scope).acknowledge(*(Acknowledgment(id=rule, reason=reason) for rule, reason in findings))


def _stack_local_ref(stack: Stack, construct: Construct) -> str:
    from aws_cdk import CfnResource

    child = construct.node.default_child
    assert isinstance(child, CfnResource)
    return str(stack.resolve(child.logical_id))


LAMBDA_COMMON = (
    (
        f"{AS}-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "AWS's basic execution policy only allows writing the function's own CloudWatch logs",
    ),
    (f"{AS}-IAM5[Resource::*]", "X-Ray PutTraceSegments/PutTelemetryRecords support no resource scoping"),
    (
        f"{HIPAA}-IAMNoInlinePolicy",
        "CDK grants land in the role's own policy; each statement is scoped to "
        "this stack's resources and reviewed in tests/test_stacks.py",
    ),
    (
        f"{HIPAA}-CloudWatchLogGroupEncrypted",
        "risk accepted: log groups use CloudWatch Logs' own service-side encryption, not a "
        "customer-managed key (EnvironmentKey, stacks/constructs/encryption.py, is not applied), and the "
        "backend does not redact its log lines",
    ),
)


def acknowledge_backend(
    stack: Stack,
    *,
    functions: Iterable[GuardedFunction],
    canaries: Iterable[CanaryDeployment],
    api: Construct | None,
    access_logs: Construct | None,
    in_vpc: bool,
    runtime: str,
) -> None:
    for g in functions:
        findings = [
            *LAMBDA_COMMON,
            (
                f"{AS}-L1",
                f"runtime {runtime} is pinned in cdk.json (function.runtime) to the interpreter the "
                "backend is tested and verified with at synth",
            ),
            (
                f"{HIPAA}-LambdaConcurrency",
                "no reserved concurrency: the API must scale with traffic; throttles alarm (FunctionAlarms)",
            ),
            (
                f"{HIPAA}-LambdaDLQ",
                "the Worker's SQS queue has its own dead-letter queue (alarmed); the API is "
                "synchronous and the scheduler's run repeats on its next schedule",
            ),
        ]
        if not in_vpc:
            findings.append(
                (
                    f"{HIPAA}-LambdaInsideVPC",
                    "this environment configures no network in cdk.json; "
                    "set network to place the functions in the VPC",
                )
            )
        _ack(g, findings)
    for c in canaries:
        hooks = [h for h in (c.pre_traffic_hook, c.post_traffic_hook) if h is not None]
        for hook in hooks:
            _ack(
                hook,
                [
                    *LAMBDA_COMMON,
                    (
                        f"{AS}-L1",
                        f"hooks run {HOOK_RUNTIME.name} (canary.HOOK_RUNTIME), the newest Python runtime "
                        "this aws-cdk-lib knows, independent of the backend's runtime; a newer Lambda "
                        "runtime is taken with the aws-cdk-lib that adds it",
                    ),
                    (f"{HIPAA}-LambdaConcurrency", "invoked by CodeDeploy once per deployment"),
                    (
                        f"{HIPAA}-LambdaDLQ",
                        "invoked synchronously by CodeDeploy, which records the failure and "
                        "rolls back; there is no event to dead-letter",
                    ),
                    (
                        f"{HIPAA}-LambdaInsideVPC",
                        "calls only the Lambda and CodeDeploy APIs and the public API "
                        "stage; reads no health-care data",
                    ),
                    (
                        f"{AS}-IAM5[Resource::<{_stack_local_ref(stack, c.target_function)}.Arn>:*]",
                        "invoke rights on the target function's versions only (new each deploy)",
                    ),
                ],
            )
        for hook in hooks:
            _ack(
                c.deployment_group,
                [
                    (
                        f"{AS}-IAM5[Resource::<{_stack_local_ref(stack, hook)}.Arn>:*]",
                        "CodeDeploy invokes this deployment group's own hook (any version)",
                    ),
                ],
            )
        _ack(c, [LAMBDA_COMMON[3]])  # the hooks' log groups
        _ack(
            c.deployment_group,
            [
                (
                    f"{AS}-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSCodeDeployRoleForLambdaLimited]",
                    "AWS's policy for CodeDeploy Lambda deployments: alias "
                    "updates and hook invocation, nothing else",
                ),
                (
                    f"{AS}-IAM5[Action::kms:GenerateDataKey*]",
                    "publishing deployment events to the encrypted on-call topic needs its key's data keys",
                ),
                (f"{HIPAA}-IAMNoInlinePolicy", "CDK-generated policy scoped to this group's hooks and topic"),
            ],
        )
    if api is None or access_logs is None:
        return
    _ack(
        api,
        [
            (f"{AS}-APIG2", "the FastAPI backend validates every request body with pydantic"),
            (
                f"{AS}-APIG4",
                "the backend authenticates with its own JWTs (POST /api/v1/auth/login); /health and "
                "login must stay public",
            ),
            (f"{AS}-COG4", "no Cognito: the backend issues and checks its own JWTs"),
            (
                f"{AS}-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "AWS's policy that lets API Gateway write its logs",
            ),
            (
                f"{HIPAA}-APIGWCacheEnabledAndEncrypted",
                "responses carry per-user credential data and must not be cached",
            ),
            (
                f"{HIPAA}-APIGWSSLEnabled",
                "the stage certificate is for API Gateway to backend calls; the backend "
                "is a Lambda proxy integration, not an HTTP endpoint",
            ),
            (
                f"{AS}-APIG3",
                "risk accepted: no WAF web ACL is attached to this stage (ApiFirewall, "
                "stacks/constructs/waf.py, is not applied); the account's API Gateway throttling is the only "
                "request limit",
            ),
        ],
    )
    _ack(access_logs, [LAMBDA_COMMON[3]])
