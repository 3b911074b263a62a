# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""Guardrail constructs (stacks/constructs/guardrails.py) on a small synthesized stack, and the out-of-band
rule's event pattern evaluated against sample CloudTrail events with EventBridge's matching semantics.

EventBridge cannot be called here (no AWS account), so `eb_matches` (tests/test_eventbridge_matcher.py, where
it is unit-tested on its own against the documented semantics) implements the subset of its pattern language
the rule uses (exact values, arrays as OR, prefix, suffix, anything-but, exists, nesting, array-valued event
fields).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from stacks.constructs.guardrails import (
    DRIFT_CHECK_SRC,
    EVENT_NAME_PREFIXES,
    METRIC_NAMESPACE,
    MUTATING_OPERATIONS,
    CodeDriftCheck,
    DirectMutationDenyPolicy,
    DriftTarget,
    GuardrailsError,
    OutOfBandChangeAlert,
)
from stacks.constructs.stack_policy import logical_id_of
from tests.cfn_lint import cfn_lint_errors
from tests.test_eventbridge_matcher import eb_matches

STACK_NAME = "credmate-lambda-guardtest"
ACCOUNT, REGION = "123456789012", "us-east-1"
LABELS = ("BackendApi", "Worker", "CampaignScheduler")
ROLE_ARNS = ("arn:aws:iam::123456789012:role/Admin", "arn:aws:iam::123456789012:role/team/Developer")
CFN_EXEC_ROLE = "arn:aws:iam::123456789012:role/cdk-hnb659fds-cfn-exec-role-123456789012-us-east-1"


# ---------------------------------------------------------------------------------------------------------
# The synthesized test stack


class Synth:
    def __init__(self, outdir: Path) -> None:
        app = cdk.App(outdir=str(outdir))
        stack = cdk.Stack(app, "Guarded", stack_name=STACK_NAME)
        self.functions: list[lambda_.Function] = []
        self.aliases: list[lambda_.Alias] = []
        for label in LABELS:
            fn = lambda_.Function(
                stack,
                label,
                code=lambda_.Code.from_inline(f"def h(e, c): return '{label}'"),
                handler="index.h",
                runtime=lambda_.Runtime.PYTHON_3_11,
            )
            self.functions.append(fn)
            self.aliases.append(
                lambda_.Alias(stack, f"{label}Live", alias_name="live", version=fn.current_version)
            )
        topic = sns.Topic(stack, "OnCall", master_key=kms.Key(stack, "OnCallKey", enable_key_rotation=True))
        OutOfBandChangeAlert(stack, "OutOfBandChangeAlert", functions=self.functions, topic=topic)
        drift = CodeDriftCheck(
            stack,
            "CodeDriftCheck",
            targets=[
                DriftTarget(LABELS[0], self.functions[0], self.aliases[0]),
                *zip(LABELS[1:], self.functions[1:], self.aliases[1:], strict=True),
            ],
            stack=stack,
            topic=topic,
            schedule=cdk.Duration.minutes(30),
        )
        DirectMutationDenyPolicy(
            stack,
            "DirectMutationDeny",
            functions=self.functions,
            role_arns=ROLE_ARNS,
            cfn_exec_role_arn=CFN_EXEC_ROLE,
        )
        # As BackendStack does: the environment key and scoped logging on everything, and the scheduled
        # drift check's acknowledgements (stacks/compliance.py).
        from stacks.compliance import acknowledge_scheduled_checks
        from stacks.config import AlarmThresholds
        from stacks.constructs.alarms import AsyncFailures
        from stacks.constructs.encryption import EnvironmentKey, apply_stack_security

        key = EnvironmentKey(stack, "DataKey", description="test environment key")
        AsyncFailures(
            stack,
            "AsyncFailures",
            queue_kwargs=key.queue_kwargs(),
            key_arn=key.key.key_arn,
            thresholds=AlarmThresholds(),
            topic=topic,
            runbook_url="https://example.com/runbook.md",
        ).attach(drift.function)
        apply_stack_security(stack, key)
        acknowledge_scheduled_checks([drift.function], in_vpc=False)
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
        try:
            app.synth()
        except RuntimeError as err:
            # nag findings (on the scaffolding) fail validation; the assembly files are written anyway
            assert "ValidationFailed" in str(err)
        self.outdir = outdir
        self.template = json.loads((outdir / "Guarded.template.json").read_text())
        report = outdir / "validation-report.json"
        self.report = json.loads(report.read_text()) if report.exists() else {"pluginReports": []}
        self.fn_ids = [logical_id_of(stack, f) for f in self.functions]

    def of_type(self, type_: str, prefix: str = "") -> dict[str, Any]:
        return {
            k: v for k, v in self.template["Resources"].items() if v["Type"] == type_ and k.startswith(prefix)
        }

    def one(self, type_: str, prefix: str) -> dict[str, Any]:
        (resource,) = self.of_type(type_, prefix).values()
        return resource


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return Synth(tmp_path_factory.mktemp("guardrails-cdk-out"))


