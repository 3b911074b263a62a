# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""Pre-traffic hook against Stubber fakes of CodeDeploy and Lambda (no network, no AWS account).

Each test queues the exact AWS calls it expects; Stubber fails on any call not queued, so "reported exactly
once" and "invoked exactly this version" are enforced by the stubs, and checked again on the recorded calls.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hook_fakes import (
    DEPLOYMENT_ID,
    FUNCTION,
    HOOK_EVENT,
    FakeClock,
    FakeContext,
    StubbedAws,
    appspec_yaml,
    function_checks,
    hook_calls,
    hook_target,
    log_lines,
    pre_traffic,
    version_arn,
)

pytest_plugins = ["hook_fakes"]

LABEL = "BackendApi"
PROBE_OK = {
    "probe": "ok",
    "handler": "handler.lambda_handler",
    "function": LABEL,
    "checks": function_checks(),
    "code_version": "abc123",
    "schema_head": "0007",
    "db_version": "0007",
    "imports_checked": ["sqlalchemy"],
    "import_failures": [],
    "errors": [],
}
HEALTHY = {
    "statusCode": 200,
    "headers": {"content-type": "application/json"},
    "body": '{"status": "healthy"}',
}


def env(**overrides: str) -> dict[str, str]:
    return {"TARGET_ALIAS": "live", **overrides}


def probe(base: dict[str, Any] | None = None, **checks: Any) -> dict[str, Any]:
    """A probe response (PROBE_OK unless `base`) whose function asks for `checks` (function_checks)."""
    return {**(base or PROBE_OK), "checks": function_checks(**checks)}


def run(runtime: hook_calls.Runtime, environ: dict[str, str], context: Any = None) -> dict[str, Any]:
    return pre_traffic.run_pre_traffic(HOOK_EVENT, context or FakeContext(), environ=environ, runtime=runtime)


def reported(aws: StubbedAws) -> list[str]:
    return [p["status"] for p in aws.operations("PutLifecycleEventHookExecutionStatus")]


def failed_reasons(output: str) -> list[str]:
    return [f"{line['check']}: {line['reason']}" for line in log_lines(output) if not line["ok"]]


# ---------------------------------------------------------------------------------------------------------
# Which version is tested


def test_only_target_alias_is_read_from_the_environment(aws, runtime):
    # GIVEN a hook for deployments of the alias `prod` and an AppSpec naming it
    aws.get_deployment(appspec_yaml(target="8", alias="prod"))
    aws.invoke("8", PROBE_OK)
    aws.put_status("Succeeded")
    # WHEN the hook runs with nothing else in its environment THEN it tests that alias's version
    assert run(runtime, {"TARGET_ALIAS": "prod"})["status"] == "Succeeded"
    assert [q for q, _ in aws.invoked_events()] == ["8"]
    assert pre_traffic.PreTrafficConfig.from_env({}).alias == "live"


def test_appspec_target_version_is_the_one_invoked(aws, runtime, capsys):
    # GIVEN an AppSpec whose TargetVersion (8) differs from the fallback (7) and from CurrentVersion (6)
    aws.get_deployment(appspec_yaml(target="8", current="6"))
    aws.invoke("8", PROBE_OK)
    aws.put_status("Succeeded")
    # WHEN the hook runs
    result = run(runtime, env())
    # THEN it invoked version 8 only, with the probe event, and reported Succeeded once
    assert result["status"] == "Succeeded"
    assert aws.invoked_events() == [("8", {"credmate_probe": {"deployment_id": DEPLOYMENT_ID}})]
    assert reported(aws) == ["Succeeded"]
    lines = log_lines(capsys.readouterr().out)
    assert {line["check"] for line in lines} >= {"target_version", "probe", "schema", "report"}
    assert all(line["deployment_id"] == DEPLOYMENT_ID and line["function"] == FUNCTION for line in lines)
    assert all(line["label"] == LABEL for line in lines if line["check"] != "target_version")
    assert all(line["version"] == "8" for line in lines if line["check"] != "target_version" or line["ok"])


