"""scripts.diagram on a small hand-written tree.json (no synth, no CDK): what the model finds, that the SVG
is deterministic, valid and free of overlaps, and the command line's exit codes. One test reads the real
cdk.out/tree.json when a synth left one there."""

from __future__ import annotations

import copy
import itertools
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from scripts.diagram.build import build_model
from scripts.diagram.cli import DEFAULT_STACK, load_tree, main
from scripts.diagram.layout import PAD_X, TEXT_SIZE, TITLE_SIZE, _text_width, layout
from scripts.diagram.model import Model
from scripts.diagram.render import render_svg

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK = "shop-prod"
LAMBDA_FQN = "aws-cdk-lib.aws_lambda.Function"


# ------------------------------------------------------------------------------------------ tree builders


def node(fqn: str = "constructs.Construct", /, **children: dict[str, Any]) -> dict[str, Any]:
    """A construct; children get their id from the keyword (ids with odd characters: pass **{"a:b": ...})."""
    result: dict[str, Any] = {"constructInfo": {"fqn": fqn, "version": "2.0.0"}}
    if children:
        result["children"] = {cid: {**child, "id": cid} for cid, child in children.items()}
    return result


def l1(cfn_type: str, logical_id: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CloudFormation resource as the tree records it (type, logical ID, synthesized properties)."""
    return {
        "constructInfo": {"fqn": "aws-cdk-lib.CfnResource", "version": "2.0.0"},
        "attributes": {
            "aws:cdk:cloudformation:type": cfn_type,
            "aws:cdk:cloudformation:logicalId": logical_id,
            "aws:cdk:cloudformation:props": props or {},
        },
    }


def l2(
    fqn: str, cfn_type: str, logical_id: str, props: dict[str, Any] | None = None, /, **extra: Any
) -> dict[str, Any]:
    return node(fqn, Resource=l1(cfn_type, logical_id, props), **extra)


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def arn(logical_id: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def function(fn_id: str, **props: Any) -> dict[str, Any]:
    return l2(
        LAMBDA_FQN, "AWS::Lambda::Function", fn_id, {"runtime": "python3.11", "memorySize": 512, **props}
    )


def guarded(fn_id: str, alias_id: str, alias_name: str = "live", /, **alias_children: Any) -> dict[str, Any]:
    """A function with its alias, the way stacks/constructs/guarded_function.py builds one."""
    alias_props = {"functionName": ref(fn_id), "name": alias_name}
    return node(
        Function=function(fn_id),
        LiveAlias=l2(
            "aws-cdk-lib.aws_lambda.Alias", "AWS::Lambda::Alias", alias_id, alias_props, **alias_children
        ),
    )


def alarm(logical_id: str, *refs: str, topic: str = "OnCallTopicAAAA1111") -> dict[str, Any]:
    dims = [{"name": "FunctionName", "value": ref(r)} for r in refs]
    props = {"alarmActions": [ref(topic)], "metrics": [{"metricStat": {"metric": {"dimensions": dims}}}]}
    return l2("aws-cdk-lib.aws_cloudwatch.Alarm", "AWS::CloudWatch::Alarm", logical_id, props)


def canary(group_id: str, rollback: list[str], hooks: dict[str, tuple[str, list[str]]]) -> dict[str, Any]:
    """A deployment group whose service role may invoke its hooks (that is how the tree names them)."""
    policy = {"policyDocument": {"Statement": [{"Resource": [arn(h) for h, _ in hooks.values()]}]}}
    group_props = {
        "deploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
        "alarmConfiguration": {"alarms": [{"name": ref(a)} for a in rollback], "enabled": True},
    }
    role = node(DefaultPolicy=node(Resource=l1("AWS::IAM::Policy", f"{group_id}Policy", policy)))
    group = l2(
        "aws-cdk-lib.aws_codedeploy.LambdaDeploymentGroup",
        "AWS::CodeDeploy::DeploymentGroup",
        group_id,
        group_props,
        ServiceRole=role,
    )
    hook_nodes = {
        name: function(
            hook_id, environment={"variables": {f"TARGET_{i}": ref(t) for i, t in enumerate(targets)}}
        )
        for name, (hook_id, targets) in hooks.items()
    }
    return node(DeploymentGroup=group, **hook_nodes)


def stack_tree() -> dict[str, Any]:
    """GIVEN a stack shaped like credmate's: an API in front of Front, a queue (with a DLQ) feeding Worker, a
    schedule running Nightly; canaries for Front (pre + post hooks) and Worker (pre hook); alarms; two topics;
    an out-of-band change rule and a scheduled drift check. Logical IDs carry hash-like suffixes."""
    topic_props = {"displayName": "alerts"}
    on_call = node(
        Topic=l2(
            "aws-cdk-lib.aws_sns.Topic",
            "AWS::SNS::Topic",
            "OnCallTopicAAAA1111",
            topic_props,
            **{
                "oncall@example.com": node(
                    Resource=l1(
                        "AWS::SNS::Subscription",
                        "OnCallSubBBBB2222",
                        {"protocol": "email", "topicArn": ref("OnCallTopicAAAA1111")},
                    )
                )
            },
        ),
        PagingTopic=l2("aws-cdk-lib.aws_sns.Topic", "AWS::SNS::Topic", "OnCallPagingCCCC3333"),
    )
    mapping = l1(
        "AWS::Lambda::EventSourceMapping",
        "WorkerMappingDDDD4444",
        {"functionName": ref("WorkerAliasEEEE5555"), "eventSourceArn": arn("JobsQueueFFFF6666")},
    )
    api = node(
        "aws-cdk-lib.aws_apigateway.LambdaRestApi",
        Resource=l1("AWS::ApiGateway::RestApi", "ApiRest1234ABCD"),
        Default=node(
            ANY=node(
                Resource=l1(
                    "AWS::ApiGateway::Method",
                    "ApiAnyMethod9999AAAA",
                    {
                        "restApiId": ref("ApiRest1234ABCD"),
                        "integration": {
                            "uri": {"Fn::Join": ["", ["arn:", ref("FrontAlias5678EFAB"), "/invocations"]]}
                        },
                    },
                )
            )
        ),
    )
    stack = node(
        "aws-cdk-lib.Stack",
        OnCall=on_call,
        JobsDeadLetters=l2("aws-cdk-lib.aws_sqs.Queue", "AWS::SQS::Queue", "JobsDlq0000BBBB"),
        JobsQueue=l2(
            "aws-cdk-lib.aws_sqs.Queue",
            "AWS::SQS::Queue",
            "JobsQueueFFFF6666",
            {"redrivePolicy": {"deadLetterTargetArn": arn("JobsDlq0000BBBB"), "maxReceiveCount": 5}},
        ),
        Front=guarded("FrontFunction0A1B2C3D", "FrontAlias5678EFAB"),
        Worker=guarded(
            "WorkerFunction4E5F6A7B",
            "WorkerAliasEEEE5555",
            **{"SqsEventSource:shopJobs": node(Resource=mapping)},
        ),
        Nightly=guarded("NightlyFunction8C9D0E1F", "NightlyAlias2A3B4C5D", "prod"),
        NightlySchedule=l2(
            "aws-cdk-lib.aws_events.Rule",
            "AWS::Events::Rule",
            "NightlyRule6E7F8A9B",
            {"scheduleExpression": "cron(0 3 * * ? *)", "targets": [{"arn": ref("NightlyAlias2A3B4C5D")}]},
        ),
        Api=api,
        FrontAlarms=node(
            Errors=alarm("FrontErrors1111AAAA", "FrontFunction0A1B2C3D"),
            Latency=alarm("FrontLatency2222BBBB", "FrontFunction0A1B2C3D"),
        ),
        WorkerAlarms=node(
            Errors=alarm("WorkerErrors3333CCCC", "WorkerFunction4E5F6A7B"),
            DlqDepth=alarm("WorkerDlqDepth4444DDDD", "JobsDlq0000BBBB"),
        ),
        Health=node(
            Unhealthy=l2(
                "aws-cdk-lib.aws_cloudwatch.CompositeAlarm",
                "AWS::CloudWatch::CompositeAlarm",
                "HealthUnhealthy5555EEEE",
                {
                    "alarmActions": [ref("OnCallPagingCCCC3333")],
                    "alarmRule": {
                        "Fn::Join": [
                            "",
                            [
                                "ALARM(",
                                arn("FrontErrors1111AAAA"),
                                ") OR ALARM(",
                                arn("WorkerErrors3333CCCC"),
                                ")",
                            ],
                        ]
                    },
                },
            )
        ),
        FrontCanary=canary(
            "FrontGroup6666FFFF",
            ["FrontErrors1111AAAA"],
            {
                "PreTrafficHook": ("FrontPreHook7777AAAA", ["FrontFunction0A1B2C3D"]),
                "PostTrafficHook": ("FrontPostHook8888BBBB", ["ApiRest1234ABCD"]),
            },
        ),
        WorkerCanary=canary(
            "WorkerGroup9999CCCC",
            ["WorkerErrors3333CCCC"],
            {
                "PreTrafficHook": ("WorkerPreHook0000DDDD", ["WorkerFunction4E5F6A7B"]),
            },
        ),
        OutOfBandChangeAlert=node(
            Rule=l2(
                "aws-cdk-lib.aws_events.Rule",
                "AWS::Events::Rule",
                "OobRule1212ABAB",
                {
                    "eventPattern": {
                        "source": ["aws.lambda"],
                        "detail": {
                            "requestParameters": {
                                "functionName": [ref("FrontFunction0A1B2C3D"), ref("WorkerFunction4E5F6A7B")]
                            }
                        },
                    },
                    "targets": [{"arn": ref("OnCallTopicAAAA1111")}],
                },
            )
        ),
        DriftCheck=node(
            Function=function(
                "DriftFunction3434CDCD", environment={"variables": {"F": ref("FrontFunction0A1B2C3D")}}
            ),
            Schedule=l2(
                "aws-cdk-lib.aws_events.Rule",
                "AWS::Events::Rule",
                "DriftSchedule5656EFEF",
                {"scheduleExpression": "rate(1 hour)", "targets": [{"arn": arn("DriftFunction3434CDCD")}]},
            ),
            Failing=alarm("DriftFailing7878ABAB", "DriftFunction3434CDCD"),
        ),
    )
    return {
        "version": "tree-0.1",
        "tree": node(
            "aws-cdk-lib.App", **{STACK: stack, "shop-staging": node("aws-cdk-lib.Stack"), "Tree": node()}
        ),
    }


def stack_children(tree: dict[str, Any]) -> dict[str, Any]:
    children: dict[str, Any] = tree["tree"]["children"][STACK]["children"]
    return children


def with_custom_domain(tree: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    stack_children(tree)["Domain"] = {
        **node(
            Resource=l1("AWS::ApiGateway::DomainName", "DomainAAAA0000", {"domainName": "api.example.com"}),
            Map=node(
                Resource=l1(
                    "AWS::ApiGateway::BasePathMapping",
                    "DomainMapBBBB1111",
                    {"domainName": ref("DomainAAAA0000"), "restApiId": ref("ApiRest1234ABCD")},
                )
            ),
        ),
        "id": "Domain",
    }
    return tree


@pytest.fixture
def tree() -> dict[str, Any]:
    return stack_tree()


@pytest.fixture
def model(tree: dict[str, Any]) -> Model:
    return build_model(tree, STACK)


def edges(model: Model, kind: str) -> set[tuple[str, str, str]]:
    return {(e.source, e.target, e.label) for e in model.edges if e.kind == kind}


# ------------------------------------------------------------------------------------------------ model


def test_functions_are_the_aliased_lambdas_request_path_first(model: Model) -> None:
    # THEN only functions with an alias count (hooks and the drift check do not), API-fed first, then queue,
    # then schedule; each named by the construct that holds function and alias
    assert [(f.name, f.alias, f.runtime, f.memory_mb) for f in model.functions] == [
        ("Front", "live", "python3.11", 512),
        ("Worker", "live", "python3.11", 512),
        ("Nightly", "prod", "python3.11", 512),
    ]


def test_sources_point_at_the_alias_and_the_queue_at_its_dead_letter_queue(model: Model) -> None:
    assert edges(model, "invokes") >= {
        ("Api", "Front/Function", "live"),
        ("JobsQueue", "Worker/Function", "live"),
        ("NightlySchedule", "Nightly/Function", "prod"),
    }
    assert edges(model, "redrive") == {("JobsQueue", "JobsDeadLetters", "after 5 receives")}
    kinds = {s.key: (s.kind, s.detail) for s in model.sources}
    assert kinds["Api"] == ("api", "API Gateway REST API")
    assert kinds["JobsQueue"] == ("queue", "SQS queue")
    assert kinds["JobsDeadLetters"] == ("dead-letter queue", "SQS dead-letter queue")
    assert kinds["NightlySchedule"] == ("schedule", "EventBridge cron(0 3 * * ? *)")


def test_each_deployment_group_has_its_function_and_hooks(model: Model) -> None:
    hooks = {d.function: [(h.stage, h.name) for h in d.hooks] for d in model.deployments}
    # THEN Front has both hooks, Worker only a pre-traffic hook, Nightly (no canary in the tree) nothing
    assert hooks == {
        "Front/Function": [("pre-traffic", "PreTrafficHook"), ("post-traffic", "PostTrafficHook")],
        "Worker/Function": [("pre-traffic", "PreTrafficHook")],
    }
    assert {d.config for d in model.deployments} == {"LambdaCanary10Percent5Minutes"}
    assert edges(model, "deploys") == {
        ("FrontCanary/DeploymentGroup", "Front/Function", "shifts live"),
        ("WorkerCanary/DeploymentGroup", "Worker/Function", "shifts live"),
    }
    assert edges(model, "rollback") == {
        ("FrontCanary/DeploymentGroup", "FrontAlarms", "rollback on 1"),
        ("WorkerCanary/DeploymentGroup", "WorkerAlarms", "rollback on 1"),
    }


def test_a_group_without_references_falls_back_to_the_name_convention(tree: dict[str, Any]) -> None:
    # GIVEN a canary for Nightly whose group names no alarm and has no hook
    stack_children(tree)["NightlyCanary"] = {**canary("NightlyGroupABAB1212", [], {}), "id": "NightlyCanary"}
    # WHEN the model is built
    model = build_model(tree, STACK)
    # THEN `<Name>Canary` belongs to `<Name>`
    assert ("NightlyCanary/DeploymentGroup", "Nightly/Function", "shifts prod") in edges(model, "deploys")


def test_alarms_are_grouped_per_owner_construct_and_point_to_their_topics(model: Model) -> None:
    groups = {g.key: g for g in model.alarm_groups}
    assert [g.label for g in model.alarm_groups] == [
        "DriftCheck: 1 alarm",
        "FrontAlarms: 2 alarms",
        "Health: 1 composite alarm",
        "WorkerAlarms: 2 alarms",
    ]
    assert groups["Health"].composite_inputs == 2
    # THEN each group sits with the function (or check) its alarms watch; a composite watches none
    assert {k: g.subject for k, g in groups.items()} == {
        "DriftCheck": "DriftCheck/Function",
        "FrontAlarms": "Front/Function",
        "Health": None,
        "WorkerAlarms": "Worker/Function",
    }
    assert edges(model, "notifies") == {
        ("DriftCheck", "OnCall/Topic", ""),
        ("FrontAlarms", "OnCall/Topic", ""),
        ("WorkerAlarms", "OnCall/Topic", ""),
        ("Health", "OnCall/PagingTopic", ""),
        ("OutOfBandChangeAlert/Rule", "OnCall/Topic", ""),
    }


def test_topics_with_their_subscribers(model: Model) -> None:
    assert [(t.key, t.subscribers) for t in model.topics] == [
        ("OnCall/PagingTopic", ()),
        ("OnCall/Topic", ("email",)),
    ]


def test_guardrails_are_found(model: Model) -> None:
    assert [(w.key, w.sources, w.watches, w.topics) for w in model.watchers] == [
        ("OutOfBandChangeAlert/Rule", ("aws.lambda",), ("Front", "Worker"), ("OnCall/Topic",))
    ]
    assert [(c.key, c.watches) for c in model.checks] == [("DriftCheck/Function", ("Front",))]
    assert ("DriftCheck/Schedule", "DriftCheck/Function", "") in edges(model, "invokes")


def test_what_the_tree_lacks_is_not_drawn(tree: dict[str, Any]) -> None:
    # GIVEN a stack without guardrails, dead-letter queue or custom domain
    for key in ("OutOfBandChangeAlert", "DriftCheck", "JobsDeadLetters"):
        del stack_children(tree)[key]
    # WHEN it is modelled and drawn
    model = build_model(tree, STACK)
    svg = render_svg(model)
    # THEN none of them appears, and neither does their section or column
    assert not model.watchers and not model.checks
    assert not edges(model, "redrive") and not any(s.kind == "domain" for s in model.sources)
    for text in (
        "OutOfBandChangeAlert",
        "DriftCheck",
        "JobsDeadLetters",
        "Scheduled checks",
        "Custom domain",
    ):
        assert text not in svg


def test_custom_domain_is_drawn_only_when_present(tree: dict[str, Any]) -> None:
    without = build_model(tree, STACK)
    assert not [s for s in without.sources if s.kind == "domain"]
    # GIVEN the same stack with an API Gateway domain name mapped to the API
    model = build_model(with_custom_domain(tree), STACK)
    # THEN the domain stands in front of the API
    assert [(s.key, s.detail) for s in model.sources if s.kind == "domain"] == [("Domain", "api.example.com")]
    assert edges(model, "routes") == {("Domain", "Api", "/")}
    svg = render_svg(model)
    assert "api.example.com" in svg and "Custom domain" in svg


@pytest.mark.synth
def test_the_real_tree_and_the_committed_picture(synthesized: dict[str, Any]) -> None:
    path = Path(synthesized["outdir"]) / "tree.json"
    # The README's picture must be the one this commit's app draws: `make diagram` regenerates it.
    assert main(["--tree", str(path), "--check"]) == 0, "docs/architecture.svg is stale: make diagram"
    model = build_model(load_tree(path), DEFAULT_STACK)
    names = {f.name for f in model.functions}
    assert {"BackendApi", "Worker", "CampaignScheduler"} <= names
    hooks = {d.function: {h.stage for h in d.hooks} for d in model.deployments}
    key = {f.name: f.key for f in model.functions}
    assert {"pre-traffic", "post-traffic"} <= hooks[key["BackendApi"]]
    assert "pre-traffic" in hooks[key["Worker"]] and "pre-traffic" in hooks[key["CampaignScheduler"]]
    assert {s.kind for s in model.sources} >= {"api", "queue", "dead-letter queue", "schedule"}
    assert any(g.topics for g in model.alarm_groups) and model.topics
    assert_no_overlaps(model)


# ----------------------------------------------------------------------------------------------- render


def assert_no_overlaps(model: Model) -> None:
    placed = list(layout(model).boxes.values())
    for a, b in itertools.combinations(placed, 2):
        apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
        assert apart, f"{a.box.key} overlaps {b.box.key}"
    for p in placed:
        for line in p.box.lines:
            size = TITLE_SIZE if line.bold else TEXT_SIZE
            assert _text_width(line.text, size, line.bold) <= p.w - 2 * PAD_X, line.text


def test_svg_is_deterministic_valid_and_shows_no_logical_ids(tree: dict[str, Any]) -> None:
    first = render_svg(build_model(tree, STACK))
    # WHEN the same tree is read again with its children in another order
    shuffled = json.loads(json.dumps(tree, sort_keys=True))
    shuffled["tree"]["children"][STACK]["children"] = dict(reversed(stack_children(shuffled).items()))
    second = render_svg(build_model(shuffled, STACK))
    # THEN the bytes are the same, the XML parses, and labels are construct paths, never hashed logical IDs
    assert first == second
    root = ET.fromstring(first)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.findall(".//{http://www.w3.org/2000/svg}marker")
    for logical_id in ("FrontFunction0A1B2C3D", "ApiRest1234ABCD", "OnCallTopicAAAA1111"):
        assert logical_id not in first
    for text in ("FrontAlarms", "2 alarms", "pre-traffic: PreTrafficHook", "post-traffic: PostTrafficHook"):
        assert text in first


def test_boxes_do_not_overlap(tree: dict[str, Any]) -> None:
    assert_no_overlaps(build_model(with_custom_domain(tree), STACK))


def test_text_is_escaped(tree: dict[str, Any]) -> None:
    tree = with_custom_domain(tree)
    domain = stack_children(tree)["Domain"]["children"]["Resource"]["attributes"]
    domain["aws:cdk:cloudformation:props"]["domainName"] = "a<b>&c.example.com"
    svg = render_svg(build_model(tree, STACK))
    ET.fromstring(svg)
    assert "a&lt;b&gt;&amp;c.example.com" in svg


# -------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def tree_file(tmp_path: Path, tree: dict[str, Any]) -> Path:
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree))
    return path


def test_writes_the_svg_and_check_passes_on_a_fresh_file(tree_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "architecture.svg"
    assert main(["--tree", str(tree_file), "--stack", STACK, "--out", str(out)]) == 0
    assert out.read_text().startswith("<svg ")
    assert main(["--tree", str(tree_file), "--stack", STACK, "--out", str(out), "--check"]) == 0


def test_check_fails_on_a_stale_or_missing_file(
    tree_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "architecture.svg"
    assert main(["--tree", str(tree_file), "--stack", STACK, "--out", str(out), "--check"]) == 1
    out.write_text("<svg/>\n")
    assert main(["--tree", str(tree_file), "--stack", STACK, "--out", str(out), "--check"]) == 1
    assert f"{out} is stale: run make diagram" in capsys.readouterr().err
    assert out.read_text() == "<svg/>\n"  # --check never writes


def test_check_names_the_default_file_relative_to_the_repo(
    tree_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The committed picture is of the real app, never of this fixture: stale, and not rewritten by --check.
    assert main(["--tree", str(tree_file), "--stack", STACK, "--check"]) == 1
    assert "docs/architecture.svg is stale: run make diagram" in capsys.readouterr().err


def test_unknown_stack_exits_2_listing_the_stacks(
    tree_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--tree", str(tree_file), "--stack", "shop-dev", "--out", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert str(tree_file) in err
    assert "stack 'shop-dev' is not in the tree; stacks found: shop-prod, shop-staging" in err


def test_missing_or_invalid_tree_exits_2_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a working directory elsewhere: relative paths still resolve from the repository root
    monkeypatch.chdir(tmp_path)
    assert main(["--tree", "cdk.out/no-such-tree.json"]) == 2
    assert "cdk.out/no-such-tree.json not found: run make synth first" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["--tree", str(bad)]) == 2
    assert f"{bad} is not valid JSON" in capsys.readouterr().err
    bad.write_text('{"version": "tree-0.1"}')
    assert main(["--tree", str(bad)]) == 2
    assert f"{bad} is not a CDK tree.json" in capsys.readouterr().err


def test_a_stack_with_nothing_to_draw_still_renders(tree: dict[str, Any]) -> None:
    # GIVEN a stack with none of the things the picture shows
    model = build_model(tree, "shop-staging")
    # THEN the SVG says so instead of failing
    svg = render_svg(model)
    ET.fromstring(svg)
    assert "Nothing to draw" in svg


def test_an_arrow_is_labelled_with_the_alias_only_when_it_targets_the_alias(tree: dict[str, Any]) -> None:
    # GIVEN the schedule targets Nightly's function itself, not its alias
    rule = stack_children(tree)["NightlySchedule"]["children"]["Resource"]["attributes"]
    rule["aws:cdk:cloudformation:props"]["targets"] = [{"arn": arn("NightlyFunction8C9D0E1F")}]
    # THEN the arrow still reaches Nightly, but does not claim to go through the alias
    model = build_model(tree, STACK)
    assert ("NightlySchedule", "Nightly/Function", "") in edges(model, "invokes")
