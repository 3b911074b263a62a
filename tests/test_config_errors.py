"""Configuration errors name the key exactly where the user wrote it, and synth stops on them with one message
and no traceback; the login protections are a security setting of their own (security.login_routes).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError, NoTrigger, ScheduleTrigger, parse_environments
from tests.conftest import REPO_ROOT

LOGIN = "/api/v1/auth/login"


def context() -> dict[str, Any]:
    return copy.deepcopy(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])


def error_of(environments: dict[str, Any], functions: Any) -> str:
    with pytest.raises(ConfigError) as err:
        parse_environments(environments, functions)
    return str(err.value)


def run_app(ctx: dict[str, Any], outdir: Path) -> subprocess.CompletedProcess[str]:
    """app.py as the CDK CLI runs it: the context in CDK_CONTEXT_JSON, the output folder in CDK_OUTDIR."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(ctx), "CDK_OUTDIR": str(outdir)}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "app.py")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- a cdk.json without `functions` -------------------------------------------------------------------------


def test_given_no_functions_key_when_parsed_then_the_error_names_the_missing_key() -> None:
    message = error_of(context()["environments"], None)
    assert message.startswith("cdk.json context functions: missing;")


def test_given_no_functions_key_when_synth_runs_then_it_stops_in_one_message_without_traceback(
    tmp_path: Path,
) -> None:
    # GIVEN cdk.json's context without the function catalog
    ctx = context()
    del ctx["functions"]
    # WHEN app.py runs as `cdk synth` runs it
    result = run_app(ctx, tmp_path)
    # THEN it stops naming the key, without a traceback, and writes no template
    assert result.returncode == 1
    assert "cdk.json context functions: missing;" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


# --- a throttled route no function serves -------------------------------------------------------------------


def routed_catalog(login_path: str | None = None) -> dict[str, Any]:
    """One API function routed at /goals only: no catch-all."""
    post: dict[str, Any] = {"health_path": "/goals/health"}
    if login_path:
        post["login_path"] = login_path
    return {
        "Goals": {
            "handler": "handler.lambda_handler",
            "trigger": {"type": "api", "paths": ["/goals"]},
            "post_traffic": post,
        }
    }


def test_given_a_method_limit_no_function_serves_then_the_error_names_its_path_key() -> None:
    envs = context()["environments"]
    limit = {"path": "/other", "method": "GET", "rate_limit": 1, "burst_limit": 1}
    envs["prod"]["security"]["throttle"]["method_limits"] = [limit]
    message = error_of(envs, routed_catalog())
    assert message.startswith("cdk.json context environments.prod.security.throttle.method_limits[0].path: ")
    assert "GET /other is served by no API function" in message


def test_given_a_login_route_no_function_serves_then_the_error_names_the_login_routes_item() -> None:
    envs = context()["environments"]
    envs["staging"]["security"]["login_routes"] = ["/goals/login", "/login"]
    message = error_of(envs, routed_catalog())
    assert message.startswith("cdk.json context environments.staging.security.login_routes[1]: /login is ")


def test_given_a_defaulted_login_route_no_function_serves_then_the_error_names_the_catalogs_login_path() -> (
    None
):
    message = error_of(context()["environments"], routed_catalog(login_path="/login"))
    assert message.startswith(
        "cdk.json context functions.Goals.post_traffic.login_path (environment staging)"
    )
    assert "security.login_routes" in message


def test_given_an_unserved_route_when_synth_runs_then_it_stops_without_traceback(tmp_path: Path) -> None:
    ctx = context()
    limit = {"path": "/other", "method": "GET", "rate_limit": 1, "burst_limit": 1}
    ctx["environments"]["prod"]["security"]["throttle"]["method_limits"] = [limit]
    ctx["functions"] = routed_catalog()
    result = run_app(ctx, tmp_path)
    assert result.returncode == 1
    assert "environments.prod.security.throttle.method_limits[0].path" in result.stderr
    assert "Traceback" not in result.stderr


# --- a function's deployment.config -------------------------------------------------------------------------


def test_given_a_bad_deployment_config_in_the_catalog_then_the_error_names_the_catalog_key() -> None:
    functions = context()["functions"]
    functions["BackendApi"]["deployment"] = {"config": "Sometimes"}
    message = error_of(context()["environments"], functions)
    assert message.startswith(
        "cdk.json context functions.BackendApi.deployment.config (environment staging): "
        "invalid value 'Sometimes'"
    )
    assert "environments.staging.functions" not in message


