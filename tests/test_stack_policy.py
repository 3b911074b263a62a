# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The stack policy builder (stacks/constructs/stack_policy.py) and its stack (stacks/policy_stack.py).

One synth of a small app (a fixed construct tree shaped like the backend's: function, `live` alias, queue,
log group, topic) with the cdk-nag AwsSolutions and HIPAA Security packs attached; templates and the nag
report are read from the cloud assembly on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks
from constructs import Construct

from stacks.constructs.stack_policy import (
    PolicyStatement,
    StackPolicy,
    StackPolicyError,
    logical_id_of,
    protect,
)
from stacks.policy_stack import StackPolicyStack, policy_physical_id
from tests.cfn_lint import cfn_lint_errors

TARGET_NAME = "credmate-lambda-policytest"
# The logical IDs of the protected resources of the fixed tree below. If this test fails, a construct ID or
# path changed: in a real stack that means CloudFormation would replace (or delete) the resource, which the
# deployed stack policy now refuses. Rename back; never "update the snapshot" without an approved replacement
# (docs/guardrails.md, "Intended replacement").
EXPECTED_PROTECTED = {
    "ApiFunction6BF808ED": "AWS::Lambda::Function",
    "ApiLiveAliasB7D375B9": "AWS::Lambda::Alias",
    "ApiLogsCD139AD4": "AWS::Logs::LogGroup",
    "OnCallTopic7F609DF9": "AWS::SNS::Topic",
    "OnCallKey8DFDEFC3": "AWS::KMS::Key",
    "WorkerQueueE3D427EB": "AWS::SQS::Queue",
}


class FixedTree(cdk.Stack):
    """Scaffolding for the tests; its own nag findings are not ours and are filtered out by path."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        api = Construct(self, "Api")
        self.logs = logs.LogGroup(api, "Logs", retention=logs.RetentionDays.ONE_MONTH)
        self.function = lambda_.Function(
            api,
            "Function",
            code=lambda_.Code.from_inline("def h(e, c): return 1"),
            handler="index.h",
            runtime=lambda_.Runtime.PYTHON_3_11,
            log_group=self.logs,
        )
        self.alias = lambda_.Alias(api, "LiveAlias", alias_name="live", version=self.function.current_version)
        self.key = kms.Key(self, "OnCallKey", enable_key_rotation=True)
        self.topic = sns.Topic(self, "OnCallTopic", master_key=self.key)
        self.queue = sqs.Queue(self, "WorkerQueue", enforce_ssl=True)
        self.unprotected = sqs.Queue(self, "Scratch", enforce_ssl=True)

    @property
    def protected(self) -> list[Construct]:
        return [self.function, self.alias, self.logs, self.topic, self.key, self.queue]


class Synth:
    def __init__(self, outdir: Path) -> None:
        app = cdk.App(outdir=str(outdir))
        self.target = FixedTree(app, "Target", stack_name=TARGET_NAME)
        self.policy = protect(self.target, self.target.protected)
        self.policy_stack = StackPolicyStack(
            app, "Target-policy", target=self.target, policy=self.policy, encryption_key=self.target.key
        )
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app))
        try:
            app.synth()
        except RuntimeError as err:
            # nag findings (on the scaffolding) fail validation; the assembly files are written anyway
            assert "ValidationFailed" in str(err)
        self.outdir = outdir
        self.target_template = json.loads((outdir / "Target.template.json").read_text())
        self.policy_template = json.loads((outdir / "Target-policy.template.json").read_text())
        report = outdir / "validation-report.json"
        self.report = json.loads(report.read_text()) if report.exists() else {"pluginReports": []}
        self.manifest = json.loads((outdir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return Synth(tmp_path_factory.mktemp("policy-cdk-out"))


def findings_under(report: dict[str, Any], prefix: str) -> list[str]:
    return [
        f"{v['ruleName']} at {c['constructPath']}"
        for plugin in report["pluginReports"]
        for v in plugin["violations"]
        for c in v["violatingConstructs"]
        if c["constructPath"].startswith(prefix)
    ]


def resources_of(template: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def deployed_policy(synth: Synth) -> dict[str, Any]:
    """The policy body exactly as the custom resource will send it to SetStackPolicy."""
    (resource,) = resources_of(synth.policy_template, "Custom::AWS").values()
    return json.loads(json.loads(resource["Properties"]["Create"])["parameters"]["StackPolicyBody"])


def allowed(policy: dict[str, Any], action: str, logical_id: str, resource_type: str) -> bool:
    """CloudFormation's stack-policy evaluation: default deny; a matching Deny wins, else a matching Allow."""

    def matches(statement: dict[str, Any]) -> bool:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        action_ok = any(a == action or (a.endswith("*") and action.startswith(a[:-1])) for a in actions)
        resource_ok = any(r == "*" or r == f"LogicalResourceId/{logical_id}" for r in resources)
        types = statement.get("Condition", {}).get("StringEquals", {}).get("ResourceType")
        return action_ok and resource_ok and (types is None or resource_type in types)

    hits = [s["Effect"] for s in policy["Statement"] if matches(s)]
    return "Deny" not in hits and "Allow" in hits