def test_appspec_in_json_is_read_too(aws, runtime):
    appspec = json.dumps(
        {
            "version": 0.0,
            "Resources": [
                {
                    "Api": {
                        "Type": "AWS::Lambda::Function",
                        "Properties": {
                            "Name": version_arn("live"),
                            "Alias": "live",
                            "CurrentVersion": "3",
                            "TargetVersion": "4",
                        },
                    }
                }
            ],
        }
    )
    aws.get_deployment(appspec)
    aws.invoke("4", PROBE_OK)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    assert [q for q, _ in aws.invoked_events()] == ["4"]


@pytest.mark.parametrize("appspec", [None, "version: 0.0\nResources: []\n", "{not json"])
def test_deployment_target_when_the_appspec_is_unusable(aws, runtime, capsys, appspec):
    # GIVEN a deployment without a usable AppSpec entry, whose Lambda target names version 7
    aws.get_deployment(appspec)
    aws.deployment_target("7", current="6")
    aws.invoke("7", PROBE_OK)
    aws.put_status("Succeeded")
    # WHEN the hook runs THEN it tests the deployment target's version, and says why
    assert run(runtime, env())["status"] == "Succeeded"
    assert [q for q, _ in aws.invoked_events()] == ["7"]
    assert aws.operations("ListDeploymentTargets") == [{"deploymentId": DEPLOYMENT_ID}]
    assert aws.operations("GetDeploymentTarget") == [
        {"deploymentId": DEPLOYMENT_ID, "targetId": f"{FUNCTION}:live"}
    ]
    target_line = next(
        line for line in log_lines(capsys.readouterr().out) if line["check"] == "target_version"
    )
    assert "from the deployment target" in target_line["reason"] and target_line["level"] == "WARN"
    assert "AppSpec (GetDeployment):" in target_line["reason"]


def test_deployment_target_when_get_deployment_is_denied(aws, runtime):
    aws.get_deployment_error("AccessDeniedException")
    aws.deployment_target("7")
    aws.invoke("7", PROBE_OK)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    assert [q for q, _ in aws.invoked_events()] == ["7"]


def test_deployment_targets_are_paged_and_the_one_with_the_alias_is_taken(aws, runtime):
    aws.get_deployment(None)
    aws.list_targets("other:staging", next_token="page-2")
    aws.codedeploy_stub.add_response(
        "list_deployment_targets",
        {"targetIds": [f"{FUNCTION}:live"]},
        {"deploymentId": DEPLOYMENT_ID, "nextToken": "page-2"},
    )
    aws.get_target("3", "2", function="other", alias="staging", target_id="other:staging")
    aws.get_target("7", "6")
    aws.invoke("7", PROBE_OK)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    assert [q for q, _ in aws.invoked_events()] == ["7"]


def test_both_sources_unusable_fails_naming_both(aws, runtime, capsys):
    # GIVEN no AppSpec, and a deployment whose targets cannot be listed
    aws.get_deployment(None)
    aws.list_targets_error("AccessDeniedException")
    aws.put_status("Failed")
    # WHEN the hook runs THEN nothing is invoked, and the reason names both sources and what each said
    assert run(runtime, env())["status"] == "Failed"
    assert aws.operations("Invoke") == [] and reported(aws) == ["Failed"]
    (reason,) = [r for r in failed_reasons(capsys.readouterr().out) if r.startswith("target_version:")]
    assert "AppSpec (GetDeployment): GetDeployment returned no revision.appSpecContent.content" in reason
    assert "deployment target (ListDeploymentTargets/GetDeploymentTarget): AccessDeniedException" in reason


