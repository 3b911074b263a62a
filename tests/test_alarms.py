# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""On-call topics, alarms, composite alarm and dashboard, proven on synthesized templates.

A small test stack (tests/alarm_stack.py: three dummy functions with `live` aliases and log groups, a queue
with its DLQ, a REST API) gets the constructs the real stack uses. Synths are shared per module: one with
cdk-nag, one per environment's thresholds from cdk.json, and one per single-threshold change. What needs no
synthesized stack is in tests/test_alarm_catalogue.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.config import AlarmSettings, AlarmThresholds
from stacks.constructs.alarms import (
    API_KEYS,
    CATALOGUE,
    DLQ_KEYS,
    FUNCTION_KEYS,
    LOG_PATTERNS,
    SCHEDULER_KEYS,
    SPECS,
)
from stacks.constructs.oncall import PUBLISHING_SERVICES, OnCallTopic

REPO_ROOT = Path(__file__).resolve().parents[1]

from scripts.alarm_table.table import thresholds_from_cdk_json  # noqa: E402
from tests.alarm_stack import EMAILS, LABELS, PAGING_URL, RUNBOOK, STACK_NAME, Synth  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return Synth(tmp_path_factory.mktemp("alarms-cdk-out"), AlarmThresholds(), nag=True)


# ---------------------------------------------------------------------------------------------------------
# Helpers that read an alarm's metric back out of the template


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def live(fn_id: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [ref(fn_id), ":live"]]}


def metric_stat(
    namespace: str, name: str, dims: dict[str, Any] | None, stat: str, period: int
) -> dict[str, Any]:
    metric: dict[str, Any] = {"Namespace": namespace, "MetricName": name}
    if dims:
        metric["Dimensions"] = [{"Name": k, "Value": v} for k, v in dims.items()]
    return {"Metric": metric, "Period": period, "Stat": stat}


def metrics_of(alarm: dict[str, Any]) -> dict[str, Any]:
    """{"expression": str | None, "stats": {id: MetricStat}} for single-metric and metric-math alarms."""
    if "Metrics" not in alarm:
        metric = {"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"]}
        if alarm.get("Dimensions"):
            metric["Dimensions"] = alarm["Dimensions"]
        stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic")
        return {
            "expression": None,
            "stats": {"m": {"Metric": metric, "Period": alarm["Period"], "Stat": stat}},
        }
    expressions = [m for m in alarm["Metrics"] if "Expression" in m]
    if not expressions:  # one labelled metric
        (single,) = alarm["Metrics"]
        assert single["ReturnData"] is True
        single["MetricStat"]["Metric"].pop("Label", None)
        return {"expression": None, "stats": {"m": single["MetricStat"]}}
    (expression,) = expressions
    assert expression["ReturnData"] is True
    stats = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert all(m.get("ReturnData") is False for m in alarm["Metrics"] if "MetricStat" in m)
    for stat in stats.values():
        stat["Metric"].pop("Label", None)
    return {"expression": expression["Expression"], "stats": stats}


NS = f"CredentialMate/{STACK_NAME}"