def test_given_a_bad_deployment_config_in_an_override_then_the_error_names_the_override() -> None:
    envs = context()["environments"]
    envs["prod"]["functions"] = {"BackendApi": {"deployment": {"config": "Sometimes"}}}
    message = error_of(envs, context()["functions"])
    assert message.startswith(
        "cdk.json context environments.prod.functions.BackendApi.deployment.config: invalid value 'Sometimes'"
    )


def test_given_an_override_of_another_deployment_key_then_a_bad_catalog_config_is_still_the_catalogs() -> (
    None
):
    envs = context()["environments"]
    envs["staging"]["functions"] = {"BackendApi": {"deployment": {"schema_mismatch": "warn"}}}
    functions = context()["functions"]
    functions["BackendApi"]["deployment"] = {"config": "Sometimes"}
    assert error_of(envs, functions).startswith("cdk.json context functions.BackendApi.deployment.config ")


def test_a_bad_function_alarm_threshold_in_the_catalog_names_the_catalog_key() -> None:
    functions = context()["functions"]
    functions["Worker"]["alarms"] = {"throttles": -1}
    message = error_of(context()["environments"], functions)
    assert message.startswith("cdk.json context functions.Worker.alarms.throttles (environment staging)")


# --- an override that changes a trigger's type --------------------------------------------------------------


def test_given_an_override_to_another_trigger_type_then_the_catalogs_keys_of_the_old_type_are_dropped() -> (
    None
):
    envs = context()["environments"]
    envs["staging"]["functions"] = {"Worker": {"trigger": {"type": "none"}}}
    # Another function's queue_urls name Worker's queue: in staging it no longer has one.
    functions = context()["functions"]
    del functions["CampaignScheduler"]["queue_urls"]
    worker = parse_environments(envs, functions)["staging"].function_named("Worker")
    assert isinstance(worker.trigger, NoTrigger)


def test_given_an_override_to_another_trigger_type_missing_a_key_then_the_error_names_the_override() -> None:
    envs = context()["environments"]
    envs["staging"]["functions"] = {"Worker": {"trigger": {"type": "schedule"}}}
    message = error_of(envs, context()["functions"])
    assert message.startswith("cdk.json context environments.staging.functions.Worker.trigger.expression: ")
    assert "batch_size" not in message


def test_given_an_override_to_another_trigger_type_then_its_own_bad_key_is_named_in_the_override() -> None:
    envs = context()["environments"]
    trigger = {"type": "schedule", "expression": "rate(1 hour)", "batch_size": 5}
    envs["prod"]["functions"] = {"Worker": {"trigger": trigger}}
    message = error_of(envs, context()["functions"])
    assert message.startswith(
        "cdk.json context environments.prod.functions.Worker.trigger.batch_size: unknown"
    )


def test_an_override_of_the_same_trigger_type_still_merges_with_the_catalog() -> None:
    envs = context()["environments"]
    envs["prod"]["functions"] = {"CampaignScheduler": {"trigger": {"enabled": False}}}
    fn = parse_environments(envs, context()["functions"])["prod"].function_named("CampaignScheduler")
    assert isinstance(fn.trigger, ScheduleTrigger)
    assert fn.trigger.rule_id == "CampaignSchedule" and fn.trigger.enabled is False


def test_a_route_clash_an_override_makes_is_named_in_the_override() -> None:
    functions = context()["functions"]
    functions["Goals"] = {
        "handler": "handler.lambda_handler",
        "trigger": {"type": "api", "paths": ["/goals"]},
    }
    functions["Reports"] = {"handler": "handler.lambda_handler", "trigger": {"type": "api", "paths": ["/r"]}}
    envs = context()["environments"]
    envs["prod"]["functions"] = {"Reports": {"trigger": {"paths": ["/goals"]}}}
    message = error_of(envs, functions)
    assert message.startswith(
        "cdk.json context environments.prod.functions.Reports.trigger.paths: /goals is "
    )


# --- security.login_routes ----------------------------------------------------------------------------------


def test_login_routes_default_to_the_api_functions_login_path() -> None:
    envs = parse_environments(context()["environments"], context()["functions"])
    assert all(cfg.security.login_routes == (LOGIN,) for cfg in envs.values())


def test_given_the_post_traffic_login_check_switched_off_then_the_login_routes_stay() -> None:
    envs = context()["environments"]
    envs["staging"]["functions"] = {"BackendApi": {"post_traffic": {"login_path": None}}}
    staging = parse_environments(envs, context()["functions"])["staging"]
    api = staging.function_named("BackendApi")
    assert api.post_traffic is not None and api.post_traffic.login_path is None
    assert staging.security.login_routes == (LOGIN,)


