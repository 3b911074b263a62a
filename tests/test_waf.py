"""Abuse limits on the API: stage and per-route throttling (throttling.py) and the web ACL (waf.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

LOGIN = "/api/v1/auth/login"
STAGE = "v1"


def _api_stack(**waf_kwargs: Any) -> tuple[Any, Any, Any]:
    """A proxying LambdaRestApi like the backend's, throttled, with routes for the limited methods."""
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw
    from aws_cdk import aws_lambda as lambda_

    from stacks.config import MethodLimit
    from stacks.constructs.throttling import ThrottleSettings, route_throttled_methods

    app = cdk.App()
    stack = cdk.Stack(app, "api", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    fn = lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_11,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )
    throttle = ThrottleSettings(
        rate_limit=50,
        burst_limit=100,
        method_limits=(
            MethodLimit(LOGIN, "POST", rate_limit=2, burst_limit=5),
            MethodLimit("/api/v1/auth/reset", "POST", rate_limit=1, burst_limit=2),
        ),
    )
    api = apigw.LambdaRestApi(
        stack,
        "Api",
        handler=fn,
        proxy=True,
        deploy_options=apigw.StageOptions(stage_name=STAGE, **throttle.stage_options_kwargs()),
    )
    route_throttled_methods(api, fn, throttle)
    return app, stack, api


@pytest.fixture(scope="module")
def firewalled() -> dict[str, Any]:
    from aws_cdk import aws_sns as sns

    from stacks.constructs.waf import ApiFirewall

    _, stack, api = _api_stack()
    topic = sns.Topic(stack, "Alerts")
    firewall = ApiFirewall(
        stack,
        "Firewall",
        stage=api.deployment_stage,
        login_paths=(LOGIN,),
        rate_limit_per_5min=100,
        topic=topic,
        count_only_rules=("SizeRestrictions_BODY",),
        log_destination_arn="arn:aws:logs:eu-west-1:123456789012:log-group:aws-waf-logs-api",
    )
    tpl = Template.from_stack(stack)
    return {
        "template": tpl,
        "json": tpl.to_json(),
        "stack": stack,
        "acl_id": stack.get_logical_id(firewall.web_acl),
        "stage_id": stack.get_logical_id(api.deployment_stage.node.default_child),
        "api_id": stack.get_logical_id(api.node.default_child),
        "topic_id": stack.get_logical_id(topic.node.default_child),
    }


# ---- throttling ------------------------------------------------------------------------------------------


def test_stage_and_login_method_are_throttled(firewalled: dict[str, Any]) -> None:
    (stage,) = firewalled["template"].find_resources("AWS::ApiGateway::Stage").values()
    settings = {(s["ResourcePath"], s["HttpMethod"]): s for s in stage["Properties"]["MethodSettings"]}
    # The stage-wide limit is API Gateway's "/*/*" setting; the login route has its own, stricter one.
    assert settings[("/*", "*")]["ThrottlingRateLimit"] == 50
    assert settings[("/*", "*")]["ThrottlingBurstLimit"] == 100
    login = settings[("/~1api~1v1~1auth~1login", "POST")]
    assert (login["ThrottlingRateLimit"], login["ThrottlingBurstLimit"]) == (2, 5)
    reset = settings[("/~1api~1v1~1auth~1reset", "POST")]
    assert (reset["ThrottlingRateLimit"], reset["ThrottlingBurstLimit"]) == (1, 2)


def test_throttled_routes_exist_beside_the_proxy(firewalled: dict[str, Any]) -> None:
    tpl: Template = firewalled["template"]
    resources = tpl.find_resources("AWS::ApiGateway::Resource")
    parts = sorted(r["Properties"]["PathPart"] for r in resources.values())
    # api, v1, auth shared by both routes; login and reset each; {proxy+} at the root and below each
    # resource on the way (API Gateway does not fall back to the root's proxy) still serves everything else
    assert parts == sorted(
        ["{proxy+}", "api", "{proxy+}", "v1", "{proxy+}", "auth", "{proxy+}", "login", "reset"]
    )
    (login_id,) = [lid for lid, r in resources.items() if r["Properties"]["PathPart"] == "login"]
    tpl.has_resource_properties(
        "AWS::ApiGateway::Method",
        {
            "HttpMethod": "POST",
            "ResourceId": {"Ref": login_id},
            "Integration": {"Type": "AWS_PROXY"},
        },
    )


def test_a_route_limit_naming_no_method_fails_synth() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw
    from aws_cdk import aws_lambda as lambda_

    from stacks.config import MethodLimit
    from stacks.constructs.throttling import ThrottleSettings, route_throttled_methods

    stack = cdk.Stack(cdk.App(), "mismatch")
    fn = lambda_.Function(
        stack,
        "Fn",
        runtime=lambda_.Runtime.PYTHON_3_11,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )
    stage_settings = ThrottleSettings(
        rate_limit=10, burst_limit=10, method_limits=(MethodLimit(LOGIN, "POST", 1, 1),)
    )
    api = apigw.LambdaRestApi(
        stack, "Api", handler=fn, deploy_options=apigw.StageOptions(**stage_settings.stage_options_kwargs())
    )
    # The routes made from other settings than the stage's: the login limit would name no method.
    route_throttled_methods(api, fn, ThrottleSettings(rate_limit=10, burst_limit=10))
    with pytest.raises(Exception, match=r"throttles POST /api/v1/auth/login, which the API does not define"):
        Template.from_stack(stack)