def expected(s: Synth, owner: str, key: str) -> dict[str, Any]:
    """What each alarm must watch: metric(s), statistic, period, threshold, evaluation, missing data."""
    t = s.thresholds
    if owner != "API":
        fn_id = s.id_of(s.fns[owner].function)
        alias_dims = {"FunctionName": ref(fn_id), "Resource": live(fn_id)}
        fn_dims = {"FunctionName": ref(fn_id)}
    dlq_dims = {"QueueName": {"Fn::GetAtt": [s.id_of(s.dlq), "QueueName"]}}
    api_dims = {"ApiName": "Api"}
    table: dict[str, tuple[Any, ...]] = {
        # key: (expression, {id: (namespace, name, dims, stat, period)}, threshold, comparison,
        #       evaluation periods, missing data)
        "ErrorRate": ("100 * errors / invocations",
                      {"errors": ("AWS/Lambda", "Errors", "alias", "Sum", 300),
                       "invocations": ("AWS/Lambda", "Invocations", "alias", "Sum", 300)},
                      t.error_rate_percent, "GreaterThanThreshold", 1, "notBreaching"),
        "InitErrors": (None, {"m": (NS, f"{owner}InitErrors", None, "Sum", 300)},
                       t.init_errors, "GreaterThanOrEqualToThreshold", 1, "notBreaching"),
        "Throttles": (None, {"m": ("AWS/Lambda", "Throttles", "fn", "Sum", 300)},
                      t.throttles, "GreaterThanOrEqualToThreshold", 1, "notBreaching"),
        # The share of invocations whose Duration reached the 60 s timeout: no log-line metric needed.
        "TimeoutRate": (None, {"m": ("AWS/Lambda", "Duration", "alias", "PR(59940:)", 300)},
                        t.timeout_rate_percent, "GreaterThanThreshold", 1, "notBreaching"),
        "DurationP99": (None, {"m": ("AWS/Lambda", "Duration", "alias", "p99", 300)},
                        t.duration_p99_fraction_of_timeout * 60_000, "GreaterThanThreshold", 3,
                        "notBreaching"),
        "DlqDepth": (None, {"m": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "dlq", "Maximum", 300)},
                     t.dlq_depth, "GreaterThanThreshold", 1, "notBreaching"),
        "DlqOldestAge": (None, {"m": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "dlq", "Maximum", 300)},
                         t.dlq_oldest_age_seconds, "GreaterThanThreshold", 1, "notBreaching"),
        "MissedRuns": (None, {"m": ("AWS/Lambda", "Invocations", "alias", "Sum", 7200)},
                       t.scheduler_min_invocations, "LessThanThreshold", 1, "breaching"),
        "Api5xxCount": (None, {"m": ("AWS/ApiGateway", "5XXError", "api", "Sum", 300)},
                        t.api_5xx_count, "GreaterThanThreshold", 1, "notBreaching"),
        "Api5xxRate": ("100 * errors / requests",
                       {"errors": ("AWS/ApiGateway", "5XXError", "api", "Sum", 300),
                        "requests": ("AWS/ApiGateway", "Count", "api", "Sum", 300)},
                       t.api_5xx_rate_percent, "GreaterThanThreshold", 1, "notBreaching"),
        "ApiLatencyP99": (None, {"m": ("AWS/ApiGateway", "Latency", "api", "p99", 300)},
                          t.api_latency_p99_ms, "GreaterThanThreshold", 3, "notBreaching"),
        "HealthCheck": (None, {"m": ("AWS/Lambda", "Errors", "health", "Sum", 300)},
                        t.health_check_failures, "GreaterThanOrEqualToThreshold", 1, "notBreaching"),
    }  # fmt: skip
    expression, stats, threshold, comparison, periods, missing = table[key]
    dims = {"alias": alias_dims if owner != "API" else None, "fn": fn_dims if owner != "API" else None,
            "dlq": dlq_dims, "api": api_dims, None: None,
            "health": {"FunctionName": ref(s.id_of(s.api_alarms.health_check))}}  # fmt: skip
    return {
        "metrics": {
            "expression": expression,
            "stats": {
                i: metric_stat(ns, name, dims[d], stat, p) for i, (ns, name, d, stat, p) in stats.items()
            },
        },
        "Threshold": threshold,
        "ComparisonOperator": comparison,
        "EvaluationPeriods": periods,
        "DatapointsToAlarm": periods,
        "TreatMissingData": missing,
    }


ALARMS = [
    *((label, key) for label in LABELS for key in FUNCTION_KEYS),
    *(("Worker", key) for key in DLQ_KEYS),
    *(("CampaignScheduler", key) for key in SCHEDULER_KEYS),
    *(("API", key) for key in API_KEYS),
]


# ---------------------------------------------------------------------------------------------------------
# Alarms: metric, threshold, period, evaluation, comparison, missing data, actions


@pytest.mark.parametrize(("owner", "key"), ALARMS, ids=[f"{o}-{k}" for o, k in ALARMS])
def test_alarm_watches_the_right_metric_with_the_configured_threshold(synth, owner, key):
    alarm = synth.alarm(owner, key)
    want = expected(synth, owner, key)
    assert metrics_of(alarm) == want.pop("metrics")
    assert {k: alarm[k] for k in want} == want


@pytest.mark.parametrize(("owner", "key"), ALARMS, ids=[f"{o}-{k}" for o, k in ALARMS])
def test_alarm_and_ok_go_to_the_notify_topic_and_description_is_actionable(synth, owner, key):
    alarm = synth.alarm(owner, key)
    topic = [ref(synth.id_of(synth.oncall.topic))]
    assert alarm["AlarmActions"] == topic
    assert alarm["OKActions"] == topic
    assert "InsufficientDataActions" not in alarm
    assert "AlarmName" not in alarm  # no physical names
    text = json.dumps(alarm["AlarmDescription"])
    for part in ("[notify]", "What broke:", "Likely cause:", "First: ", f"Runbook: {RUNBOOK}#{key.lower()}"):
        assert part in text, part
    if SPECS[key].first_command.startswith("aws logs tail"):
        assert ref(synth.id_of(synth.fns[owner].log_group)) in alarm["AlarmDescription"]["Fn::Join"][1]