def physical_name(logical_id: str) -> str:
    """What CloudFormation would name the function: stack name, logical ID, random suffix; 64 chars max."""
    return f"{STACK_NAME}-{logical_id}"[:51] + "-A1b2C3d4E5f6"


def resolve(value: Any) -> Any:
    """Resolve the intrinsics the rule uses (Ref/GetAtt of functions, Fn::Join) to plausible values."""
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return physical_name(value["Ref"])
    if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"][1] == "Arn":
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical_name(value['Fn::GetAtt'][0])}"
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(p) for p in parts)
    return {k: resolve(v) for k, v in value.items()}


@pytest.fixture(scope="module")
def pattern(synth: Synth) -> dict[str, Any]:
    rule = synth.one("AWS::Events::Rule", "OutOfBandChangeAlert")
    return resolve(rule["Properties"]["EventPattern"])


def cloudtrail_event(
    *,
    event_name: str,
    function_name: str,
    source_ip: str,
    user_arn: str,
    invoked_by: str | None = None,
    user_agent: str = "aws-cli/2.15.0",
) -> dict[str, Any]:
    identity: dict[str, Any] = {"type": "AssumedRole", "arn": user_arn, "accountId": ACCOUNT}
    if invoked_by:
        identity["invokedBy"] = invoked_by
    return {
        "version": "0",
        "id": "7e2b3c1a-0000-0000-0000-000000000000",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.lambda",
        "account": ACCOUNT,
        "time": "2026-11-22T20:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": "2026-11-22T20:00:00Z",
            "eventSource": "lambda.amazonaws.com",
            "eventName": event_name,
            "awsRegion": REGION,
            "sourceIPAddress": source_ip,
            "userAgent": user_agent,
            "requestParameters": {"functionName": function_name},
            "responseElements": None,
            "requestID": "b1c2d3e4-0000-0000-0000-000000000000",
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "readOnly": False,
        },
    }


# ---------------------------------------------------------------------------------------------------------
# Out-of-band change alert


def test_a_person_updating_function_code_is_alerted(synth, pattern):
    name = physical_name(synth.fn_ids[0])
    event = cloudtrail_event(
        event_name="UpdateFunctionCode20150331v2",
        function_name=name,
        source_ip="203.0.113.10",
        user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/jdoe",
    )
    assert eb_matches(pattern, event)


def test_the_same_call_made_by_cloudformation_is_not_alerted(synth, pattern):
    name = physical_name(synth.fn_ids[0])
    event = cloudtrail_event(
        event_name="UpdateFunctionCode20150331v2",
        function_name=name,
        source_ip="cloudformation.amazonaws.com",
        invoked_by="cloudformation.amazonaws.com",
        user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/cdk-cfn-exec-role/AWSCloudFormation",
        user_agent="cloudformation.amazonaws.com",
    )
    assert not eb_matches(pattern, event)


def test_codedeploy_shifting_the_alias_during_a_canary_is_not_alerted(synth, pattern):
    name = physical_name(synth.fn_ids[1])
    event = cloudtrail_event(
        event_name="UpdateAlias20150331",
        function_name=name,
        source_ip="codedeploy.amazonaws.com",
        invoked_by="codedeploy.amazonaws.com",
        user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/DeploymentGroupRole/codedeploy",
    )
    assert not eb_matches(pattern, event)


def test_another_functions_change_is_not_alerted(pattern):
    event = cloudtrail_event(
        event_name="UpdateFunctionCode20150331v2",
        function_name="someone-elses-function",
        source_ip="203.0.113.10",
        user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/jdoe",
    )
    assert not eb_matches(pattern, event)


def test_read_only_calls_are_not_alerted(synth, pattern):
    event = cloudtrail_event(
        event_name="GetFunction20150331v2",
        function_name=physical_name(synth.fn_ids[0]),
        source_ip="203.0.113.10",
        user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/jdoe",
    )
    assert not eb_matches(pattern, event)