@pytest.mark.parametrize(
    ("throttle", "key", "allowed"),
    [
        ({"rate_limit": 0}, "security.throttle.rate_limit", "a number of requests per second above 0"),
        ({"burst_limit": 2.5}, "security.throttle.burst_limit", "an integer from 1 to 5000"),
        (
            {"method_limits": [{"path": "/api/{id}", "method": "POST", "rate_limit": 1, "burst_limit": 1}]},
            "security.throttle.method_limits[0].path",
            "a literal path",
        ),
        (
            {"method_limits": [{"path": LOGIN, "method": "post", "rate_limit": 1, "burst_limit": 1}]},
            "security.throttle.method_limits[0].method",
            "GET, POST",
        ),
        (
            {
                "rate_limit": 10,
                "method_limits": [{"path": LOGIN, "method": "POST", "rate_limit": 20, "burst_limit": 5}],
            },
            "security.throttle.method_limits[0]",
            "at most the stage's 10/",
        ),
        (
            {"method_limits": [{"path": LOGIN, "method": "POST", "rate_limit": 1, "burst_limit": 1}] * 2},
            "security.throttle.method_limits[1]",
            "each route listed once",
        ),
    ],
)
def test_bad_throttle_settings_name_the_key_in_cdk_json(
    throttle: dict[str, Any], key: str, allowed: str
) -> None:
    # GIVEN a throttle setting the constructs cannot use; WHEN the environment is read
    from stacks.config import ConfigError, parse_environment

    with pytest.raises(ConfigError) as err:
        parse_environment("prod", {"security": {"throttle": throttle}})
    # THEN the configuration names the key where it is written, before any construct sees it
    assert f"environments.prod.{key}: invalid value" in str(err.value) and allowed in str(err.value)


# ---- web ACL ---------------------------------------------------------------------------------------------


def test_web_acl_is_regional_unnamed_with_managed_groups_and_login_rate_rule(
    firewalled: dict[str, Any],
) -> None:
    (acl,) = firewalled["template"].find_resources("AWS::WAFv2::WebACL").values()
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL"
    assert "Name" not in props
    assert props["DefaultAction"] == {"Allow": {}}
    assert props["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
    rules = {r["Name"]: r for r in props["Rules"]}
    assert {n: r["Priority"] for n, r in rules.items()} == {
        "LoginRateLimit": 0,
        "AWSManagedRulesCommonRuleSet": 10,
        "AWSManagedRulesKnownBadInputsRuleSet": 20,
    }
    for name in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        group = rules[name]["Statement"]["ManagedRuleGroupStatement"]
        assert (group["VendorName"], group["Name"]) == ("AWS", name)
        assert rules[name]["OverrideAction"] == {"None": {}}
        assert rules[name]["VisibilityConfig"] == {
            "CloudWatchMetricsEnabled": True,
            "MetricName": name,
            "SampledRequestsEnabled": True,
        }
    assert rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"][
        "RuleActionOverrides"
    ] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]


def test_login_rate_rule_limits_each_ip_on_the_login_path_only(firewalled: dict[str, Any]) -> None:
    (acl,) = firewalled["template"].find_resources("AWS::WAFv2::WebACL").values()
    (rule,) = [r for r in acl["Properties"]["Rules"] if r["Name"] == "LoginRateLimit"]
    rate = rule["Statement"]["RateBasedStatement"]
    assert (rate["Limit"], rate["AggregateKeyType"], rate["EvaluationWindowSec"]) == (100, "IP", 300)
    matches = [s["ByteMatchStatement"] for s in rate["ScopeDownStatement"]["OrStatement"]["Statements"]]
    for match in matches:
        assert match["FieldToMatch"] == {"UriPath": {}}
        assert match["PositionalConstraint"] == "STARTS_WITH"
        assert match["TextTransformations"] == [{"Priority": 0, "Type": "URL_DECODE"}]
    # Through the custom domain, and on the execute-api URL (stage name first).
    assert [m["SearchString"] for m in matches] == [
        LOGIN,
        {"Fn::Join": ["", ["/", {"Ref": firewalled["stage_id"]}, LOGIN]]},
    ]
    block = rule["Action"]["Block"]["CustomResponse"]
    assert block["ResponseCode"] == 429
    assert block["CustomResponseBodyKey"] in acl["Properties"]["CustomResponseBodies"]