def test_descriptions_fit_cloudwatchs_limit_once_names_are_filled_in(synth):
    alarms = [
        *synth.of_type("AWS::CloudWatch::Alarm").values(),
        *synth.of_type("AWS::CloudWatch::CompositeAlarm").values(),
    ]
    for alarm in alarms:
        description = alarm["Properties"]["AlarmDescription"]
        parts = description["Fn::Join"][1] if isinstance(description, dict) else [description]
        # A resolved token (log group name, queue URL, API URL) is well under 150 characters.
        length = sum(len(p) if isinstance(p, str) else 150 for p in parts)
        assert length <= 1024, (length, parts[0][:60])


def test_every_alarm_in_the_template_comes_from_the_catalogue(synth):
    built = {synth.id_of(a) for fa in synth.function_alarms.values() for a in fa.alarms}
    built |= {synth.id_of(a) for a in synth.api_alarms.alarms}
    built.add(synth.id_of(synth.failures.alarm))
    assert set(synth.of_type("AWS::CloudWatch::Alarm")) == built
    assert len(built) - 1 == len(ALARMS) == 3 * len(FUNCTION_KEYS) + 2 + 1 + 4
    # Built elsewhere: ServiceHealthAlarm, ApiFirewall, AsyncFailures (test_security.py).
    others = {"ServiceUnhealthy", "WafBlockedRequests", "FailedInvocations"}
    assert {k for _, k in ALARMS} | others == {s.key for s in CATALOGUE}


def test_metric_filters_carry_exactly_the_tested_patterns(synth):
    for label in LABELS:
        log_group = ref(synth.id_of(synth.fns[label].log_group))
        for kind, patterns in LOG_PATTERNS.items():
            filters = [
                f["Properties"]
                for f in synth.of_type("AWS::Logs::MetricFilter").values()
                if f["Properties"]["MetricTransformations"][0]["MetricName"] == f"{label}{kind}"
            ]
            assert sorted(f["FilterPattern"] for f in filters) == sorted(patterns)
            for f in filters:
                assert f["LogGroupName"] == log_group
                assert f["MetricTransformations"] == [
                    {
                        "MetricName": f"{label}{kind}",
                        "MetricNamespace": NS,
                        "MetricValue": "1",
                        "DefaultValue": 0,
                    }
                ]


def test_deployment_alarms_are_error_rate_and_init_errors(synth):
    for label, fa in synth.function_alarms.items():
        assert [synth.id_of(a) for a in fa.deployment_alarms] == [
            synth.id_of(fa.alarms_by_key["ErrorRate"]),
            synth.id_of(fa.alarms_by_key["InitErrors"]),
        ], label


def test_composite_pages_on_any_key_alarm(synth):
    composite = synth.props(synth.service.alarm)
    paging = [ref(synth.id_of(synth.oncall.paging_topic))]
    assert composite["AlarmActions"] == paging
    assert composite["OKActions"] == paging
    assert "AlarmName" not in composite
    rule = composite["AlarmRule"]["Fn::Join"][1]
    children = [part["Fn::GetAtt"][0] for part in rule if isinstance(part, dict)]
    keys = [(label, k) for label in LABELS for k in ("ErrorRate", "InitErrors")]
    keys += [("API", k) for k in ("Api5xxCount", "Api5xxRate", "HealthCheck")]
    assert sorted(children) == sorted(
        synth.id_of((synth.api_alarms if o == "API" else synth.function_alarms[o]).alarms_by_key[k])
        for o, k in keys
    )
    assert all(p == '") OR ALARM("' for p in rule[1:-1] if isinstance(p, str))
    assert composite["AlarmDescription"].startswith("[page] ")


def test_health_check_runs_every_five_minutes_against_the_api_url(synth):
    fn = synth.props(synth.api_alarms.health_check)
    assert fn["Environment"]["Variables"]["HEALTH_URL"]["Fn::Join"][1][-1].endswith("/health")
    assert fn["ReservedConcurrentExecutions"] == 1
    rules = [r["Properties"] for r in synth.of_type("AWS::Events::Rule").values()]
    (rule,) = [
        r
        for r in rules
        if r["Targets"][0]["Arn"] == {"Fn::GetAtt": [synth.id_of(synth.api_alarms.health_check), "Arn"]}
    ]
    assert rule["ScheduleExpression"] == "rate(5 minutes)"
    assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 0


