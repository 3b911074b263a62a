# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""Pre-traffic hook under faults, against Stubber fakes of CodeDeploy and Lambda (no network, no AWS account):
throttling, deadlines, exceptions, permissions and slow or hanging services; always exactly one report.

Each test queues the exact AWS calls it expects; Stubber fails on any call not queued, so "reported exactly
once" and "invoked exactly this version" are enforced by the stubs, and checked again on the recorded calls.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from hook_fakes import (
    HOOK_EVENT,
    REAL_CLIENT,
    FakeClock,
    FakeContext,
    HangingServer,
    SlowAws,
    appspec_yaml,
    function_checks,
    hook_calls,
    hook_report,
    hook_target,
    log_lines,
    pre_traffic,
)

pytest_plugins = ["hook_fakes"]

from test_pre_traffic import PROBE_OK, env, failed_reasons, probe, reported, run  # noqa: E402

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
    monkeypatch.setattr(hook_calls, "client", lambda service, **_: clients[service])
    aws.get_deployment(appspec_yaml(target="8"))
    aws.put_status("Failed")
    assert run(runtime, env())["status"] == "Failed"
    assert any("timed out" in r for r in failed_reasons(capsys.readouterr().out))


def test_unexpected_exception_in_checks_reports_failed_exactly_once(aws, runtime, monkeypatch, capsys):
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(hook_target, "resolve_target", boom)
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
    with pytest.raises(hook_calls.DeadlineExceeded):
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
    with pytest.raises(hook_report.HookEventError):
        pre_traffic.run_pre_traffic(event, FakeContext(), environ=env(), runtime=runtime)
    assert aws.calls == []


# ---------------------------------------------------------------------------------------------------------
# Deadlines with slow services: every call costs time on the hook's clock (SlowAws). 20 s left: Lambda
# would kill the hook at START + 20; it must have reported before, whatever the services do.

START = 1000.0  # FakeClock's start
LEFT = 20.0
KILLED_AT = START + LEFT


def budget_now() -> hook_calls.Budget:
    clock = FakeClock()
    return hook_calls.budget_from_context(
        FakeContext(int(LEFT * 1000)), hook_calls.Runtime(clock=clock.clock)
    )


def assert_never_outlives_the_hook(slow: SlowAws) -> None:
    """No call could still run when Lambda kills the hook, and none started without time to finish."""
    assert slow.calls, "the fakes saw no call"
    for call in slow.calls:
        assert call.ended <= call.started + call.timeout + 1e-9, call
        assert call.started + call.timeout <= KILLED_AT, f"{call} could outlive the hook"
        assert call.timeout >= hook_calls.MIN_ATTEMPT_SECONDS, f"{call} started without time to finish"


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
    assert all(checks_deadline - c.started >= hook_calls.MIN_ATTEMPT_SECONDS for c in invokes)
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
        hook_calls.DeadlineExceeded, match="PutLifecycleEventHookExecutionStatus still failing"
    ):
        run(runtime, env(), FakeContext(remaining_ms=int(LEFT * 1000)))
    puts = slow_aws.of("put_lifecycle_event_hook_execution_status")
    report_deadline = budget_now().report
    assert len(puts) >= 2
    assert all(report_deadline - c.started >= hook_calls.MIN_ATTEMPT_SECONDS for c in puts)
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
    assert first.timeout <= hook_report.REPORT_ATTEMPT_SECONDS
    assert_never_outlives_the_hook(slow_aws)
    assert_reported_in_time(slow_aws, "Succeeded")


@pytest.mark.parametrize("left_ms", [3_000, 60_000, 180_000, 900_000])
def test_report_deadline_always_ends_before_lambdas_timeout(left_ms):
    clock = FakeClock()
    budget = hook_calls.budget_from_context(FakeContext(left_ms), hook_calls.Runtime(clock=clock.clock))
    assert clock.now < budget.checks < budget.report < clock.now + left_ms / 1000


def test_real_time_hanging_lambda_endpoint_reports_before_the_timeout(aws, monkeypatch, capsys):
    # GIVEN real boto3 Lambda clients pointed at a loopback endpoint that never answers, and 6 s left
    # (CodeDeploy stays a Stubber: its report is instant, so the time measured is the invoke's)
    monkeypatch.setattr(
        hook_calls,
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
            runtime=hook_calls.Runtime(),
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
    assert 0 < config.connect_timeout <= hook_calls.MAX_CONNECT_SECONDS
    assert config.retries["total_max_attempts"] == 1
