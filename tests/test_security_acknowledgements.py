"""Security fit for health-care credentials, checked on the synthesized app (the committed cdk.json): every
cdk-nag acknowledgement and every checkov skip states a fact, and each fact is checked here against the
template or the configuration; acknowledgements stay few; checkov runs in `make synth` and finds nothing
unexplained. The rest of the security checks are in tests/test_security.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stacks import compliance as c
from stacks.config import NoTrigger, SqsTrigger
from stacks.constructs import guardrails, waf
from stacks.constructs.deploy_hooks import HOOK_RUNTIME
from stacks.policy_stack import PROVIDER_DLQ_REASON, PROVIDER_VPC_REASON
from tests.conftest import REPO_ROOT
from tests.security_templates import ENVS, _actions, _config, _of_type, _Resource, _tpl

# Acknowledged cdk-nag findings across all four stacks (two environments, backend + policy stack each).
# Was 188 before the environment key, the scoped logging policies and the WAF, 130 before the roles' grants
# moved to customer-managed policies, every version and stack ARN became exact, CodeDeploy's role lost the
# AWS managed policy and the catalog set reserved concurrency; 74 before one pre- and one post-traffic
# hook and one CodeDeploy role served the whole environment (two Lambdas fewer outside a VPC, three
# resource patterns more: the application's deployment groups and the stack's alarms, each with its fact).
# What remains per environment: no network (LambdaInsideVPC, 8 with the policy stack's provider), the proxy
# API without an authorizer in front (APIG2, APIG4, COG4: 13), X-Ray, the drift check's unscoped reads and
# the shared hooks' and CodeDeploy role's patterns (IAM5, 7), the backend's pinned runtime (L1, 3), the
# synchronous and SQS-redriven functions and the provider (LambdaDLQ, 3), and one each for the API's logs
# role, cache, SSL and WAF logging.
MAX_ACKNOWLEDGED = 76


# --- acknowledgements and skips: few, and every reason a checked fact -------------------------------------


def _suppressed(outdir: Path) -> list[tuple[str, str, str]]:
    """(rule, reason, construct path) of every acknowledged cdk-nag finding of the synth."""
    report = json.loads((outdir / "validation-report.json").read_text())
    return [
        (v["ruleName"], v["reason"], res["constructPath"])
        for plugin in report["pluginReports"]
        for v in plugin["suppressedViolations"]
        for res in v["violatingConstructs"]
    ]


def test_acknowledged_findings_stay_few_and_the_false_ones_are_gone(synthesized: dict[str, Any]) -> None:
    found = _suppressed(Path(synthesized["outdir"]))
    assert len(found) <= MAX_ACKNOWLEDGED, len(found)
    rules = {rule.split("[")[0] for rule, _r, _p in found}
    assert "HIPAA.Security-CloudWatchLogGroupEncrypted" not in rules
    # Fixed, not acknowledged: inline policies, concurrency, CodeDeploy's AWS managed policy, `ARN:*` and
    # `stack/NAME/*` resources.
    assert not rules & {"HIPAA.Security-IAMNoInlinePolicy", "HIPAA.Security-LambdaConcurrency"}, rules
    assert not [
        r for r, _w, _p in found if "AWSCodeDeployRoleForLambda" in r or ">:*]" in r or ":stack/" in r
    ]
    for env in ENVS:
        if _config(synthesized, env).security.waf.enabled:
            assert not [p for r, _w, p in found if r == "AwsSolutions-APIG3" and f"-{env}/" in p]


def _fact_no_network(r: _Resource) -> None:
    assert r.config.network is None
    assert "VpcConfig" not in r.props


def _fact_xray(r: _Resource) -> None:
    star = [s for s in r.role_statements() if s["Resource"] == "*"]
    assert star and all(
        set(_actions(s)) <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"} for s in star
    )


def _fact_no_reserved(r: _Resource) -> None:
    assert r.function_config().reserved_concurrency is None
    assert "ReservedConcurrentExecutions" not in r.props


def _fact_trigger(kind: type | str) -> Callable[[_Resource], None]:
    def check(r: _Resource) -> None:
        fn = r.function_config()
        if kind == "api":
            assert fn.is_api
        else:
            assert isinstance(fn.trigger, kind)  # type: ignore[arg-type]
        if kind is SqsTrigger:
            queue = _tpl_resource(r, f"{fn.name}Queue")
            assert "RedrivePolicy" in queue["Properties"]

    return check


def _tpl_resource(r: _Resource, prefix: str) -> dict[str, Any]:
    """The one SQS queue whose logical ID is `prefix` plus CDK's 8-character hash."""
    found = [
        v
        for k, v in _of_type(r.tpl, "AWS::SQS::Queue").items()
        if k.startswith(prefix) and len(k) == len(prefix) + 8
    ]
    assert len(found) == 1, prefix
    return found[0]