# ---------------------------------------------------------------------------------------------------------
# Thresholds from configuration: each environment, and one change at a time


@pytest.fixture(scope="module")
def env_synths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synth]:
    thresholds = thresholds_from_cdk_json(REPO_ROOT / "cdk.json")
    assert set(thresholds) == {"staging", "prod"}
    return {env: Synth(tmp_path_factory.mktemp(f"alarms-{env}"), t) for env, t in thresholds.items()}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_each_environments_thresholds_reach_its_alarms(env_synths, env):
    s = env_synths[env]
    for owner, key in ALARMS:
        want = expected(s, owner, key)
        assert s.alarm(owner, key)["Threshold"] == want["Threshold"], (env, owner, key)


def changed_resources(a: Synth, b: Synth) -> dict[str, set[str]]:
    assert a.resources.keys() == b.resources.keys()
    out = {}
    for rid, resource in a.resources.items():
        other = b.resources[rid]
        if resource != other:
            keys = set(resource["Properties"]) | set(other["Properties"])
            out[rid] = {k for k in keys if resource["Properties"].get(k) != other["Properties"].get(k)}
    return out


@pytest.mark.parametrize(
    ("field", "value", "owners", "dashboard_changes"),
    [
        ("api_5xx_count", 25.0, [("API", "Api5xxCount")], True),
        ("init_errors", 3.0, [(label, "InitErrors") for label in LABELS], False),
    ],
)
def test_changing_one_threshold_changes_only_that_alarm(
    synth, tmp_path_factory, field, value, owners, dashboard_changes
):
    changed = Synth(
        tmp_path_factory.mktemp(f"alarms-{field}"), dataclasses.replace(AlarmThresholds(), **{field: value})
    )
    diff = changed_resources(synth, changed)
    expected_ids = {synth.id_of(synth.alarm_construct(o, k)) for o, k in owners}
    if dashboard_changes:  # the threshold line drawn on the graph
        expected_ids.add(synth.id_of(synth.dashboard.dashboard))
    assert set(diff) == expected_ids
    for o, k in owners:
        rid = synth.id_of(synth.alarm_construct(o, k))
        assert diff[rid] == {"Threshold", "AlarmDescription"}
        assert changed.alarm(o, k)["Threshold"] == value


# ---------------------------------------------------------------------------------------------------------
# On-call topics


