"""Security fit for health-care credentials, checked on the synthesized app (the committed cdk.json):

- every log group, queue and function environment of both stacks of each environment names the
  environment's KMS key, which rotates and admits CloudWatch Logs only for this account's log groups;
- both stages are throttled as cdk.json says, with the stricter limit on POST to the catalog's login route,
  and every path below the routes it adds still reaches the backend;
- an environment with `security.waf.enabled` has a web ACL on its stage (managed rules, the login rate
  rule, an alarm to on-call);
- the roles keep least privilege, and every asynchronously invoked function has the failed-invocations
  queue.

Acknowledgements, checkov skips and the checkov gate: tests/test_security_acknowledgements.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import CfnResource

from stacks.config import ScheduleTrigger
from stacks.constructs import waf
from tests.security_templates import ENVS, _actions, _backend, _config, _of_type, _policy, _Resource


def _key_id(tpl: dict[str, Any]) -> str:
    keys = [k for k in _of_type(tpl, "AWS::KMS::Key") if k.startswith("DataKey")]
    assert len(keys) == 1, keys
    return keys[0]


def _names_key(value: Any, key_id: str) -> bool:
    """`value` is the key's ARN: a GetAtt in its own stack, an import of its export in the policy stack."""
    if value == {"Fn::GetAtt": [key_id, "Arn"]}:
        return True
    return isinstance(value, dict) and key_id in json.dumps(value.get("Fn::ImportValue", ""))


# --- encryption at rest -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_every_log_group_queue_and_function_environment_uses_the_environment_key(
    synthesized: dict[str, Any], env: str
) -> None:
    backend = _backend(synthesized, env)
    key = _key_id(backend)
    checked = 0
    for tpl in (backend, _policy(synthesized, env)):
        for lid, res in _of_type(tpl, "AWS::Logs::LogGroup").items():
            assert _names_key(res["Properties"].get("KmsKeyId"), key), f"{env} log group {lid}"
            checked += 1
        for lid, res in _of_type(tpl, "AWS::SQS::Queue").items():
            assert _names_key(res["Properties"].get("KmsMasterKeyId"), key), f"{env} queue {lid}"
            assert "SqsManagedSseEnabled" not in res["Properties"], lid
            checked += 1
        for lid, res in _of_type(tpl, "AWS::Lambda::Function").items():
            if "Environment" in res["Properties"]:
                assert _names_key(res["Properties"].get("KmsKeyArn"), key), f"{env} function {lid}"
                checked += 1
    # Every catalog function, its hooks, both checks, every catalog queue: never an empty check.
    assert checked >= 2 * len(_config(synthesized, env).functions) + 4


@pytest.mark.parametrize("env", ENVS)
def test_environment_key_rotates_is_retained_and_admits_only_this_accounts_log_groups(
    synthesized: dict[str, Any], env: str
) -> None:
    backend = _backend(synthesized, env)
    key = backend["Resources"][_key_id(backend)]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    principals = [s["Principal"] for s in statements]
    # The account (delegating to IAM), CloudWatch Logs, and this stack's function roles: nothing else.
    assert len(statements) == 3, principals
    by_sid = {s.get("Sid"): s for s in statements}
    roles = by_sid["AllowThisEnvironmentsFunctionRolesToDecrypt"]
    assert roles["Action"] == "kms:Decrypt"
    function_roles = {
        fn["Properties"]["Role"]["Fn::GetAtt"][0]
        for fn in _of_type(backend, "AWS::Lambda::Function").values()
        if "KmsKeyArn" in fn["Properties"]
    }
    assert {p["Fn::GetAtt"][0] for p in roles["Principal"]["AWS"]} == function_roles
    logs = next(s for s in statements if "Service" in s["Principal"])
    assert "logs." in json.dumps(logs["Principal"]["Service"])
    condition = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert ":log-group:*" in json.dumps(condition) and "AWS::AccountId" in json.dumps(condition)
    root = next(s for s in statements if "Sid" not in s)
    assert ":root" in json.dumps(root["Principal"]["AWS"])


