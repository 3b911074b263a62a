"""Alarms that would have paged within minutes of each incident, and feed CodeDeploy's automatic rollback.

One catalogue (stacks/constructs/alarm_catalogue.py) describes every alarm: what it means, its likely cause,
the first command to run, its threshold wording, comparison, evaluation and who is told. The constructs
below build alarms only through it, and scripts/alarm_table/ prints docs/alarms.md from it (through
the names this module re-exports), so the two cannot diverge.

Why hand-written rather than cdk-monitoring-constructs (checked: 10.3.3 asks for aws-cdk-lib >=2.160,<3,
so it would install next to 2.275):
- its AlarmFactory always sets a physical `alarmName` (and uses it as the construct ID); this project
  forbids physical names, and renaming a monitored resource would then replace its alarms;
- the init/import-error and timeout alarms, the ones that matter most here, are metric filters on log
  lines; it creates metric filters only for Fluent Bit, so we would hand-write those anyway;
- our descriptions (what broke, likely cause, first command, runbook) and the ALARM+OK routing to two
  topics would all be overrides, and it adds a second jsii module to every synth.

Periods are 5 minutes (the incident write-ups ask for a page within 5 minutes); only the p99 alarms wait
for 3 periods, and the scheduler's missed-run alarm uses its expected window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import CfnResource, Duration, Stack, Token
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import AlarmThresholds
from stacks.constructs.alarm_catalogue import (
    API_KEYS,
    AUDIENCE_TEXT,
    CATALOGUE,
    DLQ_KEYS,
    FUNCTION_KEYS,
    LOG_PATTERNS,
    PERIOD,
    RUNBOOK_URL,
    SCHEDULER_KEYS,
    SPECS,
    AlarmSpec,
    describe,
    timeout_rank_statistic,
)
from stacks.constructs.managed_policy_role import log_writer_policy

# The catalogue's names, for the callers that import them from here (scripts/alarm_table/, tests).
__all__ = [
    "API_KEYS",
    "AUDIENCE_TEXT",
    "CATALOGUE",
    "DLQ_KEYS",
    "FUNCTION_KEYS",
    "LOG_PATTERNS",
    "PERIOD",
    "RUNBOOK_URL",
    "SCHEDULER_KEYS",
    "SPECS",
    "AlarmSpec",
    "ApiAlarms",
    "AsyncFailures",
    "FunctionAlarms",
    "ServiceHealthAlarm",
    "describe",
    "log_metric",
    "log_metric_namespace",
    "timeout_rank_statistic",
    "top_stack",
]


def top_stack(scope: Construct) -> Stack:
    """The stack `scope` is deployed with: its own, or the top of its nested stacks."""
    stack = Stack.of(scope)
    while stack.nested_stack_parent is not None:
        stack = stack.nested_stack_parent
    return stack


def log_metric_namespace(scope: Construct) -> str:
    """Metric-filter metrics live in a per-environment namespace (the top stack's name, nested stacks
    included) so staging and prod in one account never mix."""
    stack_name = top_stack(scope).stack_name
    if Token.is_unresolved(stack_name):
        raise ValueError(f"{scope.node.path}: log metrics need a concrete stack name, got a token")
    return f"CredentialMate/{stack_name}"


def log_metric(scope: Construct, label: str, kind: str, *, period: Duration = PERIOD) -> cloudwatch.Metric:
    """The metric that the `kind` metric filters (a LOG_PATTERNS key) of function `label` publish."""
    if kind not in LOG_PATTERNS:
        raise ValueError(f"log_metric: unknown kind {kind!r}; known: {', '.join(LOG_PATTERNS)}")
    return cloudwatch.Metric(
        namespace=log_metric_namespace(scope),
        metric_name=f"{label}{kind}",
        statistic="Sum",
        period=period,
        label=f"{label} {kind}",
    )


def _add_actions(alarm: cloudwatch.AlarmBase, topic: sns.ITopic) -> None:
    action = cw_actions.SnsAction(topic)
    alarm.add_alarm_action(action)
    alarm.add_ok_action(action)


class _AlarmBuilder:
    """Makes a catalogue alarm inside one construct, so every alarm is built the same way."""

    def __init__(
        self,
        scope: Construct,
        *,
        subject: str,
        thresholds: AlarmThresholds,
        topic: sns.ITopic,
        runbook_url: str,
        names: Mapping[str, str],
    ) -> None:
        self.scope, self.subject, self.thresholds = scope, subject, thresholds
        self.topic, self.runbook_url, self.names = topic, runbook_url, names
        self.built: dict[str, cloudwatch.Alarm] = {}

    @property
    def rolling_back(self) -> list[cloudwatch.IAlarm]:
        """The built alarms CodeDeploy rolls an alias back on (AlarmSpec.rolls_back)."""
        return [a for k, a in self.built.items() if SPECS[k].rolls_back]

    @property
    def in_composite(self) -> list[cloudwatch.IAlarm]:
        """The built alarms the composite "service unhealthy" alarm pages on (AlarmSpec.in_composite)."""
        return [a for k, a in self.built.items() if SPECS[k].in_composite]

    def __call__(
        self, key: str, metric: cloudwatch.IMetric, threshold: float | None = None
    ) -> cloudwatch.Alarm:
        spec = SPECS[key]
        assert spec.threshold_field is not None, key
        value = getattr(self.thresholds, spec.threshold_field) if threshold is None else threshold
        alarm = cloudwatch.Alarm(
            self.scope,
            key,
            metric=metric,
            threshold=value,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.evaluation_periods,
            comparison_operator=spec.comparison,
            treat_missing_data=spec.missing_data,
            alarm_description=describe(
                spec,
                subject=self.subject,
                thresholds=self.thresholds,
                runbook_url=self.runbook_url,
                names=self.names,
            ),
        )
        _add_actions(alarm, self.topic)
        self.built[key] = alarm
        return alarm


class FunctionAlarms(Construct):
    """The alarms of one function; `deployment_alarms` are the ones CodeDeploy rolls back on."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        label: str,
        function: lambda_.Function,
        alias: lambda_.Alias,
        log_group: logs.ILogGroup,
        timeout: Duration,
        thresholds: AlarmThresholds,
        topic: sns.ITopic,
        runbook_url: str,
        dlq: sqs.IQueue | None = None,
        expected_invocation_window: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        names = {"log_group": log_group.log_group_name, "function": function.function_name}
        if dlq is not None:
            names["queue_url"] = dlq.queue_url
        build = _AlarmBuilder(
            self, subject=label, thresholds=thresholds, topic=topic, runbook_url=runbook_url, names=names
        )

        for kind, patterns in LOG_PATTERNS.items():
            metric = log_metric(self, label, kind)
            for i, pattern in enumerate(patterns):
                logs.MetricFilter(
                    self,
                    f"{kind}Filter{i}" if i else f"{kind}Filter",
                    log_group=log_group,
                    filter_pattern=logs.FilterPattern.literal(pattern),
                    metric_namespace=metric.namespace,
                    metric_name=metric.metric_name,
                    metric_value="1",
                    default_value=0,
                )

        alias_invocations = alias.metric_invocations(period=PERIOD, statistic="Sum")
        build(
            "ErrorRate",
            cloudwatch.MathExpression(
                expression="100 * errors / invocations",
                period=PERIOD,
                label=f"{label} live error rate (%)",
                using_metrics={
                    "errors": alias.metric_errors(period=PERIOD, statistic="Sum"),
                    "invocations": alias_invocations,
                },
            ),
        )
        build("InitErrors", log_metric(self, label, "InitErrors"))
        build("Throttles", function.metric_throttles(period=PERIOD, statistic="Sum"))
        build(
            "TimeoutRate",
            alias.metric_duration(period=PERIOD, statistic=timeout_rank_statistic(timeout)),
        )
        build(
            "DurationP99",
            alias.metric_duration(period=PERIOD, statistic="p99"),
            threshold=thresholds.duration_p99_fraction_of_timeout * timeout.to_milliseconds(),
        )
        if dlq is not None:
            build(
                "DlqDepth",
                dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            )
            build(
                "DlqOldestAge",
                dlq.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            )
        if expected_invocation_window is not None:
            seconds = expected_invocation_window.to_seconds()
            if seconds % 60 or not 300 <= seconds <= 86400:
                raise ValueError(
                    f"FunctionAlarms {label}: expected_invocation_window={seconds} s must be whole minutes "
                    "between 5 minutes and 1 day (CloudWatch alarm period limits); check the function's "
                    "trigger.expression in cdk.json"
                )
            build("MissedRuns", alias.metric_invocations(period=expected_invocation_window, statistic="Sum"))

        self.alarms_by_key: dict[str, cloudwatch.Alarm] = build.built
        self.alarms: list[cloudwatch.IAlarm] = list(build.built.values())
        self.deployment_alarms: list[cloudwatch.IAlarm] = build.rolling_back
        self.key_alarms: list[cloudwatch.IAlarm] = build.in_composite