@pytest.mark.parametrize("form", ["name", "qualified name", "arn", "qualified arn", "partial arn"])
@pytest.mark.parametrize(
    "event_name",
    [
        "UpdateFunctionConfiguration20150331v2",
        "PublishVersion20150331",
        "UpdateAlias20150331",
        "DeleteFunction20150331",
        "PutFunctionConcurrency20171031",
        "DeleteAlias20150331",
        "AddPermission20150331v2",
        "DeleteFunctionConcurrency20171031",
    ],
)
def test_every_mutation_and_every_way_of_naming_the_function_is_alerted(synth, pattern, form, event_name):
    name = physical_name(synth.fn_ids[2])
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    function_name = {
        "name": name,
        "qualified name": f"{name}:live",
        "arn": arn,
        "qualified arn": f"{arn}:live",
        "partial arn": f"{ACCOUNT}:function:{name}",
    }[form]
    event = cloudtrail_event(
        event_name=event_name,
        function_name=function_name,
        source_ip="198.51.100.7",
        user_arn=f"arn:aws:iam::{ACCOUNT}:user/ci-bot",
    )
    assert eb_matches(pattern, event)


def test_event_name_prefixes_cover_every_mutating_operation():
    for op in MUTATING_OPERATIONS:
        assert any(op.startswith(prefix) for prefix in EVENT_NAME_PREFIXES), op
    assert len(EVENT_NAME_PREFIXES) < len(MUTATING_OPERATIONS)  # redundant prefixes were dropped


def test_resolved_pattern_fits_eventbridges_size_limit(pattern):
    # EventPattern is limited to 4096 characters; physical names above are realistic worst cases.
    assert len(json.dumps(pattern, separators=(",", ":"))) < 4096


def test_alert_targets_the_on_call_topic_with_who_what_when_and_where(synth):
    rule = synth.one("AWS::Events::Rule", "OutOfBandChangeAlert")
    (target,) = rule["Properties"]["Targets"]
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    assert target["Arn"] == {"Ref": topic_id}
    transformer = target["InputTransformer"]
    paths = transformer["InputPathsMap"]
    assert paths["detail-userIdentity-arn"] == "$.detail.userIdentity.arn"
    assert paths["detail-eventName"] == "$.detail.eventName"
    assert paths["detail-requestParameters-functionName"] == "$.detail.requestParameters.functionName"
    assert paths["detail-eventTime"] == "$.detail.eventTime"
    assert paths["detail-sourceIPAddress"] == "$.detail.sourceIPAddress"
    template = transformer["InputTemplate"]
    for field, path_key in [
        ("who", "detail-userIdentity-arn"),
        ("what", "detail-eventName"),
        ("function", "detail-requestParameters-functionName"),
        ("when", "detail-eventTime"),
        ("from", "detail-sourceIPAddress"),
    ]:
        assert f'"{field}":<{path_key}>' in template


