"""Guardrails against changing the functions outside `cdk deploy` (docs/guardrails.md).

A stack policy (stack_policy.py) only governs CloudFormation. These constructs cover the other paths:

* `OutOfBandChangeAlert`: detects, within about a minute, any mutating Lambda API call on these functions
  not made by CloudFormation (or by CodeDeploy shifting the alias during a deployment) and tells on-call who
  did what, when and from where.
* `CodeDriftCheck`: a scheduled check that the code running is the code the stack deployed, plus
  CloudFormation drift detection; metrics and alarms to on-call. Catches what the alert may miss (an event
  lost, a trail switched off).
* `DirectMutationDenyPolicy`: prevention; an IAM policy denying those calls to the roles people use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as event_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.constructs.guarded_function import LIVE_ALIAS

DRIFT_CHECK_SRC = Path(__file__).resolve().parents[2] / "lambda_src" / "drift_check"
METRIC_NAMESPACE = "CredentialMate/Guardrails"
CLOUDFORMATION = "cloudformation.amazonaws.com"
# CodeDeploy moves the `live` alias (UpdateAlias) during every canary; those deployments are started by
# CloudFormation. A CodeDeploy deployment started by hand shows up in CodeDriftCheck (alias version drift).
CODEDEPLOY = "codedeploy.amazonaws.com"

# Mutating Lambda operations on a function, its versions, aliases and settings. They are both the IAM action
# names (lambda:<op>) and the CloudTrail eventName prefixes: CloudTrail appends the API version
# (UpdateFunctionCode20150331v2, PublishVersion20150331...), hence prefix matching in the rule.
MUTATING_OPERATIONS: tuple[str, ...] = (
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
    "PublishVersion",
    "CreateAlias",
    "UpdateAlias",
    "DeleteAlias",
    "DeleteFunction",  # also DeleteFunctionConcurrency, DeleteFunctionUrlConfig... by prefix
    "PutFunctionConcurrency",
    "DeleteFunctionConcurrency",
    "PutProvisionedConcurrencyConfig",
    "DeleteProvisionedConcurrencyConfig",
    "AddPermission",
    "RemovePermission",
    "CreateFunctionUrlConfig",
    "UpdateFunctionUrlConfig",
    "DeleteFunctionUrlConfig",
    "PutFunctionEventInvokeConfig",
    "UpdateFunctionEventInvokeConfig",
    "DeleteFunctionEventInvokeConfig",
    "PutRuntimeManagementConfig",
    "PutFunctionCodeSigningConfig",
    "DeleteFunctionCodeSigningConfig",
    "PutFunctionRecursionConfig",
)
# Event-name prefixes for the rule: drop those another prefix already covers, to keep the pattern short.
EVENT_NAME_PREFIXES: tuple[str, ...] = tuple(
    op
    for op in MUTATING_OPERATIONS
    if not any(op != other and op.startswith(other) for other in MUTATING_OPERATIONS)
)

# CloudFormation drift detection reads every resource of the stack *with the caller's permissions*; without
# them the resource is reported NOT_CHECKED. Read-only actions for the resource types of this app. Several
# (logs:DescribeLogGroups, cloudwatch:DescribeAlarms, apigateway:GET...) have no useful resource-level scope.
DRIFT_DETECTION_READ_ACTIONS: tuple[str, ...] = (
    "apigateway:GET",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:GetDashboard",
    "cloudwatch:ListTagsForResource",
    "codedeploy:GetApplication",
    "codedeploy:GetDeploymentConfig",
    "codedeploy:GetDeploymentGroup",
    "codedeploy:ListTagsForResource",
    "events:DescribeRule",
    "events:ListTagsForResource",
    "events:ListTargetsByRule",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
    "lambda:GetEventSourceMapping",
    "lambda:ListEventSourceMappings",
    "logs:DescribeLogGroups",
    "logs:ListTagsForResource",
    "sns:GetSubscriptionAttributes",
    "sns:GetTopicAttributes",
    "sns:ListSubscriptionsByTopic",
    "sns:ListTagsForResource",
    "sqs:GetQueueAttributes",
    "sqs:ListQueueTags",
)
# Reads on the checked functions themselves: scoped to their ARNs (and their versions/aliases).
FUNCTION_READ_ACTIONS: tuple[str, ...] = (
    "lambda:GetAlias",
    "lambda:GetFunction",
    "lambda:GetFunctionCodeSigningConfig",
    "lambda:GetFunctionConcurrency",
    "lambda:GetFunctionConfiguration",
    "lambda:GetFunctionRecursionConfig",
    "lambda:GetPolicy",
    "lambda:GetProvisionedConcurrencyConfig",
    "lambda:GetRuntimeManagementConfig",
    "lambda:ListTags",
)


class GuardrailsError(ValueError):
    """A guardrail construct was given inputs it cannot honour."""


# Acknowledgement reasons (facts tests/test_security_acknowledgements.py checks against the template).
UNSCOPED_READS_REASON = (
    "Read-only actions without resource-level permissions: "
    "DescribeStackDriftDetectionStatus (the "
    "detection ID is not a resource), PutMetricData (limited by the cloudwatch:namespace "
    "condition), and the describe calls CloudFormation drift detection makes with the caller's "
    "permissions for every resource type in the stack"
)


def _function_resources(functions: Sequence[lambda_.IFunction]) -> list[str]:
    """The function ARNs and `ARN:*` (its versions and aliases): every resource Lambda authorizes against
    for these functions (what a deny must cover)."""
    return [arn for fn in functions for arn in (fn.function_arn, f"{fn.function_arn}:*")]


# ---------------------------------------------------------------------------------------------------------


def out_of_band_pattern(functions: Sequence[lambda_.IFunction]) -> events.EventPattern:
    """CloudTrail management events for mutating calls on `functions`, not made through CloudFormation."""
    if not functions:
        raise GuardrailsError("OutOfBandChangeAlert: functions must not be empty")
    # CloudTrail records functionName as the caller gave it: a name, a name:qualifier, a full ARN (possibly
    # qualified) or a partial ARN (ACCOUNT:function:NAME). One wildcard per function matches all of them
    # (CloudFormation's generated names end in a random suffix, so no other function's name contains one),
    # which keeps a rule of a dozen functions under EventBridge's 2,048-character pattern quota.
    names: list[object] = [{"wildcard": f"*{fn.function_name}*"} for fn in functions]
    return events.EventPattern(
        source=["aws.lambda"],
        detail_type=["AWS API Call via CloudTrail"],
        detail={
            "eventSource": ["lambda.amazonaws.com"],
            "eventName": [{"prefix": p} for p in EVENT_NAME_PREFIXES],
            "requestParameters": {"functionName": names},
            # sourceIPAddress is always present, unlike userIdentity.invokedBy (absent for people), and
            # anything-but never matches an absent field. CloudFormation's own calls, with or without a
            # service role, carry sourceIPAddress "cloudformation.amazonaws.com".
            "sourceIPAddress": [{"anything-but": [CLOUDFORMATION, CODEDEPLOY]}],
        },
    )


def out_of_band_message() -> events.RuleTargetInput:
    """Who, what, when, from where: the fields on-call needs to call the person and revert the change."""
    field = events.EventField.from_path
    return events.RuleTargetInput.from_object(
        {
            "alert": "Lambda changed outside cdk deploy (credmate-lambda guardrail)",
            "who": field("$.detail.userIdentity.arn"),
            "what": field("$.detail.eventName"),
            "function": field("$.detail.requestParameters.functionName"),
            "when": field("$.detail.eventTime"),
            "from": field("$.detail.sourceIPAddress"),
            "userAgent": field("$.detail.userAgent"),
            "account": field("$.account"),
            "region": field("$.region"),
            "requestId": field("$.detail.requestID"),
            "runbook": "docs/guardrails.md#an-out-of-band-change-alert-fired",
        }
    )


class OutOfBandChangeAlert(Construct):
    """EventBridge rule on CloudTrail: mutating Lambda calls on these functions, except CloudFormation's.

    Prerequisite (account level, not created here): a CloudTrail trail logging management events in this
    region; EventBridge only receives "AWS API Call via CloudTrail" events when one exists. If the on-call
    topic is KMS-encrypted, its key policy must let events.amazonaws.com use the key.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Sequence[lambda_.IFunction],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            description="Lambda functions of this stack changed outside CloudFormation (out-of-band change)",
            event_pattern=out_of_band_pattern(functions),
        )
        self.rule.add_target(event_targets.SnsTopic(topic, message=out_of_band_message()))


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftTarget:
    """A function to check: `alias.version` must be the version the stack deploys (e.g. current_version)."""

    label: str
    function: lambda_.IFunction
    alias: lambda_.IAlias