def test_no_deployment_targets_fails_naming_both_sources(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8", alias="canary"))
    aws.list_targets()
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    (reason,) = [r for r in failed_reasons(capsys.readouterr().out) if r.startswith("target_version:")]
    assert "AppSpec (GetDeployment): names no function resource with Alias live" in reason
    assert "ListDeploymentTargets returned no targets" in reason


def test_an_appspec_with_two_resources_for_the_alias_is_ambiguous(aws, runtime, capsys):
    # GIVEN an AppSpec naming two functions with the alias, and no deployment target to decide
    aws.get_deployment(appspec_yaml(target="8", other_alias="live"))
    aws.list_targets()
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert aws.operations("Invoke") == []
    assert any("ambiguous, refused" in r for r in failed_reasons(capsys.readouterr().out))


def test_another_alias_in_the_appspec_is_ignored(aws, runtime):
    aws.get_deployment(appspec_yaml(target="8", other_alias="canary"))
    aws.invoke("8", PROBE_OK)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("target", "current", "deployed", "expected"),
    [
        ("$LATEST", "6", ("$LATEST", "6", FUNCTION), "$LATEST is never tested"),
        ("live", "6", ("live", "6", FUNCTION), "not a published version number"),
        ("6", "6", ("6", "6", FUNCTION), "is the CurrentVersion"),
        ("6", "6", ("6", None, FUNCTION), "is the AppSpec's CurrentVersion"),
        ("$LATEST", "6", ("3", "2", "some-other-function"), "is not the AppSpec's function"),
    ],
)
def test_refuses_latest_alias_and_current_version(aws, runtime, capsys, target, current, deployed, expected):
    # GIVEN only versions that are not the new one, in the AppSpec and in the deployment target
    aws.get_deployment(appspec_yaml(target=target, current=current))
    version, deployed_current, function = deployed
    aws.deployment_target(version, deployed_current, function=function)
    aws.put_status("Failed")
    # WHEN the hook runs THEN nothing is invoked and Failed is reported, with the reason
    assert run(runtime, env())["status"] == "Failed"
    assert aws.operations("Invoke") == []
    assert reported(aws) == ["Failed"]
    assert any(expected in reason for reason in failed_reasons(capsys.readouterr().out))


def test_executed_version_must_match(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", PROBE_OK, executed_version="6")
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any("ran version 6, not 8" in r for r in failed_reasons(capsys.readouterr().out))


# ---------------------------------------------------------------------------------------------------------
# What the invocation says


def test_import_error_fails_with_error_type_and_message(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke(
        "8",
        {
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": "Unable to import module 'credmate_probe': No module named 'mangum'",
            "stackTrace": [],
        },
        function_error="Unhandled",
    )
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    reasons = failed_reasons(capsys.readouterr().out)
    assert any(
        "Runtime.ImportModuleError: Unable to import module 'credmate_probe': No module named 'mangum'" in r
        for r in reasons
    )
    assert reported(aws) == ["Failed"]


def test_probe_import_sweep_failure_fails(aws, runtime, capsys):
    failed = {
        **PROBE_OK,
        "probe": "failed",
        "import_failures": [
            {"module": "psycopg2", "error": "ModuleNotFoundError: No module named 'psycopg2'"}
        ],
        "errors": ["import psycopg2: ModuleNotFoundError: No module named 'psycopg2'"],
    }
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", failed)
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any("No module named 'psycopg2'" in r for r in failed_reasons(capsys.readouterr().out))


@pytest.mark.parametrize(
    "payload", [None, "just text", {"statusCode": 200}, [1, 2], b"Traceback (most recent call last): ..."]
)
def test_malformed_probe_response_fails(aws, runtime, capsys, payload):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", payload if payload != "just text" else b"just text")
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    reasons = failed_reasons(capsys.readouterr().out)
    assert any(
        r.startswith("probe: version 8 answered the probe with something that is not") for r in reasons
    )
    assert any(r.startswith("checks: version 8 gave no probe response") for r in reasons)


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ({"statusCode": 503, "body": '{"status": "unhealthy", "database": "down"}'}, "returned 503"),
        ({"statusCode": 200, "body": '{"status": "degraded"}'}, "status 'degraded'"),
        ({"statusCode": 200, "body": '{"status": 42}'}, "status 42"),
        ({"statusCode": 200, "body": '{"status": "DOWN"}'}, "status 'DOWN'"),
    ],
)
def test_unhealthy_http_health_fails(aws, runtime, capsys, health, expected):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe(http_health=True))
    aws.invoke("8", health)
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    qualifiers_and_paths = [(q, e.get("path")) for q, e in aws.invoked_events()]
    assert qualifiers_and_paths == [("8", None), ("8", "/health")]
    assert any(expected in r for r in failed_reasons(capsys.readouterr().out))