def test_input_template_renders_to_json_for_a_sample_event(synth):
    """Apply the transformer as EventBridge would: the on-call message is valid JSON naming the person."""
    rule = synth.one("AWS::Events::Rule", "OutOfBandChangeAlert")
    transformer = rule["Properties"]["Targets"][0]["InputTransformer"]
    event = cloudtrail_event(
        event_name="UpdateFunctionCode20150331v2",
        function_name="fn",
        source_ip="203.0.113.10",
        user_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/jdoe",
    )

    def lookup(path: str) -> Any:
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        return value

    rendered = transformer["InputTemplate"]
    for key, path in transformer["InputPathsMap"].items():
        rendered = rendered.replace(f"<{key}>", json.dumps(lookup(path)))
    message = json.loads(rendered)
    assert message["who"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/Admin/jdoe"
    assert (message["what"], message["function"], message["from"]) == (
        "UpdateFunctionCode20150331v2",
        "fn",
        "203.0.113.10",
    )


# ---------------------------------------------------------------------------------------------------------
# Code drift check


def drift_statements(synth: Synth) -> dict[str, dict[str, Any]]:
    out = {}
    for policy in synth.of_type("AWS::IAM::ManagedPolicy", "CodeDriftCheck").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            out[statement["Sid"]] = statement
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_drift_check_permissions_are_read_only_and_scoped(synth):
    statements = drift_statements(synth)
    assert set(statements) == {
        "ReadCheckedFunctions",
        "DetectDriftOfThisStack",
        "OwnLogs",
        "DriftDetectionStatus",
        "PutGuardrailMetrics",
        "DriftDetectionReads",
        "DecryptEnvironment",  # its environment, encrypted with the environment's key
        "SendFailedInvocations",  # its failed runs, to the failed-invocations queue (AsyncFailures)
        "EncryptFailedInvocations",
    }
    read_only = re.compile(r"^[a-z0-9]+:(Get|List|Describe|Detect)\w*$|^apigateway:GET$|^kms:Decrypt$")
    writes = {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "cloudwatch:PutMetricData",
        "sqs:SendMessage",
        "kms:GenerateDataKey",
    }
    for sid, statement in statements.items():
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert read_only.match(action) or action in writes, f"{sid}: {action} is not read-only"
    # Exactly what is read: each function, its $LATEST, its alias and the version the stack deployed; no
    # `ARN:*` (every version) and no stack-name pattern.
    fn_resources = statements["ReadCheckedFunctions"]["Resource"]
    expected = []
    aliases = synth.of_type("AWS::Lambda::Alias")
    for fn_id in synth.fn_ids:
        arn = {"Fn::GetAtt": [fn_id, "Arn"]}
        (alias_id,) = [k for k, a in aliases.items() if a["Properties"]["FunctionName"] == {"Ref": fn_id}]
        version_id = aliases[alias_id]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        expected += [arn, {"Fn::Join": ["", [arn, ":$LATEST"]]}, {"Ref": alias_id}, {"Ref": version_id}]
    key = json.dumps
    assert sorted(map(key, fn_resources)) == sorted(map(key, expected))
    assert statements["DetectDriftOfThisStack"]["Resource"] == {"Ref": "AWS::StackId"}
    assert statements["OwnLogs"]["Resource"]["Fn::GetAtt"][0].startswith("CodeDriftCheckLogs")
    metrics = statements["PutGuardrailMetrics"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}}
    role = synth.one("AWS::IAM::Role", "CodeDriftCheckRole")
    assert "ManagedPolicyArns" not in role["Properties"], "no AWS managed policies"
    assert not synth.of_type("AWS::IAM::Policy", "CodeDriftCheck"), "no inline policies"


def test_drift_check_function_is_told_the_versions_the_stack_deployed(synth):
    fn = synth.one("AWS::Lambda::Function", "CodeDriftCheckFunction")["Properties"]
    assert fn["Handler"] == "drift_check.handler" and (DRIFT_CHECK_SRC / "drift_check.py").is_file()
    assert fn["ReservedConcurrentExecutions"] == 1 and fn["Timeout"] == 300
    env = fn["Environment"]["Variables"]
    assert env["STACK_NAME"] == STACK_NAME and env["METRIC_NAMESPACE"] == METRIC_NAMESPACE
    joined = env["DRIFT_TARGETS"]["Fn::Join"][1]
    version_refs = [p["Ref"] for p in joined if isinstance(p, dict) and p["Ref"] not in synth.fn_ids]
    alias_versions = [
        a["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        for a in synth.of_type("AWS::Lambda::Alias").values()
    ]
    assert sorted(version_refs) == sorted(alias_versions), (
        "expected versions must be the ones the aliases use"
    )
    rendered = "".join(p if isinstance(p, str) else "X" for p in joined)
    assert [t["label"] for t in json.loads(rendered)] == list(LABELS)


def test_drift_check_runs_on_schedule_and_alarms_to_on_call(synth):
    rule = synth.one("AWS::Events::Rule", "CodeDriftCheckSchedule")["Properties"]
    assert rule["ScheduleExpression"] == "rate(30 minutes)"
    (fn_id,) = synth.of_type("AWS::Lambda::Function", "CodeDriftCheckFunction")
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [fn_id, "Arn"]}
    (topic_id,) = synth.of_type("AWS::SNS::Topic")
    alarms = synth.of_type("AWS::CloudWatch::Alarm", "CodeDriftCheck")
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic_id}] and props["OKActions"] == [{"Ref": topic_id}]
        assert props["Period"] == 1800 and props["Threshold"] == 1
        by_metric.setdefault(props["MetricName"], []).append(props)
    # One CodeDrift alarm for the stack (not one per function: a resource each), naming every function.
    (code,) = by_metric["CodeDrift"]
    assert code["Dimensions"] == [{"Name": "Stack", "Value": STACK_NAME}]
    assert all(label in code["AlarmDescription"] for label in LABELS)
    assert all(p["Namespace"] == METRIC_NAMESPACE for p in [code, *by_metric["StackDrift"]])
    assert by_metric["StackDrift"][0]["Dimensions"] == [{"Name": "Stack", "Value": STACK_NAME}]
    assert len(by_metric["Errors"]) == 1


