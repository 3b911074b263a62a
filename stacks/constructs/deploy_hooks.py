"""The environment's shared CodeDeploy pieces: one pre-traffic hook, one post-traffic hook, one role.

Every function's deployment group (stacks/constructs/canary.py) uses them. The hooks learn which function
and version a deployment is about from the deployment itself (its AppSpec, else CodeDeploy's deployment
target), and that function's checks from the function: its probe answers with its `CREDMATE_CHECKS`
(lambda_src/hooks, lambda_src/probe). So nothing per function sits in a hook's environment, whose 4 KB
would otherwise cap the catalog.

Least privilege still names exact resources, per stack that holds functions (`DeploymentGrants`):
- the hooks may invoke exactly the versions this deploy publishes (a customer-managed policy per stack,
  attached to both hook roles; each alias waits for its own stack's policy, so the grant of a new version
  is in place before CodeDeploy asks the hook to test it);
- the CodeDeploy role may read and move exactly each function's `live` alias (same pattern).
What is shared per environment and scoped by this environment's names: the hooks report only to deployment
groups of this environment's CodeDeploy application, and CodeDeploy reads alarms only of this stack (their
CloudFormation-made names start with the stack's name, nested stacks' included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.guarded_function import LIVE_ALIAS, RETENTION_BY_DAYS, GuardedFunction
from stacks.constructs.managed_policy_role import ManagedPolicyRole

# The newest Python runtime aws-cdk-lib 2.275 knows and Lambda runs (tests/test_stacks.py checks it is
# the newest Python member of lambda_.Runtime).
HOOK_RUNTIME = lambda_.Runtime.PYTHON_3_14
# The post-traffic hook calls the API (API Gateway ends a request at 29 s) after one light probe of the new
# version: a fixed timeout fits every function.
POST_TRAFFIC_TIMEOUT = Duration.seconds(180)
# CodeDeploy runs one lifecycle event at a time per deployment group, so a hook never needs more concurrent
# runs than the groups it serves; a stack update that publishes every function starts them all at once.
MAX_HOOK_CONCURRENCY = 100
# What the hooks read of a deployment and where they report (lambda_src/hooks).
HOOK_CODEDEPLOY_ACTIONS = (
    "codedeploy:GetDeployment",
    "codedeploy:ListDeploymentTargets",
    "codedeploy:GetDeploymentTarget",
    "codedeploy:PutLifecycleEventHookExecutionStatus",
)
ALIAS_ACTIONS = ("lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig")


@dataclass(frozen=True)
class PostTrafficSettings:
    """The environment-wide half of the post-traffic checks; each function's paths come from its probe."""

    api_url: str
    allowed_origin: str
    cors_methods: tuple[str, ...]
    cors_headers: tuple[str, ...]