def test_healthy_http_health_succeeds_and_sends_an_api_gateway_proxy_event(aws, runtime):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe(http_health=True))
    aws.invoke("8", HEALTHY)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    event = aws.invoked_events()[1][1]
    assert event["httpMethod"] == "GET" and event["path"] == "/health" and "requestContext" in event


def test_schema_mismatch_fails_in_fail_mode(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe({**PROBE_OK, "schema_head": "0008", "db_version": "0007"}, schema_mismatch="fail"))
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any(
        "code expects Alembic head 0008, database is at 0007" in r
        for r in failed_reasons(capsys.readouterr().out)
    )


def test_schema_mismatch_only_warns_in_warn_mode(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe({**PROBE_OK, "schema_head": "0008", "db_version": "0007"}, schema_mismatch="warn"))
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    schema = next(line for line in log_lines(capsys.readouterr().out) if line["check"] == "schema")
    assert schema["ok"] and schema["level"] == "WARN" and "0008" in schema["reason"]


def test_no_database_version_is_a_warning_not_a_failure(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", {**PROBE_OK, "db_version": None})
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    schema = next(line for line in log_lines(capsys.readouterr().out) if line["check"] == "schema")
    assert schema["level"] == "WARN"


# ---------------------------------------------------------------------------------------------------------
# Pure parts


def test_appspec_yaml_subset_parses_like_yaml():
    document = hook_target.parse_appspec(appspec_yaml(target="8", current="6", other_alias="live"))
    targets = hook_target.appspec_targets(document)
    assert [(t.name, t.alias, t.current_version, t.target_version) for t in targets] == [
        ("credmate-staging-WorkerFunction-Zz9", "live", "40", "41"),
        (FUNCTION, "live", "6", "8"),
    ]
    assert document["Hooks"] == [{"BeforeAllowTraffic": "credmate-staging-PreTrafficHook"}]


def test_flow_style_appspec_parses_like_block_style():
    block = hook_target.parse_appspec(appspec_yaml(target="8", current="6", other_alias="live"))
    flow = hook_target.parse_appspec(
        "{version: 0.0, Resources: ["
        "{OtherFunction: {Type: 'AWS::Lambda::Function', Properties: {"
        "Name: credmate-staging-WorkerFunction-Zz9, Alias: live, CurrentVersion: '40',"
        " TargetVersion: '41'}}},"
        f" {{AbC123: {{Type: 'AWS::Lambda::Function', Properties: {{Name: {FUNCTION}, Alias: live,"
        " CurrentVersion: '6', TargetVersion: '8'}}}],"
        " Hooks: [{BeforeAllowTraffic: credmate-staging-PreTrafficHook}]}"
    )
    assert hook_target.appspec_targets(flow) == hook_target.appspec_targets(block)


def test_unquoted_version_numbers_are_read_as_text():
    document = hook_target.parse_appspec(
        f"Resources:\n  - Fn:\n      Properties: {{Name: {FUNCTION}, CurrentVersion: 6, TargetVersion: 8}}\n"
    )
    (target,) = hook_target.appspec_targets(document)
    assert (target.current_version, target.target_version) == ("6", "8")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("Resources:\n  - a: [unclosed\n", "AppSpec YAML is invalid"),
        ("# only a comment\n", "only comments"),
        ("   ", "empty"),
        ("{not json", "AppSpec JSON is invalid"),
    ],
)
def test_unreadable_appspec_is_refused_with_a_reason(content, expected):
    with pytest.raises(hook_target.AppSpecError, match=expected):
        hook_target.parse_appspec(content)