class CodeDriftCheck(Construct):
    """Scheduled Lambda (lambda_src/drift_check) comparing running code with deployed code + stack drift."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        targets: Sequence[DriftTarget | tuple[str, lambda_.IFunction, lambda_.IAlias]],
        stack: Stack,
        topic: sns.ITopic,
        schedule: Duration,
    ) -> None:
        super().__init__(scope, construct_id)
        self.targets = [t if isinstance(t, DriftTarget) else DriftTarget(*t) for t in targets]
        if not self.targets:
            raise GuardrailsError("CodeDriftCheck: targets must not be empty")
        labels = [t.label for t in self.targets]
        if len(set(labels)) != len(labels) or not all(
            re.fullmatch(r"[A-Za-z0-9]+", label) for label in labels
        ):
            raise GuardrailsError(
                f"CodeDriftCheck: labels {labels} must be unique and alphanumeric (they "
                "become metric dimensions and construct IDs)"
            )
        # `schedule`: 5 to 1440 minutes (guardrails.drift_check_minutes, checked by stacks/config): drift
        # detection takes minutes, and the alarm period cannot exceed a day.
        minutes = schedule.to_minutes()
        self._stack_name = stack.stack_name
        # The stack's ID is its ARN (arn:...:stack/NAME/UUID), the resource CloudFormation authorizes
        # against, whose UUID no name pattern has to guess.
        self.stack_arn = stack.stack_id
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_YEAR)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="credmate-lambda code and stack drift check",
        )
        # Customer-managed policies (no physical name), split so the unscoped reads stand apart.
        self.scoped_policy = iam.ManagedPolicy(
            self,
            "ScopedPermissions",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="ReadCheckedFunctions",
                    actions=list(FUNCTION_READ_ACTIONS),
                    resources=[arn for t in self.targets for arn in checked_resources(t)],
                ),
                iam.PolicyStatement(
                    sid="DetectDriftOfThisStack",
                    actions=[
                        "cloudformation:DescribeStackResourceDrifts",
                        "cloudformation:DescribeStacks",
                        "cloudformation:DetectStackDrift",
                        "cloudformation:DetectStackResourceDrift",
                    ],
                    resources=[self.stack_arn],
                ),
                iam.PolicyStatement(
                    sid="OwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                ),
            ],
        )
        self.unscoped_policy = iam.ManagedPolicy(
            self,
            "UnscopedPermissions",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="DriftDetectionStatus",
                    actions=["cloudformation:DescribeStackDriftDetectionStatus"],
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="PutGuardrailMetrics",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
                ),
                iam.PolicyStatement(
                    sid="DriftDetectionReads", actions=list(DRIFT_DETECTION_READ_ACTIONS), resources=["*"]
                ),
            ],
        )
        host = Stack.of(self)
        payload = [
            {
                "label": t.label,
                "function_name": t.function.function_name,
                "alias": t.alias.alias_name,
                "expected_version_arn": t.alias.version.function_arn,
            }
            for t in self.targets
        ]
        self.function = lambda_.Function(
            self,
            "Function",
            code=lambda_.Code.from_asset(str(DRIFT_CHECK_SRC), exclude=["__pycache__", "*.pyc"]),
            handler="drift_check.handler",
            runtime=lambda_.Runtime.PYTHON_3_14,
            timeout=Duration.minutes(5),
            memory_size=256,
            role=self.role,
            log_group=self.log_group,
            # One run at a time: two concurrent DetectStackDrift calls on a stack fail.
            reserved_concurrent_executions=1,
            description=f"Checks {stack.stack_name} runs the code and configuration it deployed",
            environment={
                "STACK_NAME": stack.stack_name,
                "METRIC_NAMESPACE": METRIC_NAMESPACE,
                "DRIFT_TIMEOUT_SECONDS": "240",
                # Version ARNs are tokens: a new version deployed updates this function's configuration too.
                "DRIFT_TARGETS": host.to_json_string(payload),
            },
        )
        self.function.node.add_dependency(self.scoped_policy, self.unscoped_policy)
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.rate(schedule),
            description="Runs the code and stack drift check",
        )
        self.rule.add_target(event_targets.LambdaFunction(self.function, retry_attempts=0))

        period = Duration.minutes(minutes)
        action = cw_actions.SnsAction(topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def alarm(name: str, metric: cloudwatch.IMetric, description: str) -> None:
            created = cloudwatch.Alarm(
                self,
                f"{name}Alarm",
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms[name] = created

        def per_stack(metric_name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRIC_NAMESPACE,
                metric_name=metric_name,
                dimensions_map={"Stack": stack.stack_name},
                statistic="Maximum",
                period=period,
            )

        watched = ", ".join(t.label for t in self.targets)
        alarm(
            "CodeDrift",
            per_stack("CodeDrift"),
            f"The code running one of {watched} (or its {LIVE_ALIAS} alias) is not what the stack deployed. "
            "Which one: the CodeDrift metric per Function, or Logs Insights on the drift-check log group: "
            "fields @message | filter drifted = 1",
        )
        alarm(
            "StackDrift",
            per_stack("StackDrift"),
            f"{stack.stack_name}: CloudFormation drift detection found resources changed outside "
            "CloudFormation",
        )
        alarm(
            "CheckFailing",
            self.function.metric_errors(period=period, statistic="Sum"),
            "The drift check itself failed: nothing vouches for the running code until it is fixed",
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        Validations.of(self.unscoped_policy).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason=UNSCOPED_READS_REASON,
            )
        )


def checked_resources(target: DriftTarget) -> list[str]:
    """Exactly what the check and CloudFormation drift detection read of one function: the function
    (unqualified; `$LATEST` named too, as the check asks for it by that qualifier), its alias, and the
    version the stack deployed (a token: the policy follows every new version).

    The alias's version when it is another one (moved by hand) is read through the alias's own ARN
    (`Qualifier=<alias>` returns the configuration of the version it points to, lambda_src/drift_check),
    so no other version needs granting: the check reports that drift instead of failing on AccessDenied.
    """
    fn_arn = target.function.function_arn
    return [fn_arn, f"{fn_arn}:$LATEST", target.alias.function_arn, target.alias.version.function_arn]


# ---------------------------------------------------------------------------------------------------------


def deny_statement(functions: Sequence[lambda_.IFunction]) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid="DenyDirectMutationOfDeployedFunctions",
        effect=iam.Effect.DENY,
        actions=[f"lambda:{op}" for op in MUTATING_OPERATIONS],
        resources=_function_resources(functions),
        # When these roles deploy through CloudFormation without a CloudFormation service role,
        # CloudFormation calls Lambda with their credentials and aws:CalledViaFirst is
        # cloudformation.amazonaws.com: those calls stay allowed; direct calls (key absent) are denied.
        conditions={"StringNotEqualsIfExists": {"aws:CalledViaFirst": CLOUDFORMATION}},
    )


class DirectMutationDenyPolicy(Construct):
    """A managed policy (no physical name) attached to existing roles, denying direct function mutation.

    Attach it to the roles people and CI use (admins, developers, break-glass is the documented exception),
    never to the CloudFormation execution role or CodeDeploy's role. The SCP equivalent, which exempts the
    execution role by aws:PrincipalArn, is in docs/guardrails.md.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Sequence[lambda_.IFunction],
        role_arns: Sequence[str],
        cfn_exec_role_arn: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not functions:
            raise GuardrailsError("DirectMutationDenyPolicy: functions must not be empty")
        if not role_arns:
            raise GuardrailsError(
                "DirectMutationDenyPolicy: role_arns is empty (cdk.json environments.<env>."
                "guardrails.deny_direct_mutation_role_arns); omit the construct instead"
            )
        # `role_arns`: IAM role ARNs, each once (guardrails.deny_direct_mutation_role_arns, checked by
        # stacks/config); which role runs CloudFormation is known here only.
        for arn in role_arns:
            if cfn_exec_role_arn and arn == cfn_exec_role_arn:
                raise GuardrailsError(
                    f"cdk.json environments.<env>.guardrails.deny_direct_mutation_role_arns: {arn!r} is the "
                    "CloudFormation execution role; denying it would make every deploy fail"
                )
        roles = [
            iam.Role.from_role_arn(self, f"Role{i}", arn, mutable=False) for i, arn in enumerate(role_arns)
        ]
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description="credmate-lambda: deny changing deployed functions outside CloudFormation",
            statements=[deny_statement(functions)],
            roles=roles,
        )