def _fact_trusts(service: str) -> Callable[[_Resource], None]:
    def check(r: _Resource) -> None:
        principals = [s["Principal"] for s in r.props["AssumeRolePolicyDocument"]["Statement"]]
        assert principals == [{"Service": service}], principals

    return check


def _fact_api_proxy(r: _Resource) -> None:
    methods = _of_type(r.tpl, "AWS::ApiGateway::Method").values()
    for m in methods:
        p = m["Properties"]
        if p["HttpMethod"] == "OPTIONS":
            assert p["Integration"]["Type"] == "MOCK"
            continue
        assert p["Integration"]["Type"] == "AWS_PROXY" and p["AuthorizationType"] == "NONE"
        assert "LiveAlias" in json.dumps(p["Integration"]["Uri"])


def _fact_no_cache(r: _Resource) -> None:
    stages = list(_of_type(r.tpl, "AWS::ApiGateway::Stage").values())
    assert stages and not any(s["Properties"].get("CacheClusterEnabled") for s in stages)


def _fact_waf_no_logs(r: _Resource) -> None:
    assert r.config.security.waf.log_destination_arn is None
    assert not _of_type(r.tpl, "AWS::WAFv2::LoggingConfiguration")


def _fact_no_waf(r: _Resource) -> None:
    assert not r.config.security.waf.enabled


def _fact_runtime(expected: Callable[[_Resource], str]) -> Callable[[_Resource], None]:
    def check(r: _Resource) -> None:
        assert r.props["Runtime"] == expected(r)

    return check


def _fact_unscoped_reads(r: _Resource) -> None:
    for s in r.role_statements():
        if s["Resource"] != "*":
            continue
        for a in _actions(s):
            if a == "cloudwatch:PutMetricData":
                assert "cloudwatch:namespace" in json.dumps(s["Condition"])
            else:
                assert a.split(":")[1].startswith(("Describe", "Get", "List", "GET")), a


def _fact_hook_deployments(r: _Resource) -> None:
    statements = r.role_statements()
    scoped = [s for s in statements if any(a.startswith("codedeploy:") for a in _actions(s))]
    (deployments,) = scoped
    (application,) = _of_type(r.tpl, "AWS::CodeDeploy::Application")
    assert application in json.dumps(deployments["Resource"]) and ":deploymentgroup:" in json.dumps(
        deployments["Resource"]
    )
    # What the hooks invoke is exact: versions only (each stack's DeploymentGrants).
    versions = set(_of_type(r.tpl, "AWS::Lambda::Version"))
    (role,) = r.props["Roles"]
    invoke = [
        s
        for p in _of_type(r.tpl, "AWS::IAM::ManagedPolicy").values()
        if role in p["Properties"].get("Roles", [])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "lambda:InvokeFunction" in _actions(s)
    ]
    assert invoke and all(
        isinstance(x, dict) and x.get("Ref") in versions
        for s in invoke
        for x in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    )


def _fact_stack_alarms(r: _Resource) -> None:
    wildcard = [s for s in r.role_statements() if "*" in json.dumps(s["Resource"])]
    (describe,) = wildcard
    assert _actions(describe) == ["cloudwatch:DescribeAlarms"]
    assert ":alarm:" in json.dumps(describe["Resource"]) and "AWS::StackName" in json.dumps(
        describe["Resource"]
    )


def _fact_provider(r: _Resource) -> None:
    customs = [v for v in r.tpl["Resources"].values() if v["Type"].startswith("Custom::")]
    assert len(customs) == 1
    assert customs[0]["Properties"]["ServiceToken"] == {"Fn::GetAtt": [r.logical_id, "Arn"]}


def _fact_provider_role(r: _Resource) -> None:
    actions = sorted(a for s in r.role_statements() for a in _actions(s))
    assert actions == ["cloudformation:SetStackPolicy", "logs:CreateLogStream", "logs:PutLogEvents"]