@pytest.mark.parametrize("minutes", [1, 4, 1441])
def test_drift_check_schedule_out_of_range_names_the_config_key(minutes):
    from stacks.config import ConfigError, parse_environment

    with pytest.raises(
        ConfigError, match=r"environments\.prod\.guardrails\.drift_check_minutes: invalid value"
    ):
        parse_environment("prod", {"guardrails": {"drift_check_minutes": minutes}})


# ---------------------------------------------------------------------------------------------------------
# Direct mutation deny policy


def test_deny_policy_denies_every_mutation_of_these_functions_to_the_configured_roles(synth):
    policy = synth.one("AWS::IAM::ManagedPolicy", "DirectMutationDeny")["Properties"]
    assert "ManagedPolicyName" not in policy
    assert policy["Roles"] == ["Admin", "Developer"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert set(statement["Action"]) == {f"lambda:{op}" for op in MUTATING_OPERATIONS}
    assert {
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:PublishVersion",
        "lambda:UpdateAlias",
        "lambda:DeleteFunction",
        "lambda:PutFunctionConcurrency",
    } <= set(statement["Action"])
    # Every version and alias too (`ARN:*`): a deny is as wide as what it protects.
    expected = []
    for fn_id in synth.fn_ids:
        arn = {"Fn::GetAtt": [fn_id, "Arn"]}
        expected += [arn, {"Fn::Join": ["", [arn, ":*"]]}]
    assert statement["Resource"] == expected
    assert statement["Condition"] == {
        "StringNotEqualsIfExists": {"aws:CalledViaFirst": "cloudformation.amazonaws.com"}
    }


@pytest.mark.parametrize(
    ("role_arns", "exec_role", "message"),
    [
        ((), None, "role_arns is empty"),
        ((CFN_EXEC_ROLE,), CFN_EXEC_ROLE, "is the CloudFormation execution role"),
    ],
)
def test_deny_policy_bad_input_names_the_config_key(role_arns, exec_role, message):
    stack = cdk.Stack(cdk.App(), "S")
    fn = lambda_.Function(
        stack, "F", code=lambda_.Code.from_inline("x"), handler="index.h", runtime=lambda_.Runtime.PYTHON_3_11
    )
    with pytest.raises(GuardrailsError, match=message):
        DirectMutationDenyPolicy(stack, "D", functions=[fn], role_arns=role_arns, cfn_exec_role_arn=exec_role)


@pytest.mark.parametrize(
    ("role_arns", "key", "allowed"),
    [
        (["Admin"], "deny_direct_mutation_role_arns[0]", "an IAM role ARN"),
        (["arn:aws:iam::123456789012:user/jdoe"], "deny_direct_mutation_role_arns[0]", "an IAM role ARN"),
        ([ROLE_ARNS[0], ROLE_ARNS[0]], "deny_direct_mutation_role_arns[1]", "each role listed once"),
    ],
)
def test_bad_deny_role_arns_name_the_config_key(role_arns, key, allowed):
    from stacks.config import ConfigError, parse_environment

    with pytest.raises(ConfigError) as err:
        parse_environment("prod", {"guardrails": {"deny_direct_mutation_role_arns": role_arns}})
    assert f"environments.prod.guardrails.{key}: invalid value" in str(err.value) and allowed in str(
        err.value
    )


# ---------------------------------------------------------------------------------------------------------
# Compliance


def findings_under(report: dict[str, Any], prefix: str) -> list[str]:
    return [
        f"{v['ruleName']} at {c['constructPath']}"
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
        if c["constructPath"].startswith(prefix)
    ]


@pytest.mark.parametrize("construct", ["OutOfBandChangeAlert", "CodeDriftCheck", "DirectMutationDeny"])
def test_guardrail_constructs_pass_cdk_nag_aws_solutions_and_hipaa(synth, construct):
    assert findings_under(synth.report, f"Guarded/{construct}/") == []


def test_nag_packs_did_run(synth):
    plugins = {p["pluginName"] for p in synth.report["pluginReports"]}
    assert plugins == {"AwsSolutions", "HIPAA.Security"}
    assert findings_under(synth.report, "Guarded/BackendApi/"), (
        "the scaffolding function should have findings"
    )


def test_synthesized_template_has_no_cfn_lint_errors(synth):
    errors = cfn_lint_errors(synth.outdir / "Guarded.template.json")
    assert errors == [], errors
