# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""Pre-traffic hook against Stubber fakes of CodeDeploy and Lambda (no network, no AWS account).

Each test queues the exact AWS calls it expects; Stubber fails on any call not queued, so "reported exactly
once" and "invoked exactly this version" are enforced by the stubs, and checked again on the recorded calls.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from hook_fakes import (
    DEPLOYMENT_ID,
    FUNCTION,
    HOOK_EVENT,
    REAL_CLIENT,
    FakeClock,
    FakeContext,
    HangingServer,
    SlowAws,
    StubbedAws,
    appspec_yaml,
    function_checks,
    hook_core,
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


def run(runtime: hook_core.Runtime, environ: dict[str, str], context: Any = None) -> dict[str, Any]:
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
# Throttling, deadlines, exceptions, permissions: always exactly one report


def test_throttled_invoke_is_retried_with_backoff_then_succeeds(aws, runtime, fake_clock: FakeClock):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke_error("TooManyRequestsException", 429)
    aws.invoke_error("TooManyRequestsException", 429)
    aws.invoke("8", PROBE_OK)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    assert len(fake_clock.sleeps) == 2
    # full jitter under an exponential cap: 0.25 * 2**attempt
    assert fake_clock.sleeps[0] <= 0.5 and fake_clock.sleeps[1] <= 1.0


def test_throttled_until_the_deadline_reports_failed_in_time(aws, runtime, fake_clock: FakeClock, capsys):
    # GIVEN Lambda throttles every invoke and the hook has 20 s left
    aws.get_deployment(appspec_yaml(target="8"))
    for _ in range(200):
        aws.invoke_error("TooManyRequestsException", 429)
    aws.put_status("Failed")
    start = fake_clock.now
    # WHEN the hook runs
    result = run(runtime, env(), FakeContext(remaining_ms=20_000))
    # THEN it gave up before the checks' deadline and still reported Failed before its own timeout
    assert result["status"] == "Failed"
    assert reported(aws) == ["Failed"]
    assert fake_clock.now - start < 20 * 0.75
    assert any(
        "still failing" in r and "TooManyRequestsException" in r
        for r in failed_reasons(capsys.readouterr().out)
    )


def test_access_denied_on_invoke_fails(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke_error("AccessDeniedException", 403)
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any("AccessDeniedException" in r for r in failed_reasons(capsys.readouterr().out))


class _TimingOutLambda:
    def invoke(self, **_: Any) -> Any:
        raise ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com")


def test_invoke_timeout_fails(aws, runtime, monkeypatch, capsys):
    clients = {"codedeploy": aws.codedeploy, "lambda": _TimingOutLambda()}
    monkeypatch.setattr(hook_core, "client", lambda service, **_: clients[service])
    aws.get_deployment(appspec_yaml(target="8"))
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any("timed out" in r for r in failed_reasons(capsys.readouterr().out))


def test_unexpected_exception_in_checks_reports_failed_exactly_once(aws, runtime, monkeypatch, capsys):
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(hook_core, "resolve_target", boom)
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert reported(aws) == ["Failed"]
    assert "hook: checks stopped by an unexpected error: RuntimeError: something nobody planned for" in (
        failed_reasons(capsys.readouterr().out)
    )


def test_a_probe_without_checks_fails_saying_so(aws, runtime, capsys):
    # GIVEN a version deployed by an older credmate-lambda: its probe answers, without `checks`
    older = {k: v for k, v in PROBE_OK.items() if k != "checks"}
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", older)
    aws.put_status("Failed")
    # WHEN the hook runs THEN it fails clearly, and runs nothing it was not asked for
    assert run(runtime, env())["status"] == "Failed"
    assert [q for q, _ in aws.invoked_events()] == ["8"]
    reasons = failed_reasons(capsys.readouterr().out)
    assert (
        "checks: version 8: the function has no CREDMATE_CHECKS (deployed by an older credmate-lambda?)"
        in reasons
    )
    assert not any(r.startswith("schema:") for r in reasons)


def test_a_probe_reporting_its_checks_variable_unset_fails_with_the_probes_words(aws, runtime, capsys):
    unset = "CREDMATE_CHECKS is not set: the hooks cannot tell what to check for this function"
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", {**PROBE_OK, "probe": "failed", "checks": None, "errors": [unset]})
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    reasons = failed_reasons(capsys.readouterr().out)
    assert any(r.startswith("probe: probe of version 8 failed: CREDMATE_CHECKS is not set") for r in reasons)
    (checks,) = [r for r in reasons if r.startswith("checks:")]
    assert "has no CREDMATE_CHECKS" in checks and unset in checks


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ({"post": None}, "CREDMATE_CHECKS pre must be an object"),
        (function_checks(uses_database="maybe"), "pre.uses_database='maybe' must be bool"),
        (function_checks(schema_mismatch="ignore"), "pre.schema_mismatch='ignore' must be fail|warn"),
        (function_checks(health_path="health"), "pre.health_path='health' must be a path starting with '/'"),
        ({"pre": function_checks()["pre"], "post": "yes"}, "post must be null or an object"),
        ("[]", "CREDMATE_CHECKS must be an object, got str"),
    ],
)
def test_malformed_checks_fail_naming_the_field(aws, runtime, capsys, checks, expected):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", {**PROBE_OK, "checks": checks})
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any(r.startswith("checks:") and expected in r for r in failed_reasons(capsys.readouterr().out))