class DeploymentHooks(Construct):
    """The hooks and the CodeDeploy role of one environment, for `group_count` deployment groups."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        application: codedeploy.ILambdaApplication,
        code: lambda_.Code,
        topic: sns.ITopic,
        log_retention_days: int,
        pre_traffic_timeout_seconds: int,
        group_count: int,
        post_traffic: PostTrafficSettings | None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self._log_retention_days = log_retention_days
        concurrency = max(1, min(group_count, MAX_HOOK_CONCURRENCY))
        # Every deployment group of this environment's application: what the hooks read and report to.
        self.deployments_arn = stack.format_arn(
            service="codedeploy",
            resource="deploymentgroup",
            resource_name=f"{application.application_name}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.pre_traffic_hook = self._hook(
            "PreTrafficHook",
            code,
            "pre_traffic.handler",
            {"TARGET_ALIAS": LIVE_ALIAS},
            timeout=Duration.seconds(pre_traffic_timeout_seconds),
            concurrency=concurrency,
        )
        self.post_traffic_hook: lambda_.Function | None = None
        if post_traffic is not None:
            self.post_traffic_hook = self._hook(
                "PostTrafficHook",
                code,
                "post_traffic.handler",
                {
                    "TARGET_ALIAS": LIVE_ALIAS,
                    "API_URL": post_traffic.api_url,
                    "ALLOWED_ORIGIN": post_traffic.allowed_origin,
                    "CORS_METHODS": ",".join(post_traffic.cors_methods),
                    "CORS_HEADERS": ",".join(post_traffic.cors_headers),
                },
                timeout=POST_TRAFFIC_TIMEOUT,
                concurrency=concurrency,
            )
        self.role = self._deployment_role(topic)

    @property
    def hooks(self) -> list[lambda_.Function]:
        return [h for h in (self.pre_traffic_hook, self.post_traffic_hook) if h is not None]

    @property
    def hook_roles(self) -> list[iam.IRole]:
        return [h.role for h in self.hooks if h.role is not None]

    def _hook(
        self,
        construct_id: str,
        code: lambda_.Code,
        handler: str,
        env: dict[str, str],
        *,
        timeout: Duration,
        concurrency: int,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=RETENTION_BY_DAYS[self._log_retention_days],
            removal_policy=RemovalPolicy.RETAIN,
        )
        role = ManagedPolicyRole(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"CodeDeploy {construct_id} of every function's {LIVE_ALIAS} alias",
            policy_description=f"CodeDeploy {construct_id}: its log group and this application's deployments",
        )
        role.allow_function_basics(log_group)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadAndReportThisApplicationsDeployments",
                actions=list(HOOK_CODEDEPLOY_ACTIONS),
                resources=[self.deployments_arn],
            )
        )
        return lambda_.Function(
            self,
            construct_id,
            role=role,
            code=code,
            handler=handler,
            runtime=HOOK_RUNTIME,
            timeout=timeout,
            memory_size=256,
            description=f"CodeDeploy {construct_id} of every function's {LIVE_ALIAS} alias (credmate-lambda)",
            environment=env,
            log_group=log_group,
            reserved_concurrent_executions=concurrency,
        )

    def _deployment_role(self, topic: sns.ITopic) -> ManagedPolicyRole:
        """CodeDeploy's role for every deployment group: what AWS's AWSCodeDeployRoleForLambdaLimited allows
        for a Lambda deployment, scoped. The alias actions are granted per stack (DeploymentGrants);
        DescribeAlarms is limited to this stack's alarms by name (CloudFormation names each alarm after its
        stack, and a nested stack's name starts with its parent's); CloudFormation passes the AppSpec
        inline, so no S3 read. NOT VERIFIED AGAINST AWS from here (no account): the first canary is its test,
        and CodeDeploy rolls back by itself when a permission is missing."""
        role = ManagedPolicyRole(
            self,
            "DeploymentRole",
            assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
            description=f"CodeDeploy: shifts every function's {LIVE_ALIAS} alias of this environment",
            policy_description="CodeDeploy: this stack's alarms, its hooks and the deployment topic",
            replaces_aws_managed=("service-role/AWSCodeDeployRoleForLambdaLimited",),
        )
        stack = Stack.of(self)
        self.alarms_arn = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=f"{Aws.STACK_NAME}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReadThisStacksAlarms", actions=["cloudwatch:DescribeAlarms"], resources=[self.alarms_arn]
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="InvokeTheHooks",
                actions=["lambda:InvokeFunction"],
                resources=[h.function_arn for h in self.hooks],
            )
        )
        # Not topic.grant_publish: its key grant adds kms:GenerateDataKey*; an SNS publisher to an encrypted
        # topic needs exactly GenerateDataKey and Decrypt on the topic's key.
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sns:Publish"], resources=[topic.topic_arn])
        )
        key: kms.IKey | None = getattr(topic, "master_key", None)
        if key is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[key.key_arn])
            )
        return role


class DeploymentGrants(Construct):
    """What the shared hooks and CodeDeploy role may do to the functions of one stack: invoke exactly the
    versions this deploy publishes, and move exactly their `live` aliases. One customer-managed policy per
    role, in the functions' own stack, so each alias can wait for it (`dependables`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        hooks: DeploymentHooks,
        targets: Sequence[GuardedFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self.invoke = iam.ManagedPolicy(
            self,
            "HooksInvokeNewVersions",
            description="CodeDeploy hooks: invoke exactly the versions this deploy publishes",
            roles=hooks.hook_roles,
            statements=[
                iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[t.version.function_arn for t in targets]
                )
            ],
        )
        # The alias ARN built from the function's, not the alias's own attribute: the alias depends on this
        # policy, so the policy must not depend on the alias.
        self.aliases = iam.ManagedPolicy(
            self,
            "ShiftTheLiveAliases",
            description=f"CodeDeploy: read and move exactly these functions' {LIVE_ALIAS} aliases",
            roles=[hooks.role],
            statements=[
                iam.PolicyStatement(
                    actions=list(ALIAS_ACTIONS),
                    resources=[
                        arn
                        for t in targets
                        for arn in (t.function.function_arn, f"{t.function.function_arn}:{LIVE_ALIAS}")
                    ],
                )
            ],
        )

    @property
    def dependables(self) -> list[Construct]:
        return [self.invoke, self.aliases]