def test_association_targets_the_stage(firewalled: dict[str, Any]) -> None:
    tpl: Template = firewalled["template"]
    (assoc,) = tpl.find_resources("AWS::WAFv2::WebACLAssociation").values()
    assert assoc["Properties"]["WebACLArn"] == {"Fn::GetAtt": [firewalled["acl_id"], "Arn"]}
    # The stage's own Ref in the ARN also orders the association after the stage.
    assert assoc["Properties"]["ResourceArn"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:eu-west-1::/restapis/",
                {"Ref": firewalled["api_id"]},
                "/stages/",
                {"Ref": firewalled["stage_id"]},
            ],
        ]
    }


def test_blocked_requests_alarm_reaches_the_topic(firewalled: dict[str, Any]) -> None:
    tpl: Template = firewalled["template"]
    tpl.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/WAFV2",
            "MetricName": "BlockedRequests",
            "Statistic": "Sum",
            "Period": 300,
            "Threshold": 100,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "Dimensions": Match.array_equals(
                [
                    {"Name": "Region", "Value": "eu-west-1"},
                    {"Name": "Rule", "Value": "ALL"},
                    {
                        "Name": "WebACL",
                        "Value": {"Fn::Select": [0, {"Fn::Split": ["|", {"Ref": firewalled["acl_id"]}]}]},
                    },
                ]
            ),
            "AlarmActions": [{"Ref": firewalled["topic_id"]}],
            "OKActions": [{"Ref": firewalled["topic_id"]}],
        },
    )


def test_logging_keeps_only_blocks_and_redacts_credentials(firewalled: dict[str, Any]) -> None:
    (logging,) = firewalled["template"].find_resources("AWS::WAFv2::LoggingConfiguration").values()
    props = logging["Properties"]
    assert props["ResourceArn"] == {"Fn::GetAtt": [firewalled["acl_id"], "Arn"]}
    assert {f["SingleHeader"]["Name"] for f in props["RedactedFields"]} == {"authorization", "cookie"}
    assert props["LoggingFilter"]["DefaultBehavior"] == "DROP"


def test_without_login_path_or_logging_there_is_no_rate_rule_nor_logging() -> None:
    from stacks.constructs.waf import ApiFirewall

    _, stack, api = _api_stack()
    ApiFirewall(stack, "Fw", stage=api.deployment_stage, login_paths=(), rate_limit_per_5min=100, topic=None)
    tpl = Template.from_stack(stack)
    (acl,) = tpl.find_resources("AWS::WAFv2::WebACL").values()
    assert [r["Name"] for r in acl["Properties"]["Rules"]] == [
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
    ]
    tpl.resource_count_is("AWS::WAFv2::LoggingConfiguration", 0)
    tpl.has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "BlockedRequests", "AlarmActions": Match.absent()}
    )


@pytest.mark.parametrize(
    ("security", "key", "allowed"),
    [
        ({"waf": {"login_rate_limit_per_5min": 5}}, "security.waf.login_rate_limit_per_5min", "from 10 to"),
        ({"login_routes": ["/api/login", "api/login"]}, "security.login_routes[1]", "a literal path"),
        ({"login_routes": [LOGIN, LOGIN]}, "security.login_routes[1]", "each route listed once"),
    ],
)
def test_bad_firewall_settings_name_the_key_in_cdk_json(
    security: dict[str, Any], key: str, allowed: str
) -> None:
    from stacks.config import ConfigError, parse_environment

    with pytest.raises(ConfigError) as err:
        parse_environment("prod", {"security": security})
    assert f"environments.prod.{key}: invalid value" in str(err.value) and allowed in str(err.value)


def test_a_blocked_requests_threshold_below_one_names_the_threshold() -> None:
    from stacks.config import ConfigError, parse_environment

    with pytest.raises(
        ConfigError, match=r"environments\.prod\.alarms\.thresholds\.waf_blocked_requests: invalid"
    ):
        parse_environment("prod", {"alarms": {"thresholds": {"waf_blocked_requests": 0}}})


def test_one_rate_limit_covers_every_login_path() -> None:
    from aws_cdk.assertions import Template

    from stacks.constructs.waf import ApiFirewall

    # GIVEN two API functions with a login route each (guesses spread over both still add up per IP)
    _, stack, api = _api_stack()
    ApiFirewall(
        stack,
        "Fw",
        stage=api.deployment_stage,
        login_paths=("/api/v1/auth/login", "/admin/login"),
        rate_limit_per_5min=100,
        topic=None,
    )
    (acl,) = Template.from_stack(stack).find_resources("AWS::WAFv2::WebACL").values()
    (rule,) = [r for r in acl["Properties"]["Rules"] if r["Name"] == "LoginRateLimit"]
    statements = rule["Statement"]["RateBasedStatement"]["ScopeDownStatement"]["OrStatement"]["Statements"]
    searched = [s["ByteMatchStatement"]["SearchString"] for s in statements]
    assert "/api/v1/auth/login" in searched and "/admin/login" in searched
    assert len(searched) == 4, "each path, and each path behind the stage name on the execute-api URL"