def test_yaml_tags_that_would_run_code_are_refused():
    # safe_load only: an AppSpec is data, never a constructor call.
    with pytest.raises(hook_target.AppSpecError, match="AppSpec YAML is invalid"):
        hook_target.parse_appspec("Resources: !!python/object/apply:os.system ['true']\n")


def test_function_names_match_across_arns_and_names():
    assert hook_target.function_name_of(version_arn("3")) == FUNCTION
    assert hook_target.function_name_of(f"{FUNCTION}:live") == FUNCTION
    assert hook_target.version_of(version_arn("3")) == "3"


def test_budget_leaves_time_to_report():
    clock = FakeClock()
    budget = hook_calls.budget_from_context(FakeContext(180_000), hook_calls.Runtime(clock=clock.clock))
    assert budget.checks - clock.now == pytest.approx(147.0)
    assert budget.report - clock.now == pytest.approx(177.0)


# ---------------------------------------------------------------------------------------------------------
# Health route and database state


def test_health_path_is_the_route_driven_through_the_handler(aws, runtime):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe(http_health=True, health_path="/status/live"))
    aws.invoke("8", {"statusCode": 200, "body": '{"status": "OK"}'})
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    event = aws.invoked_events()[1][1]
    assert (event["path"], event["pathParameters"], event["requestContext"]["path"]) == (
        "/status/live",
        {"proxy": "status/live"},
        "/v1/status/live",
    )


@pytest.mark.parametrize("body", ['{"status": "pass"}', '{"status": "UP"}', '{"version": "1"}', "OK"])
def test_a_200_with_a_healthy_or_no_status_is_healthy(aws, runtime, body):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe(http_health=True))
    aws.invoke("8", {"statusCode": 200, "body": body})
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"


DB_DOWN = {
    **PROBE_OK,
    "db_version": None,
    "db_error": "OperationalError: connection to server at 127.0.0.1, port 1 failed: Connection refused",
}


def test_unreachable_database_fails_a_function_that_uses_it(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe(DB_DOWN, uses_database=True))
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    (reason,) = [r for r in failed_reasons(capsys.readouterr().out) if r.startswith("schema:")]
    assert "database is configured but cannot be read: OperationalError" in reason
    assert "Connection refused" in reason


@pytest.mark.parametrize(
    ("checks", "marker"),
    [
        ({"uses_database": False}, "[USES_DATABASE=false]"),
        ({"uses_database": False, "schema_mismatch": "warn"}, "[USES_DATABASE=false]"),
        ({"uses_database": True, "schema_mismatch": "warn"}, "[SCHEMA_MISMATCH=warn]"),
    ],
)
def test_unreachable_database_only_warns_otherwise(aws, runtime, capsys, checks, marker):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe(DB_DOWN, **checks))
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    schema = next(line for line in log_lines(capsys.readouterr().out) if line["check"] == "schema")
    assert schema["level"] == "WARN" and "cannot be read" in schema["reason"] and marker in schema["reason"]


@pytest.mark.parametrize(
    ("overrides", "status", "level"),
    [
        ({"uses_database": True}, "Failed", "ERROR"),  # the schema gate cannot pass on no version at all
        ({"uses_database": True, "schema_mismatch": "warn"}, "Succeeded", "WARN"),
        ({}, "Succeeded", "WARN"),
    ],
)
def test_no_database_version_fails_only_a_function_that_uses_its_database(
    aws, runtime, capsys, overrides, status, level
):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", probe({**PROBE_OK, "db_version": None}, **overrides))
    aws.put_status(status)
    assert run(runtime, env())["status"] == status
    schema = next(line for line in log_lines(capsys.readouterr().out) if line["check"] == "schema")
    assert schema["level"] == level and "no database version reported" in schema["reason"]