FACTS: dict[str, Callable[[_Resource], None]] = {
    c.NO_NETWORK_REASON: _fact_no_network,
    c.XRAY_REASON: _fact_xray,
    c.NO_RESERVED_REASON: _fact_no_reserved,
    c.API_SYNC_REASON: _fact_trigger("api"),
    c.SQS_REDRIVE_REASON: _fact_trigger(SqsTrigger),
    c.NO_TRIGGER_REASON: _fact_trigger(NoTrigger),
    c.APIGW_LOGS_POLICY_REASON: _fact_trusts("apigateway.amazonaws.com"),
    c.PROXY_REASON: _fact_api_proxy,
    c.NO_HTTP_BACKEND_REASON: _fact_api_proxy,
    c.NO_CACHE_REASON: _fact_no_cache,
    c.WAF_NO_LOGS_REASON: _fact_waf_no_logs,
    waf.NO_LOG_DESTINATION_REASON: _fact_waf_no_logs,
    c.NO_WAF_REASON: _fact_no_waf,
    guardrails.UNSCOPED_READS_REASON: _fact_unscoped_reads,
    c.HOOK_DEPLOYMENTS_REASON: _fact_hook_deployments,
    c.STACK_ALARMS_REASON: _fact_stack_alarms,
    PROVIDER_DLQ_REASON: _fact_provider,
    PROVIDER_VPC_REASON: _fact_provider_role,
}


def _runtime_fact(reason: str) -> Callable[[_Resource], None] | None:
    if reason.startswith("hooks run "):
        return _fact_runtime(lambda _r: HOOK_RUNTIME.name)
    if reason.startswith("runtime ") and "pinned in cdk.json" in reason:
        return _fact_runtime(lambda r: r.config.function.runtime)
    return None


def _resource_at(synthesized: dict[str, Any], construct_path: str) -> _Resource:
    """The template resource of a construct path (the in-process synth writes no aws:cdk:path metadata)."""
    stack_name, *parts = construct_path.split("/")
    env = stack_name.removeprefix("credmate-backend-").removesuffix("-policy")
    stack = (synthesized["policies"] if stack_name.endswith("-policy") else synthesized["stacks"])[env]
    node = stack
    for part in parts:
        node = node.node.find_child(part)
    return _Resource(synthesized, stack_name, stack.resolve(node.logical_id))


def test_every_acknowledgement_states_a_fact_that_holds(synthesized: dict[str, Any]) -> None:
    found = _suppressed(Path(synthesized["outdir"]))
    assert found
    for rule, reason, path in found:
        fact = FACTS.get(reason) or _runtime_fact(reason)
        assert fact is not None, f"{rule} on {path}: reason {reason!r} states no fact this test checks"
        try:
            fact(_resource_at(synthesized, path))
        except AssertionError as exc:
            raise AssertionError(f"{rule} on {path}: {reason!r} is not true: {exc}") from exc


def test_every_checkov_skip_states_a_fact_that_holds(synthesized: dict[str, Any]) -> None:
    skips = 0
    for env in ENVS:
        for name in (f"credmate-backend-{env}", f"credmate-backend-{env}-policy"):
            for lid, res in _tpl(synthesized, name)["Resources"].items():
                for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
                    fact = FACTS.get(skip["comment"])
                    assert fact is not None, (
                        f"{name} {lid} {skip['id']}: {skip['comment']!r} is no checked fact"
                    )
                    fact(_Resource(synthesized, name, lid))
                    skips += 1
    assert skips > 0


@pytest.mark.parametrize(
    "fact",
    [_fact_no_network, _fact_no_reserved],
)
def test_the_fact_checks_fail_when_the_fact_is_false(synthesized: dict[str, Any], fact: Any) -> None:
    """The checkers are not vacuous: on a function with a network or a reserved concurrency they fail."""
    import dataclasses

    r = _resource_at(synthesized, "credmate-backend-prod/Worker/Function/Resource")
    if fact is _fact_no_network:
        from stacks.config import NetworkSettings

        r.config = dataclasses.replace(
            r.config,
            network=NetworkSettings(
                vpc_id="vpc-0123456789abcdef0",
                subnet_ids=("subnet-0123456789abcdef0",),
                security_group_ids=("sg-0123456789abcdef0",),
                availability_zones=("eu-west-1a",),
            ),
        )
    else:
        r.props = {**r.props, "ReservedConcurrentExecutions": 5}
    with pytest.raises(AssertionError):
        fact(r)


# --- checkov in make synth --------------------------------------------------------------------------------


def test_checkov_finds_nothing_unexplained_in_the_synthesized_templates(synthesized: dict[str, Any]) -> None:
    """The real, pinned checkov (scripts/checkov_gate) on the four templates of the committed cdk.json."""

    from scripts.checkov_gate import gate as checkov_gate

    assert checkov_gate.main(["--dir", str(synthesized["outdir"])]) == 0


def test_make_synth_runs_the_checkov_gate() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = makefile.split("\nsynth:", 1)[1].split("\n\n", 1)[0]
    assert "-m scripts.checkov_gate --dir cdk.out" in recipe