# ---------------------------------------------------------------------------------------------------------
# The builder


def test_statement_renders_cloudformation_stack_policy_syntax():
    statement = PolicyStatement(
        effect="Deny",
        actions=("Update:Replace",),
        logical_ids=("Queue1",),
        resource_types=("AWS::SQS::Queue",),
    )
    assert statement.to_json() == {
        "Effect": "Deny",
        "Action": "Update:Replace",
        "Principal": "*",
        "Resource": ["LogicalResourceId/Queue1"],
        "Condition": {"StringEquals": {"ResourceType": ["AWS::SQS::Queue"]}},
    }
    assert PolicyStatement(effect="Allow", actions=("Update:*",)).to_json()["Resource"] == "*"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"effect": "Permit", "actions": ("Update:*",)}, "effect 'Permit'"),
        ({"effect": "Deny", "actions": ()}, "actions must not be empty"),
        ({"effect": "Deny", "actions": ("Update:Everything",)}, "action 'Update:Everything'"),
        (
            {"effect": "Deny", "actions": ("Update:*",), "logical_ids": ("${Token[TOKEN.12]}",)},
            "not a resolved",
        ),
        ({"effect": "Deny", "actions": ("Update:*",), "resource_types": ("Queue",)}, "AWS::Service::Type"),
    ],
)
def test_invalid_statements_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(StackPolicyError, match=message.replace("$", r"\$").replace("[", r"\[")):
        PolicyStatement(**kwargs)


def test_empty_policy_is_rejected_because_it_would_deny_every_update():
    with pytest.raises(StackPolicyError, match="every update is denied"):
        StackPolicy(statements=())


def test_render_is_canonical():
    a = StackPolicy((PolicyStatement(effect="Allow", actions=("Update:*",)),))
    b = StackPolicy((PolicyStatement(effect="Allow", actions=("Update:*",)),))
    assert (
        a.render() == b.render() == '{"Statement":[{"Action":"Update:*","Effect":"Allow","Principal":"*",'
        '"Resource":"*"}]}'
    )


def test_protect_rejects_constructs_without_a_resource_and_resources_of_other_stacks(synth):
    with pytest.raises(StackPolicyError, match=r"Target/Api.*no CloudFormation resource"):
        protect(synth.target, [synth.target.node.find_child("Api")])
    with pytest.raises(StackPolicyError, match="belongs to stack 'Target'"):
        logical_id_of(synth.policy_stack, synth.target.queue)
    with pytest.raises(StackPolicyError, match="at least one resource"):
        protect(synth.target, [])


def test_protect_refuses_resources_whose_logical_id_changes_every_deploy(synth):
    with pytest.raises(StackPolicyError, match=r"AWS::Lambda::Version, whose logical ID changes"):
        protect(synth.target, [synth.target.queue, synth.target.function.current_version])


# ---------------------------------------------------------------------------------------------------------
# Logical IDs: real, present, and pinned


def test_policy_names_exactly_the_real_logical_ids_present_in_the_template(synth):
    resources = synth.target_template["Resources"]
    protected = synth.policy.protected_logical_ids
    assert protected, "nothing protected"
    for logical_id in protected:
        assert logical_id in resources, (
            f"stack policy names {logical_id}, which the template does not contain"
        )
    assert {i: resources[i]["Type"] for i in protected} == EXPECTED_PROTECTED


def test_protected_logical_ids_snapshot(synth):
    """Fails when a protected resource's logical ID changes (see EXPECTED_PROTECTED)."""
    assert sorted(synth.policy.protected_logical_ids) == sorted(EXPECTED_PROTECTED)