def test_given_login_routes_set_then_they_replace_the_default_and_an_empty_list_protects_none() -> None:
    envs = context()["environments"]
    envs["prod"]["security"]["login_routes"] = ["/api/v1/auth/token"]
    envs["staging"]["security"]["login_routes"] = []
    parsed = parse_environments(envs, context()["functions"])
    assert parsed["prod"].security.login_routes == ("/api/v1/auth/token",)
    assert parsed["staging"].security.login_routes == ()
    assert parsed["staging"].security.route_limits == ()


def test_a_bad_login_routes_value_names_the_key() -> None:
    envs = context()["environments"]
    envs["prod"]["security"]["login_routes"] = "/api/v1/auth/login"
    message = error_of(envs, context()["functions"])
    assert message.startswith("cdk.json context environments.prod.security.login_routes: invalid value")


@pytest.mark.synth
def test_given_the_login_check_off_and_login_routes_set_then_the_templates_protect_those_routes() -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build_app

    # GIVEN staging with its post-traffic login check switched off, and prod protecting another route
    ctx = context()
    ctx["skip_bundle_verification"] = "true"
    ctx["environments"]["staging"]["functions"] = {"BackendApi": {"post_traffic": {"login_path": None}}}
    ctx["environments"]["prod"]["security"]["login_routes"] = ["/api/v1/auth/token"]
    stacks, _policies = build_app(cdk.App(context=ctx))

    def protected(env: str) -> tuple[set[str], str]:
        res = Template.from_stack(stacks[env]).to_json()["Resources"]
        (stage,) = [r for r in res.values() if r["Type"] == "AWS::ApiGateway::Stage"]
        throttled = {
            s["ResourcePath"].replace("~1", "/")[1:]
            for s in stage["Properties"]["MethodSettings"]
            if s["HttpMethod"] == "POST"
        }
        (acl,) = [r for r in res.values() if r["Type"] == "AWS::WAFv2::WebACL"]
        (rule,) = [r for r in acl["Properties"]["Rules"] if r["Name"] == "LoginRateLimit"]
        return throttled, json.dumps(rule["Statement"])

    # THEN staging keeps the throttled login route and the WAF rule on it
    throttled, rule = protected("staging")
    assert throttled == {LOGIN} and LOGIN in rule
    # AND prod protects the route its security setting names, and no longer the default
    throttled, rule = protected("prod")
    assert throttled == {"/api/v1/auth/token"}
    assert "/api/v1/auth/token" in rule and LOGIN not in rule


def test_a_function_units_protected_resources_can_be_listed_before_deploy() -> None:
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from stacks.constructs.encryption import EnvironmentKey
    from stacks.function_unit import FunctionUnit, SharedSettings, function_queues

    # GIVEN a unit built in its first step only (function and trigger, no alarms or canary yet)
    config = parse_environments(context()["environments"], context()["functions"])["staging"]
    worker = config.function_named("Worker")
    stack = cdk.Stack(cdk.App(), "Unit")
    key = EnvironmentKey(stack, "DataKey", description="test environment key")
    shared = SharedSettings(
        config=config,
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
        runtime=lambda_.Runtime.PYTHON_3_11,
        architecture=lambda_.Architecture.X86_64,
        network=None,
        queues={"Worker": function_queues(stack, worker, key)},
        key=key,
    )
    unit = FunctionUnit(stack, worker, shared=shared)
    # THEN what it protects is what exists: function, alias, log group and queues
    g, queues = unit.guarded, unit.queues
    assert queues is not None
    assert unit.protected == [g.function, g.alias, g.log_group, queues.queue, queues.dlq]


@pytest.mark.parametrize(
    ("expression", "minutes"),
    [("rate(1 minute)", 5), ("rate(2 minutes)", 5), ("rate(1 hour)", 120), ("rate(7 days)", 1440)],
)
def test_a_schedule_of_any_valid_rate_gets_a_missed_runs_window_the_alarm_accepts(
    expression: str, minutes: int
) -> None:
    # A schedule config accepts (rate(1 minute)) once gave the MissedRuns alarm a 2-minute period, which
    # FunctionAlarms refuses with a traceback; the window is now at least 5 minutes.
    from stacks.function_unit import expected_window

    assert expected_window(expression).to_minutes() == minutes