# Runs in the health-check Lambda (inline code: no asset, no dependencies). Fails the invocation, which
# Lambda counts in its Errors metric, when /health does not answer 200 within two attempts.
HEALTH_CHECK_SOURCE = """\
import json, os, time, urllib.error, urllib.request


def probe(url, timeout):
    request = urllib.request.Request(url, headers={"User-Agent": "credmate-health-check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as err:
        return err.code, str(err.reason)
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


def handler(event, context):
    url = os.environ["HEALTH_URL"]
    attempts = int(os.environ.get("ATTEMPTS", "2"))
    status, detail = 0, ""
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        status, detail = probe(url, float(os.environ.get("ATTEMPT_TIMEOUT_SECONDS", "10")))
        print(json.dumps({"url": url, "attempt": attempt, "status": status, "detail": detail,
                          "seconds": round(time.monotonic() - started, 3)}))
        if status == 200:
            return {"healthy": True, "status": status}
        if attempt < attempts:
            time.sleep(float(os.environ.get("RETRY_DELAY_SECONDS", "5")))
    raise RuntimeError(f"health check failed: GET {url} -> {status} {detail}")
"""


class ApiAlarms(Construct):
    """API Gateway alarms and a /health check every 5 minutes with its own alarm.

    The check is a scheduled Lambda rather than a CloudWatch Synthetics canary: both synthesize offline, but
    a canary brings an S3 artifacts bucket (cdk-nag AwsSolutions S1/S10 and five HIPAA S3 rules to satisfy
    or suppress) and a role with wildcard CloudWatch/S3 rights, for a check that is one HTTPS GET. The Lambda
    needs only its log group; its failure is Lambda's own Errors metric, so no PutMetricData right either.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: apigw.RestApi,
        health_url: str,
        thresholds: AlarmThresholds,
        topic: sns.ITopic,
        runbook_url: str,
    ) -> None:
        super().__init__(scope, construct_id)
        build = _AlarmBuilder(
            self,
            subject="API",
            thresholds=thresholds,
            topic=topic,
            runbook_url=runbook_url,
            names={"health_url": health_url},
        )
        server_errors = api.metric_server_error(period=PERIOD, statistic="Sum")
        build("Api5xxCount", server_errors)
        build(
            "Api5xxRate",
            cloudwatch.MathExpression(
                expression="100 * errors / requests",
                period=PERIOD,
                label="API 5XX rate (%)",
                using_metrics={
                    "errors": server_errors,
                    "requests": api.metric_count(period=PERIOD, statistic="Sum"),
                },
            ),
        )
        build("ApiLatencyP99", api.metric_latency(period=PERIOD, statistic="p99"))

        self.health_check = self._health_check(health_url)
        build("HealthCheck", self.health_check.metric_errors(period=PERIOD, statistic="Sum"))

        self.alarms_by_key: dict[str, cloudwatch.Alarm] = build.built
        self.alarms: list[cloudwatch.IAlarm] = list(build.built.values())
        # Added to every API function's deployment group: CodeDeploy rolls its alias back while one is in
        # ALARM.
        self.deployment_alarms: list[cloudwatch.IAlarm] = build.rolling_back
        self.key_alarms: list[cloudwatch.IAlarm] = build.in_composite

    def _health_check(self, health_url: str) -> lambda_.Function:
        log_group = logs.LogGroup(self, "HealthCheckLogs", retention=logs.RetentionDays.ONE_MONTH)
        # An explicit role with only its log group: the default role would attach the AWS managed
        # AWSLambdaBasicExecutionRole (cdk-nag AwsSolutions-IAM4).
        role = iam.Role(
            self,
            "HealthCheckRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Health check of the CredentialMate API: writes its own logs only",
        )
        policy = log_writer_policy(
            self,
            "HealthCheckPolicy",
            description="Lets the CredentialMate health check write its own log group",
            log_group=log_group,
            role=role,
        )
        fn = lambda_.Function(
            self,
            "HealthCheckFunction",
            description="GET /health of the CredentialMate API every 5 minutes; fails when it is not 200",
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler="index.handler",
            code=lambda_.Code.from_inline(HEALTH_CHECK_SOURCE),
            timeout=Duration.seconds(30),
            memory_size=128,
            role=role,
            log_group=log_group,
            # One check at a time is all it ever needs (also HIPAA LambdaConcurrency).
            reserved_concurrent_executions=1,
            # A failed check must count once, in the 5-minute bin it belongs to: no async retries.
            retry_attempts=0,
            environment={
                "HEALTH_URL": health_url,
                "ATTEMPTS": "2",
                "ATTEMPT_TIMEOUT_SECONDS": "10",
                "RETRY_DELAY_SECONDS": "5",
            },
        )
        fn.node.add_dependency(policy)  # its first run must be able to log
        rule = events.Rule(
            self,
            "HealthCheckSchedule",
            schedule=events.Schedule.rate(PERIOD),
            description="Runs the CredentialMate API /health check",
        )
        rule.add_target(targets.LambdaFunction(fn, retry_attempts=0))
        return fn


class ServiceHealthAlarm(Construct):
    """The composite "service unhealthy" alarm: the only one that pages."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarms: Sequence[cloudwatch.IAlarm],
        topic: sns.ITopic,
        runbook_url: str,
        thresholds: AlarmThresholds | None = None,
        subject: str = "CredentialMate",
    ) -> None:
        super().__init__(scope, construct_id)
        if not alarms:
            raise ValueError(f"ServiceHealthAlarm {self.node.path}: needs at least one child alarm")
        spec = SPECS["ServiceUnhealthy"]
        self.alarm = cloudwatch.CompositeAlarm(
            self,
            spec.key,
            alarm_rule=cloudwatch.AlarmRule.any_of(*alarms),
            alarm_description=describe(
                spec,
                subject=subject,
                thresholds=thresholds or AlarmThresholds(),
                runbook_url=runbook_url,
                names={},
            ),
        )
        # The L2 always names a composite alarm (a leftover from when CloudFormation required it); the
        # property is optional now, so drop it and let CloudFormation generate one like every other alarm.
        cfn_alarm = self.alarm.node.default_child
        assert isinstance(cfn_alarm, CfnResource)
        cfn_alarm.add_property_deletion_override("AlarmName")
        _add_actions(self.alarm, topic)