def test_topics_are_encrypted_with_a_rotating_customer_managed_key(synth):
    key_id = synth.id_of(synth.oncall.key)
    key = synth.resources[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    by_sid = {s.get("Sid"): s for s in key["KeyPolicy"]["Statement"]}
    cloudwatch = by_sid["AllowCloudWatchAlarmsOfThisAccountToUseKey"]
    others = by_sid["AllowAlarmPublishersToUseKey"]
    services = [cloudwatch["Principal"]["Service"], *others["Principal"]["Service"]]
    assert sorted(services) == sorted(PUBLISHING_SERVICES)
    assert set(PUBLISHING_SERVICES) == {
        "cloudwatch.amazonaws.com",
        "codedeploy.amazonaws.com",
        "events.amazonaws.com",
    }
    topics_of_this_account = {
        "kms:EncryptionContext:aws:sns:topicArn": {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":sns:",
                    {"Ref": "AWS::Region"},
                    ":",
                    {"Ref": "AWS::AccountId"},
                    ":*",
                ],
            ]
        }
    }
    for statement in (cloudwatch, others):
        assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
        # The services may use the key only for SNS topics of this account and region (SNS's context).
        for name, value in topics_of_this_account.items():
            assert statement["Condition"]["ArnLike"][name] == value
    # CloudWatch, which documents them, also only for this account's alarms (aws:SourceAccount/SourceArn).
    assert cloudwatch["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(cloudwatch["Condition"]["ArnLike"]["aws:SourceArn"])
    assert "StringEquals" not in others["Condition"]
    for topic in (synth.oncall.topic, synth.oncall.paging_topic):
        assert synth.props(topic)["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_topics_enforce_ssl_and_let_only_this_accounts_services_publish(synth):
    policies = synth.of_type("AWS::SNS::TopicPolicy").values()
    by_topic = {
        p["Properties"]["Topics"][0]["Ref"]: p["Properties"]["PolicyDocument"]["Statement"] for p in policies
    }
    for topic in (synth.oncall.topic, synth.oncall.paging_topic):
        statements = by_topic[synth.id_of(topic)]
        deny = [s for s in statements if s["Effect"] == "Deny"]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        (allow,) = [s for s in statements if s.get("Sid") == "AllowAlarmPublishers"]
        assert allow["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        assert sorted(allow["Principal"]["Service"]) == sorted(PUBLISHING_SERVICES)


def subscriptions(s: Synth) -> set[tuple[str, str, str]]:
    topics = {s.id_of(s.oncall.topic): "notify", s.id_of(s.oncall.paging_topic): "page"}
    return {
        (topics[p["Properties"]["TopicArn"]["Ref"]], p["Properties"]["Protocol"], p["Properties"]["Endpoint"])
        for p in s.of_type("AWS::SNS::Subscription").values()
    }


def test_subscriptions_email_both_topics_and_page_only_from_the_paging_topic(synth):
    assert subscriptions(synth) == {
        *(("notify", "email", e) for e in EMAILS),
        *(("page", "email", e) for e in EMAILS),
        ("page", "https", PAGING_URL),
    }


def test_slack_channel_receives_both_topics_with_a_read_only_guardrail(synth):
    (slack,) = [r["Properties"] for r in synth.of_type("AWS::Chatbot::SlackChannelConfiguration").values()]
    assert slack["SlackWorkspaceId"] == "T0123ABCD"
    assert slack["SlackChannelId"] == "C0123ABCD"
    assert slack["SnsTopicArns"] == [
        ref(synth.id_of(synth.oncall.topic)),
        ref(synth.id_of(synth.oncall.paging_topic)),
    ]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", slack["ConfigurationName"])
    assert slack["ConfigurationName"].startswith(
        STACK_NAME.replace("-", "")
    )  # unique per stack, deterministic
    assert "CloudWatchReadOnlyAccess" in json.dumps(slack["GuardrailPolicies"])


def test_without_slack_or_pager_only_emails_are_created(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Minimal")
    OnCallTopic(stack, "OnCall", config=AlarmSettings(emails=EMAILS[:1]))
    template = app.synth().get_stack_by_name("Minimal").template
    types = [r["Type"] for r in template["Resources"].values()]
    assert "AWS::Chatbot::SlackChannelConfiguration" not in types
    protocols = [
        r["Properties"]["Protocol"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SNS::Subscription"
    ]
    assert protocols == ["email", "email"]


# ---------------------------------------------------------------------------------------------------------
# Dashboard


def test_dashboard_shows_alias_versions_and_per_version_invocations(synth):
    dashboard = synth.props(synth.dashboard.dashboard)
    assert "DashboardName" not in dashboard
    body = json.dumps(dashboard["DashboardBody"])
    for label in LABELS:
        assert f"| {label} | `live` \\u2192 version " in body or f"| {label} | `live` → version " in body
        assert f"{label}: invocations by version" in body
        version_id = synth.id_of(synth.fns[label].function.current_version)
        assert json.dumps({"Fn::GetAtt": [version_id, "Version"]}) in body
    assert "{AWS/Lambda,ExecutedVersion,FunctionName,Resource}" in body
    assert json.dumps({"Fn::GetAtt": [synth.id_of(synth.service.alarm), "Arn"]}) in body  # alarm status


# ---------------------------------------------------------------------------------------------------------
# Compliance


def test_synthesized_template_has_no_cfn_lint_errors(synth):
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "cfn-lint"),
            "--format",
            "json",
            str(synth.outdir / "AlarmTest.template.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [m for m in json.loads(done.stdout or "[]") if m["Level"] == "Error"]
    assert errors == [], errors


def findings_under(report: dict[str, Any], prefixes: tuple[str, ...]) -> list[str]:
    return [
        f"{v['ruleName']} at {c['constructPath']}"
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
        if c["constructPath"].startswith(prefixes)
    ]


def test_constructs_pass_cdk_nag_aws_solutions_and_hipaa(synth):
    mine = tuple(f"AlarmTest/{c}/" for c in ("OnCall", *(f"{x}Alarms" for x in LABELS), "ApiAlarms",
                                             "ServiceHealth", "Dashboard"))  # fmt: skip
    assert findings_under(synth.report, mine) == []
    plugins = {p["pluginName"] for p in synth.report["pluginReports"]}
    assert plugins == {"AwsSolutions", "HIPAA.Security"}
    assert findings_under(synth.report, ("AlarmTest/BackendApi/",)), "the scaffolding should have findings"