@pytest.mark.parametrize("env", ENVS)
def test_every_function_role_may_decrypt_its_environment(synthesized: dict[str, Any], env: str) -> None:
    backend = _backend(synthesized, env)
    key = _key_id(backend)
    grants: dict[str, set[str]] = {}
    for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for res in _of_type(backend, type_).values():
            for s in res["Properties"]["PolicyDocument"]["Statement"]:
                actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
                if "kms:Decrypt" in actions and _names_key(s["Resource"], key):
                    for role in res["Properties"].get("Roles", []):
                        grants.setdefault(role["Ref"], set()).add("kms:Decrypt")
    for lid, fn in _of_type(backend, "AWS::Lambda::Function").items():
        if "KmsKeyArn" in fn["Properties"]:
            role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
            assert role in grants, f"{env}: {lid}'s role {role} cannot decrypt its environment"


def test_no_basic_execution_role_remains_on_functions(synthesized: dict[str, Any]) -> None:
    """Each function writes only its own log group (a customer-managed policy), not every log group."""
    for env in ENVS:
        for lid, role in _of_type(_backend(synthesized, env), "AWS::IAM::Role").items():
            assert "AWSLambdaBasicExecutionRole" not in json.dumps(role["Properties"]), f"{env} {lid}"


# --- throttling and WAF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_stage_and_login_route_are_throttled_as_configured(synthesized: dict[str, Any], env: str) -> None:
    cfg = _config(synthesized, env)
    t = cfg.security.throttle
    backend = _backend(synthesized, env)
    (stage,) = _of_type(backend, "AWS::ApiGateway::Stage").values()
    settings = {(s["ResourcePath"], s["HttpMethod"]): s for s in stage["Properties"]["MethodSettings"]}
    assert settings[("/*", "*")]["ThrottlingRateLimit"] == t.rate_limit
    assert settings[("/*", "*")]["ThrottlingBurstLimit"] == t.burst_limit
    logins = cfg.security.login_routes
    assert logins, "the catalog's API function names a login route"
    for path in logins:
        s = settings[("/" + path.replace("/", "~1"), "POST")]
        assert (s["ThrottlingRateLimit"], s["ThrottlingBurstLimit"]) == (
            t.login_rate_limit,
            t.login_burst_limit,
        )
        assert t.login_rate_limit < t.rate_limit


def test_throttled_route_keeps_every_other_path_below_it_on_the_backend(synthesized: dict[str, Any]) -> None:
    """API Gateway does not fall back from `/api` to the root's `{proxy+}`: each resource made for the route
    has its own `{proxy+}` with ANY, on the same Lambda proxy integration."""
    stack = synthesized["stacks"]["prod"]
    api = stack.api
    paths = {(m.resource.path, m.http_method) for m in api.methods}
    for login in stack.config.security.login_routes:
        assert (login, "POST") in paths
        parts = login.strip("/").split("/")
        for i in range(1, len(parts)):
            assert ("/" + "/".join(parts[:i]) + "/{proxy+}", "ANY") in paths, parts[:i]


def test_unmatched_route_limit_fails_synth() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_apigateway as apigw
    from aws_cdk import aws_lambda as lambda_

    from stacks.config import MethodLimit
    from stacks.constructs.throttling import ThrottleSettings, route_throttled_methods

    app = cdk.App()
    stack = cdk.Stack(app, "S")
    fn = lambda_.Function(
        stack, "F", code=lambda_.Code.from_inline("x"), handler="a.b", runtime=lambda_.Runtime.PYTHON_3_12
    )
    limit = ThrottleSettings(
        rate_limit=10, burst_limit=20, method_limits=(MethodLimit("/a/login", "POST", 1, 2),)
    )
    api = apigw.LambdaRestApi(
        stack, "Api", handler=fn, deploy_options=apigw.StageOptions(**limit.stage_options_kwargs())
    )
    route_throttled_methods(api, fn, ThrottleSettings(rate_limit=10, burst_limit=20, method_limits=()))
    with pytest.raises(Exception, match="does not define"):
        app.synth()