class AsyncFailures(Construct):
    """One dead-letter queue for every asynchronously invoked function of the environment, and its alarm.

    Lambda retries an asynchronous invocation (EventBridge schedules, CodeDeploy lifecycle hooks) twice, then
    drops the event unless the function has a dead-letter queue. Here it lands in `.queue` (encrypted with the
    environment's key: Lambda sends with the function's own role, granted by `attach`), and the
    FailedInvocations alarm tells on-call. `.queue`'s messages carry the event and the error's attributes.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue_kwargs: Mapping[str, Any],
        key_arn: str,
        thresholds: AlarmThresholds,
        topic: sns.ITopic,
        runbook_url: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key_arn = key_arn
        self.queue = sqs.Queue(
            self, "Queue", retention_period=Duration.days(14), enforce_ssl=True, **queue_kwargs
        )
        build = _AlarmBuilder(
            self,
            subject="Async",
            thresholds=thresholds,
            topic=topic,
            runbook_url=runbook_url,
            names={"queue_url": self.queue.queue_url},
        )
        self.alarm = build(
            "FailedInvocations",
            self.queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
        )
        self.functions: list[lambda_.Function] = []

    def attach(self, fn: lambda_.Function) -> None:
        """Send `fn`'s failed asynchronous invocations to the queue: its DeadLetterConfig, and its role's
        right to send there (into the role's existing default policy, else a customer-managed policy)."""
        cfn = fn.node.default_child
        assert isinstance(cfn, lambda_.CfnFunction)
        cfn.dead_letter_config = lambda_.CfnFunction.DeadLetterConfigProperty(target_arn=self.queue.queue_arn)
        statements = [
            iam.PolicyStatement(
                sid="SendFailedInvocations", actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]
            ),
            iam.PolicyStatement(
                sid="EncryptFailedInvocations",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key_arn],
            ),
        ]
        role = fn.role
        assert isinstance(role, iam.Role), f"{fn.node.path}: expected a role built in this app"
        if role.node.try_find_child("DefaultPolicy") is not None:
            for statement in statements:
                fn.add_to_role_policy(statement)
        else:
            policy = iam.ManagedPolicy(
                fn,
                "DeadLetterPolicy",
                description="Sends the function's failed asynchronous invocations to the AsyncFailures queue",
                statements=statements,
                roles=[role],
            )
            # Lambda checks the role may send to the queue when it sets the DeadLetterConfig.
            cfn.node.add_dependency(policy)
        self.functions.append(fn)
