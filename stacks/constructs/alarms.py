"""Alarms that would have paged within minutes of each incident, and feed CodeDeploy's automatic rollback.

One catalogue (`CATALOGUE`) describes every alarm: what it means, its likely cause, the first command to
run, its threshold wording, comparison, evaluation and who is told. The constructs below build alarms only
through it, and scripts/alarm_table/table.py prints the README table from it, so the two cannot diverge.

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
from dataclasses import dataclass
from typing import Any, Literal

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

PERIOD = Duration.minutes(5)
Audience = Literal["notify", "page"]
M = cloudwatch.TreatMissingData
C = cloudwatch.ComparisonOperator

# CloudWatch Logs filter patterns (text syntax: quoted terms are ANDed; `?` terms are ORed). Several
# patterns may feed one metric: each becomes its own metric filter publishing to the same metric.
# Tested against real Lambda log lines in tests/test_log_patterns.py.
LOG_PATTERNS: Mapping[str, tuple[str, ...]] = {
    # Python runtime init failures: the signature of two of the three incidents (a missing wheel).
    "InitErrors": (
        '?"Runtime.ImportModuleError" ?"Runtime.HandlerNotFound" ?"Runtime.UserCodeSyntaxError" '
        '?"Runtime.ExitError"',
        # Any other init failure: the platform's INIT_REPORT line with any status but success (error,
        # timeout, failure); one filter for all of them.
        '"INIT_REPORT" -"Status: success"',
    ),
}
# Timeouts need no metric filter: Lambda records a timed-out invocation's Duration as the timeout itself, so
# the share of Duration data points at (or within TIMEOUT_MARGIN of) the timeout is the timeout rate,
# CloudWatch's percentile-rank statistic PR(lower:). NOT VERIFIED AGAINST AWS from here: the first timeout
# after a deploy is its test (tests/test_alarms.py checks the statistic the template carries).
TIMEOUT_MARGIN = 0.001


def timeout_rank_statistic(timeout: Duration) -> str:
    """`PR(n:)`: the percentage of invocations lasting at least n ms, n just under the timeout."""
    lower = timeout.to_milliseconds() * (1 - TIMEOUT_MARGIN)
    return f"PR({lower:g}:)"


@dataclass(frozen=True)
class AlarmSpec:
    """One row of the alarm catalogue. Text fields are format strings: `{t}` is the AlarmThresholds, and
    `first_command` gets the resource names of the construct that builds the alarm."""

    key: str  # construct ID of the alarm inside its construct
    applies_to: str
    title: str
    meaning: str
    likely_cause: str
    first_command: str
    threshold: str
    threshold_field: str | None
    comparison: C
    missing_data: M
    audience: Audience = "notify"
    evaluation_periods: int = 1
    rolls_back: bool = False  # CodeDeploy rolls the alias back while it is in ALARM
    in_composite: bool = False  # one of the key alarms "service unhealthy" pages on

    def threshold_text(self, thresholds: AlarmThresholds) -> str:
        return self.threshold.format(t=thresholds)


_TAIL = "aws logs tail {log_group} --since 15m"
CATALOGUE: tuple[AlarmSpec, ...] = (
    AlarmSpec(
        key="ErrorRate",
        applies_to="each function (live alias)",
        title="error rate",
        meaning="invocations of the live alias are failing.",
        likely_cause="an exception in the newly deployed code, or a dependency (database, secret) down.",
        first_command=_TAIL + " --filter-pattern ERROR",
        threshold="> {t.error_rate_percent:g}% of invocations in 5 min",
        threshold_field="error_rate_percent",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        rolls_back=True,
        in_composite=True,
    ),
    AlarmSpec(
        key="InitErrors",
        applies_to="each function (log group)",
        title="init/import errors",
        meaning="the function cannot start: every request on the new code fails before the handler runs.",
        likely_cause="a dependency missing from the bundle (Runtime.ImportModuleError), a wrong handler "
        "name, or a crash at import.",
        first_command=_TAIL + " --filter-pattern '?Runtime ?INIT_REPORT'",
        threshold=">= {t.init_errors:g} init-failure log line(s) in 5 min",
        threshold_field="init_errors",
        comparison=C.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        rolls_back=True,
        in_composite=True,
    ),
    AlarmSpec(
        key="Throttles",
        applies_to="each function",
        title="throttles",
        meaning="Lambda rejected invocations for lack of concurrency.",
        likely_cause="a traffic spike or a queue backlog hitting the account or reserved concurrency limit.",
        first_command="aws lambda get-function-concurrency --function-name {function}",
        threshold=">= {t.throttles:g} throttled invocation(s) in 5 min",
        threshold_field="throttles",
        comparison=C.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing_data=M.NOT_BREACHING,
    ),
    AlarmSpec(
        key="TimeoutRate",
        applies_to="each function (live alias)",
        title="timeout rate",
        meaning="invocations are killed at the function timeout.",
        likely_cause="a slow or unreachable dependency (database, network, third-party API).",
        first_command=_TAIL + " --filter-pattern '\"Task timed out\"'",
        threshold="> {t.timeout_rate_percent:g}% of invocations time out in 5 min",
        threshold_field="timeout_rate_percent",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
    ),
    AlarmSpec(
        key="DurationP99",
        applies_to="each function (live alias)",
        title="p99 duration near timeout",
        meaning="the slowest 1% of invocations are close to being killed by the timeout.",
        likely_cause="a slowing dependency or a growing workload; timeouts usually follow.",
        first_command=_TAIL + " --filter-pattern REPORT",
        threshold="p99 > {t.duration_p99_fraction_of_timeout:.0%} of the function timeout for 15 min",
        threshold_field="duration_p99_fraction_of_timeout",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        evaluation_periods=3,
    ),
    AlarmSpec(
        key="DlqDepth",
        applies_to="each SQS-triggered function's dead-letter queue",
        title="dead letters",
        meaning="messages failed processing three times and were moved to the dead-letter queue.",
        likely_cause="a poison message or a persistent failure of the function the queue feeds.",
        first_command="aws sqs get-queue-attributes --queue-url {queue_url} --attribute-names All",
        threshold="> {t.dlq_depth:g} message(s) visible",
        threshold_field="dlq_depth",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
    ),
    AlarmSpec(
        key="FailedInvocations",
        applies_to="the environment's asynchronously invoked functions (schedules, hooks, checks)",
        title="failed asynchronous invocations",
        meaning="an asynchronously invoked function (a scheduled function, a CodeDeploy hook, the health or "
        "drift check) failed every attempt; Lambda moved the event to the failed-invocations queue.",
        likely_cause="the function crashes or times out on that event; a hook that never reported leaves its "
        "deployment waiting until CodeDeploy's one-hour hook timeout.",
        first_command="aws sqs receive-message --queue-url {queue_url} --attribute-names All "
        "--message-attribute-names All --max-number-of-messages 10 --visibility-timeout 0",
        threshold="> {t.dlq_depth:g} message(s) visible",
        threshold_field="dlq_depth",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
    ),
    AlarmSpec(
        key="DlqOldestAge",
        applies_to="each SQS-triggered function's dead-letter queue",
        title="dead letters unhandled",
        meaning="dead letters have waited too long; SQS deletes them at the end of their retention.",
        likely_cause="nobody redrove or discarded the messages after the dead-letter alarm.",
        first_command="aws sqs get-queue-attributes --queue-url {queue_url} --attribute-names All",
        threshold="oldest message > {t.dlq_oldest_age_seconds:g} s",
        threshold_field="dlq_oldest_age_seconds",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
    ),
    AlarmSpec(
        key="MissedRuns",
        applies_to="each scheduled function (live alias)",
        title="missed scheduled runs",
        meaning="the function was not invoked within its expected window: its scheduled work is not done.",
        likely_cause="the EventBridge rule is disabled or its target lost permission to invoke the alias.",
        first_command=_TAIL.replace("15m", "3h"),
        threshold="< {t.scheduler_min_invocations:g} invocation(s) in twice the schedule period",
        threshold_field="scheduler_min_invocations",
        comparison=C.LESS_THAN_THRESHOLD,
        missing_data=M.BREACHING,
    ),
    AlarmSpec(
        key="Api5xxCount",
        applies_to="API Gateway",
        title="5XX responses",
        meaning="the API is returning server errors (502 = the Lambda integration failed).",
        likely_cause="an API function failing or timing out; see its alarms.",
        first_command="curl -si {health_url}",
        threshold="> {t.api_5xx_count:g} 5XX responses in 5 min",
        threshold_field="api_5xx_count",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        in_composite=True,
    ),
    AlarmSpec(
        key="Api5xxRate",
        applies_to="API Gateway",
        title="5XX rate",
        meaning="a share of API requests return server errors, even at low traffic.",
        likely_cause="an API function failing or timing out; see its alarms.",
        first_command="curl -si {health_url}",
        threshold="> {t.api_5xx_rate_percent:g}% of requests in 5 min",
        threshold_field="api_5xx_rate_percent",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        # Mangum turns an exception in a route (the 'is_imlc' outage) into a 500 *response*: the invocation
        # succeeds and the function's ErrorRate never moves. Only the API sees it, so each API function's
        # canary rolls back on this alarm too (it counts both versions' requests: conservative, never blind).
        rolls_back=True,
        in_composite=True,
    ),
    AlarmSpec(
        key="ApiLatencyP99",
        applies_to="API Gateway",
        title="p99 latency",
        meaning="the slowest 1% of API requests are slow for 15 minutes.",
        likely_cause="cold starts after a deploy, a slow database, or an API function close to its timeout.",
        first_command="curl -si -w '%{{time_total}}s\\n' -o /dev/null {health_url}",
        threshold="p99 > {t.api_latency_p99_ms:g} ms for 15 min",
        threshold_field="api_latency_p99_ms",
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        evaluation_periods=3,
    ),
    AlarmSpec(
        key="HealthCheck",
        applies_to="API /health (checked every 5 min)",
        title="/health check failing",
        meaning="GET /health did not return 200 after two attempts: users cannot use the API.",
        likely_cause="the API function behind /health cannot start (import error) or reach the database.",
        first_command="curl -si {health_url}",
        threshold=">= {t.health_check_failures:g} failed check(s) in 5 min",
        threshold_field="health_check_failures",
        comparison=C.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        in_composite=True,
    ),
    AlarmSpec(
        key="WafBlockedRequests",
        applies_to="the API's web ACL (security.waf.enabled)",
        title="web ACL blocking many requests",
        meaning="the API's web ACL blocked many requests in 5 minutes.",
        likely_cause="password guessing on the login route (the rate rule), a scanner (the managed rules), "
        "or a managed rule refusing real clients (e.g. bodies over 8 KB).",
        first_command="aws wafv2 get-sampled-requests --scope REGIONAL --web-acl-arn {web_acl_arn} "
        "--rule-metric-name ALL --max-items 100 --time-window StartTime=$(date -u -d '-15 min' +%s),"
        "EndTime=$(date -u +%s)",
        threshold=">= {t.waf_blocked_requests:g} blocked requests in 5 min",
        threshold_field="waf_blocked_requests",
        comparison=C.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        missing_data=M.NOT_BREACHING,
    ),
    AlarmSpec(
        key="ServiceUnhealthy",
        applies_to="the environment",
        title="service unhealthy",
        meaning="at least one key alarm (function error rate or init errors, API 5XX, /health) is in ALARM.",
        likely_cause="see the child alarm in ALARM; most often a bad deploy or a dependency outage.",
        first_command="aws cloudwatch describe-alarms --state-value ALARM --query 'MetricAlarms[].AlarmName'",
        threshold="any key alarm in ALARM",
        threshold_field=None,
        comparison=C.GREATER_THAN_THRESHOLD,
        missing_data=M.NOT_BREACHING,
        audience="page",
    ),
)
SPECS: Mapping[str, AlarmSpec] = {s.key: s for s in CATALOGUE}
FUNCTION_KEYS = ("ErrorRate", "InitErrors", "Throttles", "TimeoutRate", "DurationP99")
DLQ_KEYS = ("DlqDepth", "DlqOldestAge")
SCHEDULER_KEYS = ("MissedRuns",)
API_KEYS = ("Api5xxCount", "Api5xxRate", "ApiLatencyP99", "HealthCheck")
AUDIENCE_TEXT: Mapping[Audience, str] = {
    "notify": "on-call topic: email, Slack (ALARM and OK)",
    "page": "paging topic: pager, email, Slack (ALARM and OK)",
}


def describe(
    spec: AlarmSpec, *, subject: str, thresholds: AlarmThresholds, runbook_url: str, names: Mapping[str, str]
) -> str:
    """The alarm description a person reads in email/Slack: severity, what broke, cause, first command."""
    try:
        command = spec.first_command.format(**names)
    except KeyError as err:  # a catalogue edit that names a resource this construct does not have
        raise ValueError(
            f"alarm catalogue entry {spec.key}: first_command needs {err}, which this construct lacks"
        ) from err
    return (
        f"[{spec.audience}] {subject} {spec.title} ({spec.threshold_text(thresholds)}). "
        f"What broke: {spec.meaning} Likely cause: {spec.likely_cause} "
        f"First: {command} Runbook: {runbook_url}#{spec.key.lower()}"
    )


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
        # A customer-managed policy rather than the role's inline default policy (HIPAA IAMNoInlinePolicy).
        policy = iam.ManagedPolicy(
            self,
            "HealthCheckPolicy",
            description="Lets the CredentialMate health check write its own log group",
            statements=[
                iam.PolicyStatement(
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
                )
            ],
            roles=[role],
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