@pytest.mark.parametrize("env", ENVS)
def test_web_acl_is_on_the_stage_where_configured(synthesized: dict[str, Any], env: str) -> None:
    cfg = _config(synthesized, env)
    backend = _backend(synthesized, env)
    associations = _of_type(backend, "AWS::WAFv2::WebACLAssociation")
    if not cfg.security.waf.enabled:
        assert not associations
        return
    (assoc,) = associations.values()
    (stage_id,) = _of_type(backend, "AWS::ApiGateway::Stage")
    assert stage_id in json.dumps(assoc["Properties"]["ResourceArn"])
    (acl,) = _of_type(backend, "AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", waf.LOGIN_RULE} <= set(
        rules
    )
    rate = rules[waf.LOGIN_RULE]["Statement"]["RateBasedStatement"]
    assert rate["Limit"] == cfg.security.waf.login_rate_limit_per_5min
    assert all(path in json.dumps(rate["ScopeDownStatement"]) for path in cfg.security.login_routes)
    alarms = [
        a
        for a in _of_type(backend, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/WAFV2"
    ]
    assert len(alarms) == 1 and alarms[0]["Properties"]["AlarmActions"]


def test_prod_has_a_web_acl_by_default() -> None:
    from stacks.config import parse_environment

    assert parse_environment("prod", {}).security.waf.enabled is True
    assert parse_environment("staging", {}).security.waf.enabled is False


# --- least privilege of the roles this app builds ---------------------------------------------------------


def _lid(stack: Any, construct: Any) -> str:
    node = construct if isinstance(construct, CfnResource) else construct.node.default_child
    return str(stack.resolve(node.logical_id))


def _roles_of(stack: Any) -> list[tuple[str, Any]]:
    """(what, role) for every function role (own or its stack's FunctionRole), both shared hooks and the
    shared CodeDeploy role."""
    out = [(f"{name} function", unit.guarded.role) for name, unit in stack.units.items()]
    out += [(f"hook {h.node.id}", h.role) for h in stack.hooks.hooks]
    out.append(("CodeDeploy", stack.hooks.role))
    return list({id(role): (what, role) for what, role in out}.values())


def _policy_of(stack: Any, backend: dict[str, Any], role: Any) -> tuple[str, list[dict[str, Any]]]:
    assert role.policy is not None
    lid = _lid(stack, role.policy)
    policy = backend["Resources"][lid]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    assert policy["Properties"]["Roles"] == [{"Ref": _lid(stack, role)}]
    return lid, policy["Properties"]["PolicyDocument"]["Statement"]


def _granting(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [s["Resource"] for s in statements if action in _actions(s)]


def _grants(stack: Any, backend: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The main stack's DeploymentGrants: (hooks' invoke statements, CodeDeploy's alias statements)."""
    grants = stack.node.find_child("DeploymentGrants")
    invoke = backend["Resources"][_lid(stack, grants.invoke)]["Properties"]
    aliases = backend["Resources"][_lid(stack, grants.aliases)]["Properties"]
    hook_roles = sorted({"Ref": _lid(stack, h.role)}["Ref"] for h in stack.hooks.hooks)
    assert sorted(r["Ref"] for r in invoke["Roles"]) == hook_roles
    assert aliases["Roles"] == [{"Ref": _lid(stack, stack.hooks.role)}]
    return invoke["PolicyDocument"]["Statement"], aliases["PolicyDocument"]["Statement"]


@pytest.mark.parametrize("env", ENVS)
def test_every_role_of_the_catalog_keeps_its_grants_in_customer_managed_policies(
    synthesized: dict[str, Any], env: str
) -> None:
    """No inline policy on any role: CDK's own grants land in the role's customer-managed policy, and each
    function still waits for it; the shared roles get each stack's exact grants in policies of their own."""
    stack, backend = synthesized["stacks"][env], _backend(synthesized, env)
    assert not _of_type(backend, "AWS::IAM::Policy"), "no inline policy in the backend stack"
    grants = stack.node.find_child("DeploymentGrants")
    grant_ids = {_lid(stack, grants.invoke), _lid(stack, grants.aliases)}
    for what, role in _roles_of(stack):
        lid, _statements = _policy_of(stack, backend, role)
        attached = [
            k
            for k, p in _of_type(backend, "AWS::IAM::ManagedPolicy").items()
            if {"Ref": _lid(stack, role)} in p["Properties"]["Roles"]
        ]
        assert set(attached) - grant_ids == {lid}, f"{env} {what}: {attached}"
    for name, unit in stack.units.items():
        fn = backend["Resources"][_lid(stack, unit.guarded.function)]
        lid, statements = _policy_of(stack, backend, unit.guarded.role)
        assert lid in fn["DependsOn"], f"{name}: the function must wait for its role's policy"
        # X-Ray (active tracing), the environment key and its own log group: all granted by CDK or the stack.
        assert _granting(statements, "xray:PutTraceSegments") == ["*"]
        assert {"Fn::GetAtt": [_key_id(backend), "Arn"]} in _granting(statements, "kms:Decrypt")
        logs = json.dumps(_granting(statements, "logs:PutLogEvents"))
        assert json.dumps({"Fn::GetAtt": [_lid(stack, unit.guarded.log_group), "Arn"]}) in logs, name
        if unit.queues is not None:  # the SQS event source's grant to consume its queue
            queue = {"Fn::GetAtt": [_lid(stack, unit.queues.queue), "Arn"]}
            assert queue in _granting(statements, "sqs:ReceiveMessage"), name
    for hook in stack.hooks.hooks:
        _lid_hook, hook_statements = _policy_of(stack, backend, hook.role)
        assert _granting(hook_statements, "codedeploy:PutLifecycleEventHookExecutionStatus"), hook.node.id
        # The failed-invocations queue (alarms.AsyncFailures goes through the role's default policy).
        assert _granting(hook_statements, "sqs:SendMessage"), hook.node.id


@pytest.mark.parametrize("env", ENVS)
def test_the_hooks_may_invoke_exactly_the_versions_the_deploy_publishes(
    synthesized: dict[str, Any], env: str
) -> None:
    stack, backend = synthesized["stacks"][env], _backend(synthesized, env)
    invoke, _aliases = _grants(stack, backend)
    assert ':*"' not in json.dumps(invoke), "no wildcard qualifier"
    (granted,) = _granting(invoke, "lambda:InvokeFunction")
    versions = []
    for unit in stack.units.values():
        alias = backend["Resources"][_lid(stack, unit.guarded.alias)]
        version_id = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert backend["Resources"][version_id]["Type"] == "AWS::Lambda::Version"
        versions.append({"Ref": version_id})
    assert sorted(map(json.dumps, granted)) == sorted(map(json.dumps, versions))
    for hook in stack.hooks.hooks:  # nothing else to invoke in their own policies
        _policy_id, statements = _policy_of(stack, backend, hook.role)
        assert _granting(statements, "lambda:InvokeFunction") == [], hook.node.id


@pytest.mark.parametrize("env", ENVS)
def test_codedeploy_role_has_no_aws_managed_policy_and_reaches_only_the_aliases_alarms_and_hooks(
    synthesized: dict[str, Any], env: str
) -> None:
    stack, backend = synthesized["stacks"][env], _backend(synthesized, env)
    role = stack.hooks.role
    role_res = backend["Resources"][_lid(stack, role)]
    assert "ManagedPolicyArns" not in role_res["Properties"]
    assert role_res["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "codedeploy.amazonaws.com"
    }
    _policy_id, statements = _policy_of(stack, backend, role)
    _invoke, alias_statements = _grants(stack, backend)
    assert ':*"' not in json.dumps(alias_statements) and '"*"' not in json.dumps(alias_statements)
    expected = []
    for unit in stack.units.values():
        fn_arn = {"Fn::GetAtt": [_lid(stack, unit.guarded.function), "Arn"]}
        expected += [fn_arn, {"Fn::Join": ["", [fn_arn, f":{unit.guarded.alias.alias_name}"]]}]
    for action in ("lambda:GetAlias", "lambda:UpdateAlias", "lambda:GetProvisionedConcurrencyConfig"):
        (granted,) = _granting(alias_statements, action)
        assert sorted(map(json.dumps, granted)) == sorted(map(json.dumps, expected)), action
    (described,) = _granting(statements, "cloudwatch:DescribeAlarms")
    assert ":alarm:" in json.dumps(described) and "AWS::StackName" in json.dumps(described)
    (invoked,) = _granting(statements, "lambda:InvokeFunction")
    invoked = invoked if isinstance(invoked, list) else [invoked]
    assert sorted(r["Fn::GetAtt"][0] for r in invoked) == sorted(_lid(stack, h) for h in stack.hooks.hooks)
    grants = stack.node.find_child("DeploymentGrants")
    for unit in stack.units.values():
        alias = backend["Resources"][_lid(stack, unit.guarded.alias)]
        # The deployment (the alias update) starts only once the grants naming this deploy are in place.
        assert {_lid(stack, grants.invoke), _lid(stack, grants.aliases)} <= set(alias["DependsOn"])


@pytest.mark.parametrize("env", ENVS)
def test_every_catalog_function_reserves_its_concurrency_and_its_queue_never_polls_past_it(
    synthesized: dict[str, Any], env: str
) -> None:
    from stacks.function_unit import sqs_max_concurrency

    stack, backend = synthesized["stacks"][env], _backend(synthesized, env)
    mappings = _of_type(backend, "AWS::Lambda::EventSourceMapping")
    for name, unit in stack.units.items():
        reserved = unit.config.reserved_concurrency
        assert reserved is not None, f"cdk.json: functions.{name}.reserved_concurrency ({env})"
        fn = backend["Resources"][_lid(stack, unit.guarded.function)]["Properties"]
        assert fn["ReservedConcurrentExecutions"] == reserved
        if unit.queues is not None:
            queue = {"Fn::GetAtt": [_lid(stack, unit.queues.queue), "Arn"]}
            (mapping,) = [m for m in mappings.values() if m["Properties"]["EventSourceArn"] == queue]
            assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": reserved}
            assert sqs_max_concurrency(reserved) == reserved


def test_sqs_pollers_are_capped_only_where_lambda_allows() -> None:
    from stacks.function_unit import sqs_max_concurrency

    assert sqs_max_concurrency(None) is None
    assert sqs_max_concurrency(1) is None  # below Lambda's minimum of 2
    assert sqs_max_concurrency(2) == 2 and sqs_max_concurrency(1000) == 1000


# --- failed asynchronous invocations ----------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVS)
def test_every_asynchronously_invoked_function_has_the_failed_invocations_queue(
    synthesized: dict[str, Any], env: str
) -> None:
    """Scheduled catalog functions, CodeDeploy hooks and the two checks: Lambda drops their failed events
    after two retries unless they have a dead-letter queue; theirs can be written by their own role."""
    stack = synthesized["stacks"][env]
    backend = _backend(synthesized, env)
    failures = stack.async_failures
    queue_id = stack.resolve(failures.queue.node.default_child.logical_id)
    expected = {
        stack.resolve(u.guarded.function.node.default_child.logical_id)
        for u in stack.units.values()
        if isinstance(u.config.trigger, ScheduleTrigger)
    }
    for unit in stack.units.values():
        for hook in (unit.canary.pre_traffic_hook, unit.canary.post_traffic_hook):
            if hook is not None:
                expected.add(stack.resolve(hook.node.default_child.logical_id))
    expected |= {
        stack.resolve(stack.api_alarms.health_check.node.default_child.logical_id),
        stack.resolve(stack.drift_check.function.node.default_child.logical_id),
    }
    with_dlq = {
        lid
        for lid, fn in _of_type(backend, "AWS::Lambda::Function").items()
        if fn["Properties"].get("DeadLetterConfig") == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    }
    assert with_dlq == expected
    for lid in expected:
        r = _Resource(synthesized, f"credmate-backend-{env}", lid)
        sends = [s for s in r.role_statements() if "sqs:SendMessage" in _actions(s)]
        assert any(s["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]} for s in sends), lid
        assert any(set(_actions(s)) == {"kms:GenerateDataKey", "kms:Decrypt"} for s in r.role_statements()), (
            lid
        )
    alarm = backend["Resources"][stack.resolve(failures.alarm.node.default_child.logical_id)]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS" and alarm["AlarmActions"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": [queue_id, "QueueName"]}