def test_policy_denies_replace_and_delete_of_protected_resources_and_allows_the_rest(synth):
    policy = deployed_policy(synth)
    alias_id = next(i for i, t in EXPECTED_PROTECTED.items() if t == "AWS::Lambda::Alias")
    scratch = logical_id_of(synth.target, synth.target.unprotected)
    assert allowed(policy, "Update:Modify", alias_id, "AWS::Lambda::Alias")  # a new version, a weight shift
    assert not allowed(policy, "Update:Replace", alias_id, "AWS::Lambda::Alias")
    assert not allowed(policy, "Update:Delete", alias_id, "AWS::Lambda::Alias")
    for logical_id, type_ in EXPECTED_PROTECTED.items():
        assert not allowed(policy, "Update:Delete", logical_id, type_), logical_id
    assert allowed(policy, "Update:Replace", scratch, "AWS::SQS::Queue")
    assert allowed(policy, "Update:Delete", scratch, "AWS::SQS::Queue")


# ---------------------------------------------------------------------------------------------------------
# The stack that applies it


def test_custom_resource_sets_the_policy_on_create_and_update_with_a_policy_derived_physical_id(synth):
    (resource,) = resources_of(synth.policy_template, "Custom::AWS").values()
    create, update = (
        json.loads(resource["Properties"]["Create"]),
        json.loads(resource["Properties"]["Update"]),
    )
    assert create == update
    assert create["service"] == "CloudFormation" and create["action"] == "setStackPolicy"
    assert create["parameters"] == {"StackName": TARGET_NAME, "StackPolicyBody": synth.policy.render()}
    assert create["physicalResourceId"] == {"id": policy_physical_id(synth.policy.render())}
    assert "Delete" not in resource["Properties"]  # removing the policy stack leaves the last policy in place
    assert resource["Properties"]["InstallLatestAwsSdk"] is False


def test_physical_id_is_stable_for_the_same_policy_and_changes_with_it(synth):
    body = synth.policy.render()
    assert policy_physical_id(body) == policy_physical_id(str(body))
    other = protect(synth.target, [synth.target.queue]).render()
    assert policy_physical_id(other) != policy_physical_id(body)


def test_iam_allows_only_set_stack_policy_on_the_target_stack(synth):
    (managed,) = resources_of(synth.policy_template, "AWS::IAM::ManagedPolicy").values()
    statements = managed["Properties"]["PolicyDocument"]["Statement"]
    cfn = [s for s in statements if str(s["Action"]).startswith("cloudformation")]
    # The target's exact stack ID (its ARN), imported from the target: no `stack/NAME/*` pattern.
    (cfn_statement,) = cfn
    assert cfn_statement["Action"] == "cloudformation:SetStackPolicy" and cfn_statement["Effect"] == "Allow"
    (export_name,) = cfn_statement["Resource"]["Fn::ImportValue"].split(":")[1:]
    exported = {
        o["Export"]["Name"]: o["Value"]
        for o in synth.target_template.get("Outputs", {}).values()
        if "Export" in o
    }
    assert exported[f"{synth.target.stack_name}:{export_name}"] == {"Ref": "AWS::StackId"}
    others = [s for s in statements if s not in cfn]
    assert [s["Action"] for s in others] == [["logs:CreateLogStream", "logs:PutLogEvents"]]
    assert not resources_of(synth.policy_template, "AWS::IAM::Policy"), "no inline policies"
    roles = resources_of(synth.policy_template, "AWS::IAM::Role")
    assert all("ManagedPolicyArns" not in r["Properties"] for r in roles.values()), "no AWS managed policies"


def test_policy_stack_deploys_after_its_target(synth):
    artifact = synth.manifest["artifacts"]["Target-policy"]
    assert "Target" in artifact["dependencies"]


def test_policy_stack_refuses_another_region(tmp_path):
    app = cdk.App(outdir=str(tmp_path))
    target = cdk.Stack(
        app, "T", stack_name="t", env=cdk.Environment(account="111111111111", region="us-east-1")
    )
    queue = sqs.Queue(target, "Q")
    with pytest.raises(StackPolicyError, match="region 'eu-west-1' differs"):
        StackPolicyStack(
            app,
            "P",
            target=target,
            policy=protect(target, [queue]),
            encryption_key=kms.Key(target, "K"),
            env=cdk.Environment(account="111111111111", region="eu-west-1"),
        )


def test_policy_stack_passes_cdk_nag_aws_solutions_and_hipaa(synth):
    assert findings_under(synth.report, "Target-policy/") == []
    # The packs did run (the scaffolding stack has findings), so an empty list above is meaningful.
    assert findings_under(synth.report, "Target/")


def test_synthesized_template_has_no_cfn_lint_errors(synth):
    errors = cfn_lint_errors(synth.outdir / "Target-policy.template.json")
    assert errors == [], errors
