# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""scripts.pr_diff's summary (summary, values, findings, render) on the fixture template pairs, and the
summary's own command line."""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scripts.pr_diff import findings as diff_findings
from scripts.pr_diff import library as diff_library
from scripts.pr_diff import model as diff_model
from scripts.pr_diff import render as diff_render
from scripts.pr_diff import summary as ds
from scripts.pr_diff import values as diff_values
from tests.pr_diff.conftest import FIXTURES, FUNCTIONS, NEW_ASSET, OLD_ASSET, STACK, load


def diff_of(case: str, policy: dict[str, Any] | None, **kwargs: Any) -> diff_model.StackDiff:
    return ds.diff_templates(load("base"), load(case), policy=policy, stack=STACK, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# The fixture cases


def test_backend_source_change_gives_three_new_versions_and_canaries(policy):
    # GIVEN one new backend asset: the three functions' S3Key and their Version logical IDs change
    diff = diff_of("backend_source", policy)
    # THEN all three get a new version through CodeDeploy, for a source/requirements reason
    assert {v.label for v in diff.versions} == set(FUNCTIONS)
    assert all(v.canary for v in diff.versions)
    assert all("CodeDeployDefault.LambdaCanary10Percent5Minutes" in v.detail for v in diff.versions)
    assert all(v.reasons == ("source/requirements (asset 3f1c9a0d → c4d5e6f7)",) for v in diff.versions)
    # the old versions go and new ones come: expected churn, nothing replaced or blocked
    assert {c.type for c in diff.of_kind("added")} == {"AWS::Lambda::Version"}
    assert len(diff.of_kind("removed")) == 3 and not diff.of_kind("replaced") and not diff.blocked
    assert not diff.code_without_version and not diff.iam and not diff.alarms
    md = diff_render.render_markdown(diff)
    assert md.count("a canary deployment will run") == 3
    assert "3 canary deployment(s) will run" in md
    for fn_id in FUNCTIONS.values():
        assert fn_id in md
    assert diff_render.BLOCKED not in md


def _asset_infos(old_source: str, new_source: str, old_req: str, new_req: str) -> dict[str, dict[str, str]]:
    return {
        OLD_ASSET: {"source_hash": old_source, "requirements_hash": old_req, "runtime": "python3.11"},
        NEW_ASSET: {"source_hash": new_source, "requirements_hash": new_req, "runtime": "python3.11"},
    }


@pytest.mark.parametrize(
    ("infos", "reason"),
    [
        (_asset_infos("s1", "s2", "r1", "r1"), "source changed"),
        (_asset_infos("s1", "s1", "r1", "r2"), "requirements changed"),
        (_asset_infos("s1", "s2", "r1", "r2"), "source and requirements changed"),
        (_asset_infos("s1", "s1", "r1", "r1"), "bundle inputs (the bundler: its code, Python or zlib"),
    ],
)
def test_build_info_tells_source_from_requirements(policy, infos, reason):
    diff = diff_of("backend_source", policy, assets=infos)
    assert all(v.reasons[0].startswith(reason) for v in diff.versions), [v.reasons for v in diff.versions]


def test_alarm_threshold_change_names_the_alarm(policy):
    diff = diff_of("alarm_threshold", policy)
    assert len(diff.alarms) == 1
    alarm = diff.alarms[0]
    assert alarm.logical_id == "BackendApiAlarmsErrors7E2B1F40"
    assert alarm.kind == "modified"
    assert alarm.name.startswith("BackendApi: errors on the live alias")
    assert "Threshold: 1 → 5" in alarm.details
    assert "EvaluationPeriods: 1 → 3" in alarm.details
    assert not diff.versions and not diff.blocked
    md = diff_render.render_markdown(diff)
    assert "#### Alarms" in md and "BackendApiAlarmsErrors7E2B1F40" in md and "Threshold: 1 → 5" in md


def test_alarm_added_removed_and_actions(base):
    new = copy.deepcopy(base)
    res = new["Resources"]
    gone = res.pop("WorkerAlarmsErrors38D8F738")
    res["WorkerAlarmsThrottles1A2B3C4D"] = {
        **copy.deepcopy(gone),
        "Properties": {
            **gone["Properties"],
            "MetricName": "Throttles",
            "AlarmDescription": "Worker: throttles",
        },
    }
    res["BackendApiAlarmsErrors7E2B1F40"]["Properties"]["AlarmActions"] = []
    by_id = {a.logical_id: a for a in diff_findings.alarm_changes(base, new)}
    assert by_id["WorkerAlarmsErrors38D8F738"].kind == "removed"
    assert by_id["WorkerAlarmsThrottles1A2B3C4D"].kind == "added"
    assert by_id["WorkerAlarmsThrottles1A2B3C4D"].name == "Worker: throttles"
    assert "Sum Throttles >= 1 over 1 x 60s" in by_id["WorkerAlarmsThrottles1A2B3C4D"].details
    assert by_id["BackendApiAlarmsErrors7E2B1F40"].details == ("AlarmActions: -`${OnCallTopic0F5E2B9A}`",)


def test_api_logical_id_change_is_removal_and_blocked(policy):
    # GIVEN the REST API moved into another construct: new logical ID for it and its children
    diff = diff_of("api_replaced", policy)
    removed = {c.logical_id: c for c in diff.of_kind("removed")}
    added = {c.logical_id: c for c in diff.of_kind("added")}
    # THEN the protected API's removal is refused by the policy, its twin is an addition
    assert removed["ApiF70053CD"].blocked_by == "Update:Delete"
    assert removed["ApiF70053CD"].looks_like == "PublicApiRestApi8C2F4A1B"
    assert added["PublicApiRestApi8C2F4A1B"].looks_like == "ApiF70053CD"
    assert [c.logical_id for c in diff.blocked] == ["ApiF70053CD"]
    md = diff_render.render_markdown(diff)
    assert "[!CAUTION]" in md and f"1 change(s) {diff_render.BLOCKED}" in md
    assert md.index(diff_render.BLOCKED) < md.index("| Change | Count |")  # the warning comes first


def test_without_policy_nothing_is_blocked_and_it_says_so():
    diff = diff_of("api_replaced", None)
    assert not diff.blocked
    assert "No stack policy given" in diff_render.render_markdown(diff)


def test_property_replacement_cascades_through_references(base, policy):
    # GIVEN the worker queue gets a physical name (QueueName requires replacement)
    new = copy.deepcopy(base)
    new["Resources"]["WorkerQueueE3D427EB"]["Properties"]["QueueName"] = "credmate-worker"
    diff = ds.diff_templates(base, new, policy=policy, stack=STACK)
    replaced = {c.logical_id: c for c in diff.of_kind("replaced")}
    # THEN the queue is replaced and blocked; the event source mapping follows (its EventSourceArn changes)
    assert replaced["WorkerQueueE3D427EB"].reasons == ("QueueName changed",)
    assert replaced["WorkerQueueE3D427EB"].blocked_by == "Update:Replace"
    mapping = replaced["WorkerLiveAliasSqsEventSourcecredmatelambdaprodWorkerQueue4F2A9C10"]
    assert mapping.reasons == ("EventSourceArn refers to replaced WorkerQueueE3D427EB",)
    assert mapping.blocked_by is None  # not protected
    md = diff_render.render_markdown(diff)
    assert "#### Replaced" in md and "QueueName changed" in md


def test_function_rename_replaces_its_alias_and_both_are_blocked(base, policy):
    new = copy.deepcopy(base)
    new["Resources"]["WorkerFunctionACE6A4B0"]["Properties"]["FunctionName"] = "credmate-worker"
    replaced = {c.logical_id: c for c in ds.resource_changes(base, new, policy)}
    assert replaced["WorkerFunctionACE6A4B0"].kind == "replaced"
    assert replaced["WorkerLiveAlias38D8F738"].kind == "replaced"
    assert replaced["WorkerLiveAlias38D8F738"].reasons == (
        "FunctionName refers to replaced WorkerFunctionACE6A4B0",
    )
    assert replaced["WorkerLiveAlias38D8F738"].blocked_by == "Update:Replace"


def test_modification_of_protected_resource_is_allowed(base, policy):
    new = copy.deepcopy(base)
    new["Resources"]["WorkerQueueE3D427EB"]["Properties"]["VisibilityTimeout"] = 720
    (change,) = ds.resource_changes(base, new, policy)
    assert (change.kind, change.changed, change.blocked_by) == ("modified", ("VisibilityTimeout",), None)


def test_iam_broadening(policy):
    diff = diff_of("iam_broadening", policy)
    by_id = {f.logical_id: f for f in diff.iam}
    wildcard = by_id["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]
    assert wildcard.severe and "`s3:*` on `*`" in wildcard.message
    assert "wildcard action" in wildcard.message and "ALL resources" in wildcard.message
    trust = by_id["CampaignSchedulerFunctionServiceRole9C4E7B22"]
    assert trust.message.startswith("trust widened") and "Service:events.amazonaws.com" in trust.message
    managed = by_id["BackendApiFunctionServiceRole7E2B1F40"]
    assert managed.severe and "AmazonS3FullAccess" in managed.message
    assert len(diff.iam) == 3  # the unchanged SQS grants are not reported
    assert "#### IAM broadening" in diff_render.render_markdown(diff)


def test_iam_reordering_and_merging_statements_is_not_broadening(base):
    new = copy.deepcopy(base)
    doc = new["Resources"]["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]["Properties"]["PolicyDocument"]
    (statement,) = doc["Statement"]
    doc["Statement"] = [{**statement, "Action": [a]} for a in reversed(statement["Action"])]
    assert diff_findings.iam_findings(base, new) == []


def test_iam_allow_with_not_action_is_broadening_though_the_library_calls_it_negative(base):
    # GIVEN an added Allow with NotAction: it grants every action but the listed ones
    new = copy.deepcopy(base)
    doc = new["Resources"]["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]["Properties"]["PolicyDocument"]
    doc["Statement"].append({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::bucket/*"})
    library = diff_library.library_diff(base, new)
    (added,) = library["iam"]["statementAdditions"]
    assert added["negative"] is True and library["iam"]["broadened"] is False  # the library's verdict
    # THEN the summary reports it, in the library's rendering, as a wildcard grant
    (finding,) = diff_findings.iam_findings(base, new, library)
    assert finding.logical_id == "WorkerFunctionServiceRoleDefaultPolicy07D8276A"
    assert "new Allow `NOT iam:*` on `arn:aws:s3:::bucket/*`" in finding.message
    assert "wildcard action" in finding.message and finding.severe


def test_iam_deny_split_into_two_statements_is_not_a_removal(base):
    old, new = copy.deepcopy(base), copy.deepcopy(base)
    deny = {"Effect": "Deny", "Action": ["s3:DeleteBucket", "s3:DeleteObject"], "Resource": "*"}
    doc = old["Resources"]["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]["Properties"]["PolicyDocument"]
    doc["Statement"].append(deny)
    doc = new["Resources"]["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]["Properties"]["PolicyDocument"]
    doc["Statement"] += [{**deny, "Action": a} for a in deny["Action"]]
    assert diff_findings.iam_findings(old, new) == []
    doc["Statement"].pop()  # now s3:DeleteObject is no longer denied
    (finding,) = diff_findings.iam_findings(old, new)
    assert finding.message.startswith("Deny removed: `s3:DeleteBucket s3:DeleteObject`") and finding.severe


def test_iam_public_permission_deny_removed_and_boundary(base):
    old = copy.deepcopy(base)
    new = copy.deepcopy(base)
    role = "WorkerFunctionServiceRole38D8F738"
    old["Resources"][role]["Properties"]["PermissionsBoundary"] = "arn:aws:iam::123456789012:policy/boundary"
    old["Resources"][role]["Properties"]["Policies"] = [
        {
            "PolicyName": "guard",
            "PolicyDocument": {
                "Statement": [{"Effect": "Deny", "Action": "lambda:UpdateFunctionCode", "Resource": "*"}]
            },
        }
    ]
    new["Resources"][role]["Properties"]["Policies"] = [
        {"PolicyName": "guard", "PolicyDocument": {"Statement": []}}
    ]
    new["Resources"]["PublicInvoke1A2B3C4D"] = {
        "Type": "AWS::Lambda::Permission",
        "Properties": {
            "Action": "lambda:InvokeFunction",
            "FunctionName": {"Ref": "WorkerLiveAlias38D8F738"},
            "Principal": "*",
        },
    }
    findings = diff_findings.iam_findings(old, new)
    messages = {f.message: f.severe for f in findings}
    assert messages["permissions boundary removed"] is True
    # the library reports the statement, not the inline policy's name; the finding names the role
    assert messages["Deny removed: `lambda:UpdateFunctionCode` on `*`"] is True
    assert {f.logical_id for f in findings if f.message.startswith("Deny removed")} == {role}
    public = next(m for m in messages if "InvokeFunction" in m)
    assert "ANY principal" in public and messages[public] is True


def test_security_group_broadening(policy):
    old = load("sg_broadening.old")
    diff = ds.diff_templates(old, load("sg_broadening"), policy=policy, stack=STACK)
    messages = [f.message for f in diff.security_groups]
    assert len(messages) == 2
    # the library's protocol and peer text; the group's earlier rule beside each, for comparison
    internet = next(m for m in messages if "TCP 22 from `Everyone (IPv4)`" in m)
    assert "OPEN TO THE INTERNET" in internet and "all ports" not in internet
    wide = next(m for m in messages if "TCP 0-65535 from `10.20.0.0/16`" in m)
    assert "**all ports**" in wide and "OPEN TO THE INTERNET" not in wide
    assert all(m.endswith("the group had `TCP 443 from 10.20.0.0/24`") for m in messages)
    assert all(f.severe for f in diff.security_groups)
    # the separate ingress resource is named, not only its group
    assert {f.logical_id for f in diff.security_groups} == {
        "HooksSecurityGroup4D2E6F8A",
        "HooksSecurityGroupfrom00000022C1D2E3F4",
    }
    assert "#### Security-group broadening" in diff_render.render_markdown(diff)


def test_security_group_rule_on_one_port_from_a_private_range_is_listed_not_flagged():
    old = load("sg_broadening.old")
    new = copy.deepcopy(old)
    rules = new["Resources"]["HooksSecurityGroup4D2E6F8A"]["Properties"]["SecurityGroupIngress"]
    rules.append({**rules[0], "CidrIp": "10.30.0.0/24"})
    (finding,) = diff_findings.security_group_findings(old, new)
    assert finding.message.startswith("new ingress TCP 443 from `10.30.0.0/24`; the group had")
    assert not finding.severe


def test_security_group_narrowing_is_not_reported():
    old, new = load("sg_broadening"), load("sg_broadening.old")
    assert diff_findings.security_group_findings(old, new) == []


def test_config_change_gives_new_versions_for_config(policy):
    diff = diff_of("config_memory", policy)
    assert {v.label for v in diff.versions} == set(FUNCTIONS)
    assert all(v.canary and v.reasons == ("config: MemorySize 1024 → 2048",) for v in diff.versions)
    assert "config: MemorySize 1024 → 2048" in diff_render.render_markdown(diff)


def test_environment_change_lists_variable_names_only(base):
    new = copy.deepcopy(base)
    fn = new["Resources"]["WorkerFunctionACE6A4B0"]["Properties"]
    fn["Environment"]["Variables"]["LOG_LEVEL"] = "DEBUG"
    fn["Environment"]["Variables"]["CORS_ALLOWED_ORIGINS"] = "https://evil.example"
    old_version = "WorkerFunctionCurrentVersion38D8F7382826b8f89cb6328c0419eeb1317d251d"
    new["Resources"]["WorkerFunctionCurrentVersion38D8F738ffff"] = new["Resources"].pop(old_version)
    new["Resources"]["WorkerLiveAlias38D8F738"]["Properties"]["FunctionVersion"] = {
        "Fn::GetAtt": ["WorkerFunctionCurrentVersion38D8F738ffff", "Version"]
    }
    versions, _ = ds.function_versions(base, new, {})
    assert [(v.label, v.reasons) for v in versions] == [
        ("Worker/Function", ("config: Environment (+LOG_LEVEL, ~CORS_ALLOWED_ORIGINS)",))
    ]
    assert "evil" not in ds.summarize(base, new)


def test_hook_code_change_without_version_is_no_canary(base):
    new = copy.deepcopy(base)
    for res in new["Resources"].values():
        if res["Properties"].get("Handler") == "pre_traffic.handler":
            res["Properties"]["Code"]["S3Key"] = "0123.zip"
    versions, in_place = ds.function_versions(base, new, {})
    assert versions == []
    assert len(in_place) == 3 and not any(v.canary for v in in_place)
    assert all("no new version" in v.detail for v in in_place)


def test_new_function_and_alias_without_codedeploy(base):
    new = copy.deepcopy(base)
    res = new["Resources"]
    res["ReportsFunction5A5A5A5A"] = copy.deepcopy(res["WorkerFunctionACE6A4B0"])
    res["ReportsFunctionCurrentVersion5A5A5A5Aabc"] = {
        "Type": "AWS::Lambda::Version",
        "Properties": {"FunctionName": {"Ref": "ReportsFunction5A5A5A5A"}},
    }
    # the worker alias loses its CodeDeploy update policy and moves to a new version
    del res["WorkerLiveAlias38D8F738"]["UpdatePolicy"]
    res["WorkerFunctionACE6A4B0"]["Properties"]["Timeout"] = 90
    res["WorkerFunctionCurrentVersion38D8F738new"] = res.pop(
        "WorkerFunctionCurrentVersion38D8F7382826b8f89cb6328c0419eeb1317d251d"
    )
    res["WorkerLiveAlias38D8F738"]["Properties"]["FunctionVersion"] = {
        "Fn::GetAtt": ["WorkerFunctionCurrentVersion38D8F738new", "Version"]
    }
    versions = {v.function_id: v for v in ds.function_versions(base, new, {})[0]}
    assert versions["ReportsFunction5A5A5A5A"].canary is False
    assert versions["ReportsFunction5A5A5A5A"].reasons == ("new function",)
    worker = versions["WorkerFunctionACE6A4B0"]
    assert worker.canary is False and "no CodeDeploy update policy" in worker.detail
    assert worker.reasons == ("config: Timeout 60 → 90",)


def test_library_verdicts_where_the_old_replacement_table_was_wrong(policy):
    # GIVEN a database whose StorageType changes (CloudFormation replaces an RDS instance for some storage
    # changes only) and an API method whose HttpMethod changes. A hand-written table of "replacement"
    # properties had neither (both listed as in-place updates); the resource specification has both.
    old, new = load("library_verdicts.old"), load("library_verdicts")
    guarded = copy.deepcopy(policy)
    guarded["Statement"][1]["Resource"].append("LogicalResourceId/DatabaseInstance2A4C6E8F")
    diff = ds.diff_templates(old, new, policy=guarded, stack=STACK)
    by_id = {c.logical_id: c for c in diff.changes}
    database, method = by_id["DatabaseInstance2A4C6E8F"], by_id["ApiproxyANY4946669B"]
    # THEN the library's answers are what the summary shows
    assert (database.kind, database.impact) == ("may be replaced", "MAY_REPLACE")
    assert database.reasons == (
        "StorageType changed (CloudFormation replaces the resource for some new values)",
    )
    assert database.blocked_by == "Update:Replace"
    assert (method.kind, method.impact) == ("replaced", "WILL_REPLACE")
    assert method.reasons == ("HttpMethod changed",)
    assert method.blocked_by is None and len(diff.changes) == 2
    md = diff_render.render_markdown(diff)
    assert "**1** may be replaced · **1** replaced" in md
    assert "> [!WARNING]" in md and "[!CAUTION]" not in md  # conditional, not certain, refusal
    assert f"**1 change(s) {diff_render.MAY_BE_BLOCKED}**" in md
    assert "#### May be replaced" in md and "#### Replaced" in md
    assert "#### Modified (in place)" not in md  # what the old table would have said


def test_cfn_diff_script_reports_impacts_and_attributes_iam_changes():
    out = diff_library.run_cfn_diff(
        FIXTURES / "base.template.json", FIXTURES / "iam_broadening.template.json"
    )
    assert out["library"].startswith("2.")
    policy = out["resources"]["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]
    assert policy["impact"] == policy["properties"]["PolicyDocument"]["impact"] == "WILL_UPDATE"
    wildcard = next(s for s in out["iam"]["statementAdditions"] if s["actions"]["values"] == ["s3:*"])
    assert wildcard["sources"] == ["WorkerFunctionServiceRoleDefaultPolicy07D8276A"]
    assert out["iam"]["broadened"] is True


def test_cfn_diff_script_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.template.json"
    bad.write_text("{nope")
    expected = r"exit 2.*\n.*old template .*bad\.template\.json: not valid JSON"
    with pytest.raises(diff_library.CfnDiffError, match=expected):
        diff_library.run_cfn_diff(bad, FIXTURES / "base.template.json")


def test_cfn_diff_without_node_modules_says_run_make_setup(tmp_path, monkeypatch):
    # a copy of the script outside the repository cannot resolve the library, as before `npm ci`
    script = tmp_path / "cfn_diff.mjs"
    script.write_text(diff_library.CFN_DIFF.read_text())
    monkeypatch.setattr(diff_library, "CFN_DIFF", script)
    base_file = FIXTURES / "base.template.json"
    expected = r"exit 2\):\n.*@aws-cdk/cloudformation-diff is not installed .*: run `make setup`"
    with pytest.raises(diff_library.CfnDiffError, match=expected):
        diff_library.run_cfn_diff(base_file, base_file)


def test_extra_sections_come_after_alarms_and_before_the_resource_lists(policy):
    section = "#### Source impact\n\n- `handler.py`: BackendApi\n"
    md = ds.summarize(load("base"), load("alarm_threshold"), policy=policy, extra_sections=[section])
    assert md.index("#### Alarms") < md.index("#### Source impact") < md.index("#### Modified (in place)")
    assert "- `handler.py`: BackendApi\n\n#### Modified" in md


def test_no_change(base, policy):
    diff = ds.diff_templates(base, copy.deepcopy(base), policy=policy, stack=STACK)
    assert not diff.has_changes and not diff.versions and not diff.iam and not diff.alarms
    md = diff_render.render_markdown(diff)
    assert "No changes." in md and "| Change |" not in md


def test_metadata_only_change_is_no_change(base):
    new = copy.deepcopy(base)
    for res in new["Resources"].values():
        res.setdefault("Metadata", {})["aws:cdk:path"] = "moved/elsewhere/Resource"
    assert not ds.diff_templates(base, new).has_changes


# ---------------------------------------------------------------------------------------------------------
# Stack policy evaluation and template values


@pytest.mark.parametrize(
    ("statements", "action", "lid", "rtype", "denied"),
    [
        (
            [{"Effect": "Allow", "Action": "Update:*", "Resource": "*"}],
            "Update:Delete",
            "A",
            "X::Y::Z",
            False,
        ),
        ([], "Update:Modify", "A", "X::Y::Z", True),  # nothing allowed: everything denied
        (
            [
                {"Effect": "Allow", "Action": "Update:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "Update:*", "Resource": "LogicalResourceId/Prod*"},
            ],
            "Update:Modify",
            "ProdDb",
            "X::Y::Z",
            True,
        ),
        (
            [
                {"Effect": "Allow", "Action": "Update:*", "Resource": "*"},
                {"Effect": "Deny", "Action": "Update:Replace", "NotResource": "LogicalResourceId/Keep"},
            ],
            "Update:Replace",
            "Keep",
            "X::Y::Z",
            False,
        ),
        (
            [
                {"Effect": "Allow", "Action": "Update:*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": "Update:Delete",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"ResourceType": ["AWS::Logs::LogGroup"]}},
                },
            ],
            "Update:Delete",
            "Any",
            "AWS::Logs::LogGroup",
            True,
        ),
        (
            [
                {"Effect": "Allow", "Action": "Update:*", "Resource": "*"},
                {
                    "Effect": "Deny",
                    "Action": "Update:Delete",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"ResourceType": ["AWS::Logs::LogGroup"]}},
                },
            ],
            "Update:Delete",
            "Any",
            "AWS::SQS::Queue",
            False,
        ),
        (
            [{"Effect": "Allow", "NotAction": "Update:Delete", "Resource": "*"}],
            "Update:Delete",
            "A",
            "X",
            True,
        ),
    ],
)
def test_policy_denies(statements, action, lid, rtype, denied):
    assert diff_values.policy_denies({"Statement": statements}, action, lid, rtype) is denied


def test_render_and_references():
    value = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":x:", {"Fn::GetAtt": ["Queue1", "Arn"]}]]}
    assert diff_values.render(value) == "arn:${AWS::Partition}:x:${Queue1.Arn}"
    assert diff_values.references(value) == {"Queue1"}
    assert diff_values.references(
        {"Fn::Sub": ["${Fn1.Arn}/${AWS::Region}/${Var}", {"Var": {"Ref": "Topic1"}}]}
    ) == {
        "Fn1",
        "Var",
        "Topic1",
    }
    assert diff_values.references({"Fn::GetAtt": "Role1.Arn"}) == {"Role1"}


# ---------------------------------------------------------------------------------------------------------
# CLI and files


def test_cli_prints_markdown(capsys):
    code = ds.main(
        [
            "--old",
            str(FIXTURES / "base.template.json"),
            "--new",
            str(FIXTURES / "api_replaced.template.json"),
            "--policy",
            str(FIXTURES / "stack-policy.json"),
            "--stack",
            STACK,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"### `{STACK}`") and diff_render.BLOCKED in out


def _asset_zip(folder: Path, key: str, info: dict[str, str]) -> None:
    with zipfile.ZipFile(folder / f"asset.{key}.zip", "w") as archive:
        archive.writestr("build_info.json", json.dumps(info))
        archive.writestr("handler.py", "")


def test_cli_reads_build_info_from_asset_zips(tmp_path, capsys):
    old_out, new_out = tmp_path / "old", tmp_path / "new"
    old_out.mkdir()
    new_out.mkdir()
    _asset_zip(old_out, OLD_ASSET, {"source_hash": "a", "requirements_hash": "r"})
    _asset_zip(new_out, NEW_ASSET, {"source_hash": "a", "requirements_hash": "r2"})
    code = ds.main(
        [
            "--old",
            str(FIXTURES / "base.template.json"),
            "--new",
            str(FIXTURES / "backend_source.template.json"),
            "--old-assets",
            str(old_out),
            "--new-assets",
            str(new_out),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("requirements changed (asset 3f1c9a0d → c4d5e6f7)") == 3
    assert "### `backend_source`" in out  # stack name from the file name


@pytest.mark.parametrize(
    ("content", "flag", "expected"),
    [
        (None, "--old", "old template {path}: file not found"),
        ("{not json", "--old", "old template {path}: not valid JSON (line 1, column 2"),
        ('{"version": "55.0.0"}', "--new", "new template {path}: no 'Resources' object"),
        (
            '{"Resources": {"A": {"Properties": {}}}}',
            "--new",
            "new template {path}: resource 'A' has no 'Type'",
        ),
        ('{"Statement": [{"Effect": "Maybe"}]}', "--policy", "stack policy {path}: expected"),
    ],
)
def test_cli_errors_name_the_file(tmp_path, capsys, content, flag, expected):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    args = {"--old": str(FIXTURES / "base.template.json"), "--new": str(FIXTURES / "base.template.json")}
    args[flag] = str(bad)
    argv = [x for pair in args.items() for x in pair]
    assert ds.main(argv) == 2
    err = capsys.readouterr().err
    assert expected.format(path=bad) in err


def test_cli_assets_folder_must_exist(tmp_path, capsys):
    base = str(FIXTURES / "base.template.json")
    assert ds.main(["--old", base, "--new", base, "--new-assets", str(tmp_path / "nope")]) == 2
    assert "assets folder" in capsys.readouterr().err