def test_reporting_is_retried_when_throttled(aws, runtime, fake_clock):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", PROBE_OK)
    aws.put_error("ThrottlingException")
    aws.put_error("InternalFailure", 500)
    aws.put_status("Succeeded")
    assert run(runtime, env())["status"] == "Succeeded"
    assert len(aws.operations("PutLifecycleEventHookExecutionStatus")) == 3
    assert len(fake_clock.sleeps) == 2


def test_reporting_that_never_succeeds_is_logged_and_raised(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", PROBE_OK)
    for _ in range(200):
        aws.put_error("ThrottlingException")
    with pytest.raises(hook_core.DeadlineExceeded):
        run(runtime, env(), FakeContext(remaining_ms=20_000))
    assert any(
        r.startswith("report: could not report Succeeded") for r in failed_reasons(capsys.readouterr().out)
    )


def test_reporting_denied_is_logged_and_raised_without_waiting(aws, runtime, fake_clock, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", PROBE_OK)
    aws.put_error("AccessDeniedException", 403)
    with pytest.raises(Exception, match="AccessDenied"):
        run(runtime, env())
    assert fake_clock.sleeps == []
    assert any("AccessDeniedException" in r for r in failed_reasons(capsys.readouterr().out))


def test_an_already_completed_lifecycle_event_counts_as_reported(aws, runtime, capsys):
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", PROBE_OK)
    aws.put_error("LifecycleEventAlreadyCompletedException")
    assert run(runtime, env())["status"] == "Succeeded"


@pytest.mark.parametrize("event", [{}, {"DeploymentId": "d-1"}, "not an event", None])
def test_an_event_without_ids_raises_without_reporting(aws, runtime, event):
    with pytest.raises(hook_core.HookEventError):
        pre_traffic.run_pre_traffic(event, FakeContext(), environ=env(), runtime=runtime)
    assert aws.calls == []


# ---------------------------------------------------------------------------------------------------------
# Pure parts


def test_appspec_yaml_subset_parses_like_yaml():
    document = hook_core.parse_appspec(appspec_yaml(target="8", current="6", other_alias="live"))
    targets = hook_core.appspec_targets(document)
    assert [(t.name, t.alias, t.current_version, t.target_version) for t in targets] == [
        ("credmate-staging-WorkerFunction-Zz9", "live", "40", "41"),
        (FUNCTION, "live", "6", "8"),
    ]
    assert document["Hooks"] == [{"BeforeAllowTraffic": "credmate-staging-PreTrafficHook"}]


def test_flow_style_appspec_parses_like_block_style():
    block = hook_core.parse_appspec(appspec_yaml(target="8", current="6", other_alias="live"))
    flow = hook_core.parse_appspec(
        "{version: 0.0, Resources: ["
        "{OtherFunction: {Type: 'AWS::Lambda::Function', Properties: {"
        "Name: credmate-staging-WorkerFunction-Zz9, Alias: live, CurrentVersion: '40',"
        " TargetVersion: '41'}}},"
        f" {{AbC123: {{Type: 'AWS::Lambda::Function', Properties: {{Name: {FUNCTION}, Alias: live,"
        " CurrentVersion: '6', TargetVersion: '8'}}}],"
        " Hooks: [{BeforeAllowTraffic: credmate-staging-PreTrafficHook}]}"
    )
    assert hook_core.appspec_targets(flow) == hook_core.appspec_targets(block)


def test_unquoted_version_numbers_are_read_as_text():
    document = hook_core.parse_appspec(
        f"Resources:\n  - Fn:\n      Properties: {{Name: {FUNCTION}, CurrentVersion: 6, TargetVersion: 8}}\n"
    )
    (target,) = hook_core.appspec_targets(document)
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
    with pytest.raises(hook_core.AppSpecError, match=expected):
        hook_core.parse_appspec(content)


def test_yaml_tags_that_would_run_code_are_refused():
    # safe_load only: an AppSpec is data, never a constructor call.
    with pytest.raises(hook_core.AppSpecError, match="AppSpec YAML is invalid"):
        hook_core.parse_appspec("Resources: !!python/object/apply:os.system ['true']\n")


def test_function_names_match_across_arns_and_names():
    assert hook_core.function_name_of(version_arn("3")) == FUNCTION
    assert hook_core.function_name_of(f"{FUNCTION}:live") == FUNCTION
    assert hook_core.version_of(version_arn("3")) == "3"


def test_budget_leaves_time_to_report():
    clock = FakeClock()
    budget = hook_core.budget_from_context(FakeContext(180_000), hook_core.Runtime(clock=clock.clock))
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


# ---------------------------------------------------------------------------------------------------------
# Deadlines with slow services: every call costs time on the hook's clock (SlowAws). 20 s left: Lambda
# would kill the hook at START + 20; it must have reported before, whatever the services do.

START = 1000.0  # FakeClock's start
LEFT = 20.0
KILLED_AT = START + LEFT


def budget_now() -> hook_core.Budget:
    clock = FakeClock()
    return hook_core.budget_from_context(FakeContext(int(LEFT * 1000)), hook_core.Runtime(clock=clock.clock))


def assert_never_outlives_the_hook(slow: SlowAws) -> None:
    """No call could still run when Lambda kills the hook, and none started without time to finish."""
    assert slow.calls, "the fakes saw no call"
    for call in slow.calls:
        assert call.ended <= call.started + call.timeout + 1e-9, call
        assert call.started + call.timeout <= KILLED_AT, f"{call} could outlive the hook"
        assert call.timeout >= hook_core.MIN_ATTEMPT_SECONDS, f"{call} started without time to finish"


def assert_reported_in_time(slow: SlowAws, status: str) -> None:
    puts = slow.of("put_lifecycle_event_hook_execution_status")
    assert [c.outcome for c in puts][-1] == "ok"
    assert puts[-1].ended <= budget_now().report < KILLED_AT
    assert reported(slow.aws)[-1] == status


def test_hanging_target_reports_failed_before_the_hook_is_killed(slow_aws, runtime, fake_clock, capsys):
    # GIVEN a target that never answers, and 20 s left
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    slow_aws.delays["invoke"] = [float("inf"), float("inf")]
    slow_aws.aws.put_status("Failed")
    # WHEN the hook runs
    result = run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    # THEN the probe's invoke ended at the checks' deadline, nothing else was invoked (no answer says what
    # to check), and Failed was reported before Lambda's timeout
    assert result["status"] == "Failed"
    (invoke,) = slow_aws.of("invoke")
    assert invoke.outcome == "timeout" and invoke.ended == pytest.approx(budget_now().checks)
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Failed")
    reasons = failed_reasons(capsys.readouterr().out)
    assert any(r.startswith("probe: invoke of version 8 timed out") for r in reasons)


def test_a_slow_probe_leaves_no_time_for_http_health_which_is_not_attempted(slow_aws, runtime, capsys):
    # GIVEN a probe asking for GET /health that answers with half a second of the checks' time left
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    slow_aws.aws.invoke("8", probe(http_health=True))
    slow_aws.delays["invoke"] = [budget_now().checks - START - 0.5]
    slow_aws.aws.put_status("Failed")
    result = run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    # THEN GET /health is not started (it could not finish), which fails the deployment, in time
    assert result["status"] == "Failed"
    assert len(slow_aws.of("invoke")) == 1
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Failed")
    reasons = failed_reasons(capsys.readouterr().out)
    assert any(
        r.startswith("http_health: invoke of version 8: Invoke") and "not attempted" in r for r in reasons
    )


def test_each_invoke_gets_the_time_left_when_it_starts(slow_aws, runtime):
    # GIVEN a probe that takes 10 s and a GET /health that hangs
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    slow_aws.aws.invoke("8", probe(http_health=True))
    slow_aws.delays["invoke"] = [10.0, float("inf")]
    slow_aws.aws.put_status("Failed")
    run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    # THEN the second invoke's timeout is what was left after the first, not the first one's timeout
    probe_call, health = slow_aws.of("invoke")
    checks_deadline = budget_now().checks
    assert probe_call.timeout == pytest.approx(checks_deadline - probe_call.started)
    assert health.started == pytest.approx(probe_call.ended)
    assert health.timeout == pytest.approx(checks_deadline - health.started)
    assert health.timeout < probe_call.timeout
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Failed")


@pytest.mark.parametrize("health_payload", [b"<html>502 Bad Gateway</html>", b"\xff\xfe not json"])
def test_target_answering_something_that_is_not_json_fails_in_time(slow_aws, runtime, capsys, health_payload):
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    slow_aws.aws.invoke("8", probe(http_health=True))
    slow_aws.aws.invoke("8", health_payload)
    slow_aws.default_delay = 2.0
    slow_aws.aws.put_status("Failed")
    result = run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    assert result["status"] == "Failed"
    reasons = failed_reasons(capsys.readouterr().out)
    assert any(r.startswith("http_health: GET /health on version 8 returned no API Gateway") for r in reasons)
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Failed")


def test_invoke_throttled_until_the_deadline_never_starts_an_attempt_it_cannot_finish(
    slow_aws, runtime, capsys
):
    # GIVEN every invoke is throttled and each throttled answer itself takes 1.5 s
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    for _ in range(100):
        slow_aws.aws.invoke_error("TooManyRequestsException", 429)
    slow_aws.delays["invoke"] = [1.5] * 100
    slow_aws.aws.put_status("Failed")
    result = run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    assert result["status"] == "Failed"
    invokes = slow_aws.of("invoke")
    assert len(invokes) > 2 and {c.outcome for c in invokes} == {"TooManyRequestsException"}
    checks_deadline = budget_now().checks
    assert all(checks_deadline - c.started >= hook_core.MIN_ATTEMPT_SECONDS for c in invokes)
    assert invokes[-1].ended <= checks_deadline
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Failed")
    assert any("TooManyRequestsException" in r for r in failed_reasons(capsys.readouterr().out))


def test_hanging_get_deployment_leaves_the_deployment_target_time_to_be_tested(slow_aws, runtime, capsys):
    # GIVEN GetDeployment never answers; the deployment's Lambda target names version 7
    slow_aws.delays["get_deployment"] = [float("inf")] * 10
    slow_aws.aws.deployment_target("7")
    slow_aws.aws.invoke("7", PROBE_OK)
    slow_aws.aws.put_status("Succeeded")
    result = run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    # THEN GetDeployment got only its share of the checks' time, and version 7 was still tested in time
    assert result["status"] == "Succeeded"
    gets = slow_aws.of("get_deployment")
    budget = budget_now()
    assert gets[-1].ended - START <= (budget.checks - START) * 0.25 + 1e-9
    assert [q for q, _ in slow_aws.aws.invoked_events()] == ["7"]
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Succeeded")
    target = next(line for line in log_lines(capsys.readouterr().out) if line["check"] == "target_version")
    assert "GetDeployment did not answer" in target["reason"]


@pytest.mark.parametrize("failure", ["hangs", "errors"])
def test_both_sources_failing_reports_failed_in_time(slow_aws, runtime, capsys, failure):
    # GIVEN GetDeployment and ListDeploymentTargets both hang, or both keep failing
    for operation in ("get_deployment", "list_deployment_targets"):
        if failure == "hangs":
            slow_aws.delays[operation] = [float("inf")] * 10
        else:
            slow_aws.fail_with[operation] = ClientError(
                {"Error": {"Code": "InternalFailure"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
                operation,
            )
            slow_aws.delays[operation] = [0.8] * 50
    slow_aws.aws.put_status("Failed")
    result = run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    assert result["status"] == "Failed"
    assert slow_aws.of("invoke") == []
    budget = budget_now()
    # each source stayed within its share of what was left when it started
    (first_list, *_) = slow_aws.of("list_deployment_targets")
    assert slow_aws.of("get_deployment")[-1].ended - START <= (budget.checks - START) * 0.25 + 1e-9
    assert (
        slow_aws.of("list_deployment_targets")[-1].ended - first_list.started
        <= (budget.checks - first_list.started) * 0.25 + 1e-9
    )
    if failure == "errors":
        assert len(slow_aws.of("get_deployment")) > 1  # retried within its share
        assert len(slow_aws.of("list_deployment_targets")) > 1
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Failed")
    assert any(
        r.startswith("target_version: no version to test") for r in failed_reasons(capsys.readouterr().out)
    )


def test_report_throttled_repeatedly_keeps_retrying_but_never_past_the_deadline(slow_aws, runtime, capsys):
    # GIVEN a hanging target (the checks use their whole share) and a report that is always throttled,
    # each throttled answer taking 2 s
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    slow_aws.delays["invoke"] = [float("inf")]
    for _ in range(50):
        slow_aws.aws.put_error("ThrottlingException")
    slow_aws.delays["put_lifecycle_event_hook_execution_status"] = [2.0] * 50
    # WHEN the hook runs THEN it retries the report while an attempt still fits, then gives up, loudly
    with pytest.raises(
        hook_core.DeadlineExceeded, match="PutLifecycleEventHookExecutionStatus still failing"
    ):
        run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    puts = slow_aws.of("put_lifecycle_event_hook_execution_status")
    report_deadline = budget_now().report
    assert len(puts) >= 2
    assert all(report_deadline - c.started >= hook_core.MIN_ATTEMPT_SECONDS for c in puts)
    assert all(c.started + c.timeout <= report_deadline + 1e-9 for c in puts)
    assert_never_outlives_the_hook(slow_aws)
    assert any(
        r.startswith("report: could not report Failed") for r in failed_reasons(capsys.readouterr().out)
    )


def test_report_that_hangs_once_is_retried_with_the_time_left(slow_aws, runtime):
    slow_aws.aws.get_deployment(appspec_yaml(target="8"))
    slow_aws.aws.invoke("8", PROBE_OK)
    slow_aws.aws.put_status("Succeeded")
    slow_aws.delays["put_lifecycle_event_hook_execution_status"] = [float("inf")]
    assert run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))["status"] == "Succeeded"
    first, second = slow_aws.of("put_lifecycle_event_hook_execution_status")
    assert first.outcome == "timeout" and second.outcome == "ok"
    assert first.timeout <= hook_core.REPORT_ATTEMPT_SECONDS
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Succeeded")


@pytest.mark.parametrize("left_ms", [3_000, 60_000, 180_000, 900_000])
def test_report_deadline_always_ends_before_lambdas_timeout(left_ms):
    clock = FakeClock()
    budget = hook_core.budget_from_context(FakeContext(left_ms), hook_core.Runtime(clock=clock.clock))
    assert clock.now < budget.checks < budget.report < clock.now + left_ms / 1000


def test_real_time_hanging_lambda_endpoint_reports_before_the_timeout(aws, monkeypatch, capsys):
    # GIVEN real boto3 Lambda clients pointed at a loopback endpoint that never answers, and 6 s left
    # (CodeDeploy stays a Stubber: its report is instant, so the time measured is the invoke's)
    monkeypatch.setattr(
        hook_core,
        "client",
        lambda service, **kw: aws.codedeploy if service == "codedeploy" else REAL_CLIENT(service, **kw),
    )
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)
    aws.get_deployment(appspec_yaml(target="8"))
    aws.put_status("Failed")
    left = 6.0
    with HangingServer() as lambda_endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_endpoint.url)
        started = time.monotonic()
        # WHEN the hook runs on the real clock
        result = pre_traffic.run_pre_traffic(
            HOOK_EVENT,
            FakeContext(remaining_ms=int(left * 1000)),
            environ=env(),
            runtime=hook_core.Runtime(),
        )
        elapsed = time.monotonic() - started
        hits = list(lambda_endpoint.hits)
    # THEN it reported Failed before Lambda would have killed it, and botocore retried nothing on its own
    assert result["status"] == "Failed" and reported(aws) == ["Failed"]
    assert elapsed < left - 0.2, f"reported after {elapsed:.1f}s of {left}s"
    assert 1 <= len(hits) <= 2  # the probe, and GET /health when time allowed: one request each
    assert all(path.startswith("/2015-03-31/functions/") for _method, path, _at in hits)
    assert any("timed out" in r for r in failed_reasons(capsys.readouterr().out))


@pytest.mark.parametrize("seconds", [1.0, 4.5, 14.0, 170.0])
def test_a_client_is_made_for_one_attempt_that_ends_within_its_seconds(monkeypatch, seconds):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = REAL_CLIENT("lambda", timeout=seconds).meta.config
    assert config.connect_timeout + config.read_timeout == pytest.approx(seconds)
    assert 0 < config.connect_timeout <= hook_core.MAX_CONNECT_SECONDS
    assert config.retries["total_max_attempts"] == 1
