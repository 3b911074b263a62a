"""One dashboard per environment: the metrics the alarms watch, and which version each alias runs.

Deployments are visible two ways: a text widget naming the version each `live` alias was last deployed to
(resolved by CloudFormation, so it changes with every deploy), and per-function graphs of invocations by
Lambda's ExecutedVersion dimension, where a canary shows as the new version's line rising while the old one
falls (and a rollback as the reverse). No dashboard name: CloudFormation generates one per stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import AlarmThresholds
from stacks.constructs.alarms import PERIOD, SPECS, log_metric, timeout_rank_statistic

WIDTH = 24  # dashboard grid width


class DashboardFunction(Protocol):
    """What the dashboard needs of a function (GuardedFunction satisfies it)."""

    @property
    def label(self) -> str: ...
    @property
    def function(self) -> lambda_.IFunction: ...
    @property
    def alias(self) -> lambda_.Alias: ...
    @property
    def timeout(self) -> Duration: ...


def versions_by_alias_search(function_name: str, metric_name: str = "Invocations") -> str:
    """A CloudWatch SEARCH for a function's alias metrics split by the version that ran them."""
    return (
        "SEARCH('{AWS/Lambda,ExecutedVersion,FunctionName,Resource} "
        f'MetricName="{metric_name}" FunctionName="{function_name}"\', \'Sum\', {int(PERIOD.to_seconds())})'
    )


class ServiceDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Sequence[DashboardFunction],
        api: apigw.RestApi | None,
        queues: Sequence[tuple[str, sqs.IQueue, sqs.IQueue]] = (),
        alarms: Sequence[cloudwatch.IAlarm] = (),
        thresholds: AlarmThresholds | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if not functions:
            raise ValueError(f"ServiceDashboard {self.node.path}: needs at least one function")
        t = thresholds or AlarmThresholds()
        versions = "\n".join(f"| {f.label} | `live` → version {f.alias.version.version} |" for f in functions)
        rows: list[list[cloudwatch.IWidget]] = [
            [
                cloudwatch.TextWidget(
                    markdown=(
                        "# CredentialMate backend\n"
                        "| Function | Last deployed |\n|---|---|\n"
                        f"{versions}\n\n"
                        "During a canary, CodeDeploy shifts `live` between versions: see *by version* below."
                    ),
                    width=WIDTH // 2 if alarms else WIDTH,
                    height=6,
                ),
                *(
                    [
                        cloudwatch.AlarmStatusWidget(
                            alarms=list(alarms), title="Alarms", width=WIDTH // 2, height=6
                        )
                    ]
                    if alarms
                    else []
                ),
            ]
        ]
        for f in functions:
            rows.append(self._function_row(f, t))
        if api is not None:
            rows.append(self._api_row(api, t))
        for name, queue, dlq in queues:
            rows.append(self._queue_row(name, queue, dlq, t))
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", default_interval=Duration.hours(6), widgets=[list(r) for r in rows]
        )

    @staticmethod
    def _function_row(f: DashboardFunction, t: AlarmThresholds) -> list[cloudwatch.IWidget]:
        alias, fn, width = f.alias, f.function, WIDTH // 4
        errors = alias.metric_errors(period=PERIOD, statistic="Sum")
        invocations = alias.metric_invocations(period=PERIOD, statistic="Sum")
        error_rate = cloudwatch.MathExpression(
            expression="100 * errors / invocations",
            using_metrics={"errors": errors, "invocations": invocations},
            period=PERIOD,
            label="error rate (%)",
        )
        timeout_ms = f.timeout.to_milliseconds()
        return [
            cloudwatch.GraphWidget(
                title=f"{f.label}: live invocations, errors, error rate",
                left=[invocations, errors],
                right=[error_rate],
                right_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=t.error_rate_percent, label=SPECS["ErrorRate"].title
                    )
                ],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title=f"{f.label}: invocations by version",
                left=[
                    cloudwatch.MathExpression(
                        expression=versions_by_alias_search(fn.function_name), period=PERIOD, label=""
                    )
                ],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title=f"{f.label}: duration and throttles",
                left=[
                    alias.metric_duration(period=PERIOD, statistic="p50"),
                    alias.metric_duration(period=PERIOD, statistic="p99"),
                ],
                right=[fn.metric_throttles(period=PERIOD, statistic="Sum")],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=timeout_ms, label="timeout"),
                    cloudwatch.HorizontalAnnotation(
                        value=t.duration_p99_fraction_of_timeout * timeout_ms,
                        label=SPECS["DurationP99"].title,
                    ),
                ],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title=f"{f.label}: init errors (log lines) and timeout rate (%)",
                left=[log_metric(f.alias, f.label, "InitErrors")],
                right=[
                    alias.metric_duration(
                        period=PERIOD, statistic=timeout_rank_statistic(f.timeout), label="timeout rate (%)"
                    )
                ],
                width=width,
            ),
        ]

    @staticmethod
    def _api_row(api: apigw.RestApi, t: AlarmThresholds) -> list[cloudwatch.IWidget]:
        width = WIDTH // 2
        return [
            # One graph per question (requests and errors, latency): alike in shape by design.
            cloudwatch.GraphWidget(
                title="API: requests and errors",
                left=[
                    api.metric_count(period=PERIOD, statistic="Sum"),
                    api.metric_client_error(period=PERIOD, statistic="Sum"),
                    api.metric_server_error(period=PERIOD, statistic="Sum"),
                ],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=t.api_5xx_count, label="5XX alarm")],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title="API: latency",
                left=[
                    api.metric_latency(period=PERIOD, statistic="p50"),
                    api.metric_latency(period=PERIOD, statistic="p99"),
                    api.metric_integration_latency(period=PERIOD, statistic="p99"),
                ],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(value=t.api_latency_p99_ms, label="p99 latency alarm")
                ],
                width=width,
            ),
        ]

    @staticmethod
    def _queue_row(
        name: str, queue: sqs.IQueue, dlq: sqs.IQueue, t: AlarmThresholds
    ) -> list[cloudwatch.IWidget]:
        width = WIDTH // 2
        return [
            cloudwatch.GraphWidget(
                title=f"{name} queue: backlog and age",
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
                ],
                right=[queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title=f"{name} dead-letter queue",
                left=[dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")],
                right=[dlq.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")],
                right_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=t.dlq_oldest_age_seconds, label=SPECS["DlqOldestAge"].title
                    )
                ],
                width=width,
            ),
        ]
