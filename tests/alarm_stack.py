# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The small test stack the alarm tests synthesize: three dummy functions with `live` aliases and log groups,
a queue with its DLQ and a REST API, with the on-call topics, alarms, composite alarm and dashboard the real
stack uses (Synth), and what the tests read back of it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from stacks.config import AlarmSettings, AlarmThresholds
from stacks.constructs.alarms import (
    ApiAlarms,
    AsyncFailures,
    FunctionAlarms,
    ServiceHealthAlarm,
)
from stacks.constructs.dashboard import ServiceDashboard
from stacks.constructs.oncall import OnCallTopic

STACK_NAME = "credmate-alarm-test"
LABELS = ("BackendApi", "Worker", "CampaignScheduler")
TIMEOUT = cdk.Duration.seconds(60)
WINDOW = cdk.Duration.hours(2)
RUNBOOK = "https://example.com/runbook.md"
EMAILS = ("oncall@example.com", "lead@example.com")
PAGING_URL = "https://events.pagerduty.com/integration/abc123/enqueue"
FULL_ONCALL = AlarmSettings(
    emails=EMAILS, slack_workspace_id="T0123ABCD", slack_channel_id="C0123ABCD", paging_url=PAGING_URL
)


@dataclasses.dataclass
class Fn:
    """Stands in for GuardedFunction (what FunctionAlarms and ServiceDashboard read of it)."""

    label: str
    function: lambda_.Function
    alias: lambda_.Alias
    log_group: logs.LogGroup
    timeout: cdk.Duration


class Synth:
    def __init__(self, outdir: Path, thresholds: AlarmThresholds, *, nag: bool = False) -> None:
        app = cdk.App(outdir=str(outdir))
        self.stack = stack = cdk.Stack(app, "AlarmTest", stack_name=STACK_NAME)
        self.thresholds = thresholds
        self.outdir = outdir
        self.oncall = OnCallTopic(stack, "OnCall", config=FULL_ONCALL)
        self.dlq = sqs.Queue(stack, "Dlq", enforce_ssl=True)
        self.queue = sqs.Queue(
            stack,
            "Queue",
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=3),
        )
        self.fns: dict[str, Fn] = {}
        for label in LABELS:
            log_group = logs.LogGroup(stack, f"{label}Logs")
            fn = lambda_.Function(
                stack,
                label,
                code=lambda_.Code.from_inline("def h(event, context):\n    return 1\n"),
                handler="index.h",
                runtime=lambda_.Runtime.PYTHON_3_11,
                timeout=TIMEOUT,
                log_group=log_group,
            )
            alias = lambda_.Alias(stack, f"{label}Live", alias_name="live", version=fn.current_version)
            self.fns[label] = Fn(label, fn, alias, log_group, TIMEOUT)
        self.function_alarms = {
            f.label: FunctionAlarms(
                stack,
                f"{f.label}Alarms",
                label=f.label,
                function=f.function,
                alias=f.alias,
                log_group=f.log_group,
                timeout=f.timeout,
                thresholds=thresholds,
                topic=self.oncall.topic,
                runbook_url=RUNBOOK,
                dlq=self.dlq if f.label == "Worker" else None,
                expected_invocation_window=WINDOW if f.label == "CampaignScheduler" else None,
            )
            for f in self.fns.values()
        }
        self.api = apigw.LambdaRestApi(stack, "Api", handler=self.fns["BackendApi"].alias)
        self.api_alarms = ApiAlarms(
            stack,
            "ApiAlarms",
            api=self.api,
            health_url=f"{self.api.url}health",
            thresholds=thresholds,
            topic=self.oncall.topic,
            runbook_url=RUNBOOK,
        )
        key_alarms = [a for fa in self.function_alarms.values() for a in fa.deployment_alarms]
        self.service = ServiceHealthAlarm(
            stack,
            "ServiceHealth",
            alarms=[*key_alarms, *self.api_alarms.key_alarms],
            topic=self.oncall.paging_topic,
            runbook_url=RUNBOOK,
        )
        self.dashboard = ServiceDashboard(
            stack,
            "Dashboard",
            functions=list(self.fns.values()),
            api=self.api,
            queues=[("Worker", self.queue, self.dlq)],
            alarms=[self.service.alarm],
            thresholds=thresholds,
        )
        self.report: dict[str, Any] = {"pluginReports": []}
        # As BackendStack does: the environment key and scoped logging on everything, and the scheduled
        # health check's acknowledgements (stacks/compliance.py).
        from stacks.compliance import acknowledge_scheduled_checks
        from stacks.constructs.encryption import EnvironmentKey, apply_stack_security

        key = EnvironmentKey(stack, "DataKey", description="test environment key")
        self.failures = failures = AsyncFailures(
            stack,
            "AsyncFailures",
            queue_kwargs=key.queue_kwargs(),
            key_arn=key.key.key_arn,
            thresholds=thresholds,
            topic=self.oncall.topic,
            runbook_url=RUNBOOK,
        )
        failures.attach(self.api_alarms.health_check)
        apply_stack_security(stack, key)
        acknowledge_scheduled_checks([self.api_alarms.health_check], in_vpc=False)
        if nag:
            cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
        try:
            app.synth()
        except RuntimeError as err:  # nag findings on the scaffolding fail validation; files are written
            assert nag and "ValidationFailed" in str(err), err
        self.template: dict[str, Any] = json.loads((outdir / "AlarmTest.template.json").read_text())
        report = outdir / "validation-report.json"
        if report.exists():
            self.report = json.loads(report.read_text())

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def id_of(self, construct: Any) -> str:
        return self.stack.resolve(construct.node.default_child.logical_id)  # honours logical-ID overrides

    def props(self, construct: Any) -> dict[str, Any]:
        return self.resources[self.id_of(construct)]["Properties"]

    def of_type(self, type_: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def alarm_construct(self, owner: str, key: str) -> Any:
        group = self.api_alarms if owner == "API" else self.function_alarms[owner]
        return group.alarms_by_key[key]

    def alarm(self, owner: str, key: str) -> dict[str, Any]:
        return self.props(self.alarm_construct(owner, key))
