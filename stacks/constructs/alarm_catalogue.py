"""The alarm catalogue: one entry (`AlarmSpec`) per alarm, saying what it means, its likely cause, the
first command to run, its threshold wording, comparison, evaluation and who is told.

The constructs in alarms.py (and the web ACL's alarm in waf.py) build alarms only through it, and
scripts/alarm_table/ prints docs/alarms.md from it, so the two cannot diverge. Each description links
its section of the runbook (RUNBOOK_URL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

from stacks.config import AlarmThresholds

RUNBOOK_URL = "https://github.com/credentialmate/credmate-lambda/blob/main/docs/runbook.md"
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
# Entries are alike in shape by design: each is one alarm's data in the same fields.
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
