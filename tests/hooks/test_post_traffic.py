# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""Post-traffic hook against a local HTTP server on 127.0.0.1 as the deployed API (CodeDeploy: Stubber)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hook_fakes import (
    FUNCTION,
    HOOK_EVENT,
    FakeContext,
    HangingServer,
    StubbedAws,
    appspec_yaml,
    function_checks,
    hook_calls,
    log_lines,
    post_traffic,
)

pytest_plugins = ["hook_fakes"]

ORIGIN = "https://app.credentialmate.com"
METHODS = "GET,POST,PUT,PATCH,DELETE,OPTIONS"
HEADERS = "Authorization,Content-Type"


@dataclass
class ApiBehaviour:
    health_status: int = 200
    health_body: dict[str, Any] = field(default_factory=lambda: {"status": "healthy"})
    cors: bool = True
    preflight_headers: str = HEADERS
    login_status: int = 401
    health_path: str = "/v1/health"
    health_text: bytes | None = None  # a non-JSON body instead of health_body
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


def _server(behaviour: ApiBehaviour) -> ThreadingHTTPServer:
    class Api(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:  # keep pytest output clean
            pass

        def _record(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            behaviour.requests.append((self.command, self.path, dict(self.headers), body))
            return body

        def _send(self, status: int, body: dict[str, Any] | None, headers: dict[str, str]) -> None:
            raw = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _cors(self) -> dict[str, str]:
            origin = self.headers.get("Origin")
            return {"Access-Control-Allow-Origin": origin} if behaviour.cors and origin == ORIGIN else {}

        def do_GET(self) -> None:
            self._record()
            if self.path == behaviour.health_path and behaviour.health_text is not None:
                self.send_response(behaviour.health_status)
                for key, value in self._cors().items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(behaviour.health_text)))
                self.end_headers()
                self.wfile.write(behaviour.health_text)
            elif self.path == behaviour.health_path:
                self._send(behaviour.health_status, behaviour.health_body, self._cors())
            else:
                self._send(404, {"detail": "Not Found"}, self._cors())

        def do_OPTIONS(self) -> None:
            self._record()
            headers = self._cors()
            if headers:
                headers |= {
                    "Access-Control-Allow-Methods": METHODS,
                    "Access-Control-Allow-Headers": behaviour.preflight_headers,
                }
            self._send(200 if headers else 400, None, headers)

        def do_POST(self) -> None:
            body = self._record()
            if self.path == "/v1/api/v1/auth/login":
                json.loads(body)  # a JSON body, as the backend expects
                detail = "Invalid credentials" if behaviour.login_status == 401 else "Internal Server Error"
                self._send(behaviour.login_status, {"detail": detail}, self._cors())
            else:
                self._send(404, {"detail": "Not Found"}, self._cors())

    return ThreadingHTTPServer(("127.0.0.1", 0), Api)


@pytest.fixture
def api() -> Iterator[tuple[str, ApiBehaviour]]:
    behaviour = ApiBehaviour()
    server = _server(behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/", behaviour
    finally:
        server.shutdown()
        server.server_close()


LOGIN_PATH = "/api/v1/auth/login"
LABEL = "BackendApi"
POST = {"health_path": "/health", "login_path": LOGIN_PATH, "login_body": "json"}
LIGHT_PROBE = {"credmate_probe": {"checks_only": True}}


def env(url: str, **extra: str) -> dict[str, str]:
    return {
        "API_URL": url,
        "ALLOWED_ORIGIN": ORIGIN,
        "CORS_METHODS": METHODS,
        "CORS_HEADERS": HEADERS,
        "TARGET_ALIAS": "live",
        **extra,
    }


def light_probe(post: dict[str, Any] | None = POST, **overrides: Any) -> dict[str, Any]:
    """The light probe's answer for a function whose CREDMATE_CHECKS has this `post`."""
    answer = {
        "probe": "ok",
        "function": LABEL,
        "handler": "handler.lambda_handler",
        "checks": function_checks(http_health=True, post=post),
        "errors": [],
    }
    return {**answer, **overrides}


def run(
    aws: StubbedAws,
    runtime: Any,
    environ: dict[str, str],
    expected: str,
    *,
    post: dict[str, Any] | None = POST,
    probe: Any = None,
    resolve: bool = True,
    context: Any = None,
) -> None:
    """One hook execution for version 8 (the AppSpec's), whose light probe answers `probe` (default: the
    function asks for `post`); `resolve=False` when the hook must stop before asking CodeDeploy anything."""
    if resolve:
        aws.get_deployment(appspec_yaml(target="8", current="6"))
        aws.invoke("8", light_probe(post) if probe is None else probe)
    aws.put_status(expected)
    result = post_traffic.run_post_traffic(
        HOOK_EVENT, context or FakeContext(60_000), environ=environ, runtime=runtime
    )
    assert result["status"] == expected
    assert [p["status"] for p in aws.operations("PutLifecycleEventHookExecutionStatus")] == [expected]
    if resolve:
        assert aws.invoked_events() == [("8", LIGHT_PROBE)]


def checks(output: str) -> dict[str, dict[str, Any]]:
    return {line["check"]: line for line in log_lines(output)}


def test_good_api_passes_all_four_checks(aws, runtime, api, capsys):
    url, behaviour = api
    run(aws, runtime, env(url), "Succeeded")
    output = capsys.readouterr().out
    assert all(
        line["function"] == FUNCTION and line["label"] == LABEL and line["version"] == "8"
        for line in log_lines(output)
        if line["check"] != "target_version"
    )
    lines = checks(output)
    assert lines["target_version"]["ok"] and lines["checks"]["ok"]
    assert all(
        lines[c]["ok"] for c in ("health", "cors_get", "cors_preflight", "login_rejects_bad_credentials")
    )
    methods = [(m, p) for m, p, _, _ in behaviour.requests]
    assert methods == [
        ("GET", "/v1/health"),
        ("OPTIONS", "/v1/api/v1/auth/login"),
        ("POST", "/v1/api/v1/auth/login"),
    ]
    preflight = behaviour.requests[1][2]
    assert preflight["Origin"] == ORIGIN and preflight["Access-Control-Request-Method"] == "POST"
    login_body = json.loads(behaviour.requests[2][3])
    assert login_body["email"].endswith("@example.com") and len(login_body["password"]) >= 24


def test_login_5xx_fails(aws, runtime, api, capsys):
    url, behaviour = api
    behaviour.login_status = 500
    run(aws, runtime, env(url), "Failed")
    login = checks(capsys.readouterr().out)["login_rejects_bad_credentials"]
    assert not login["ok"] and "returned 500 (server error, expected 401)" in login["reason"]


def test_missing_cors_fails_both_cors_checks(aws, runtime, api, capsys):
    url, behaviour = api
    behaviour.cors = False
    run(aws, runtime, env(url), "Failed")
    lines = checks(capsys.readouterr().out)
    assert lines["health"]["ok"]
    assert (
        not lines["cors_get"]["ok"] and "Access-Control-Allow-Origin is None" in lines["cors_get"]["reason"]
    )
    assert not lines["cors_preflight"]["ok"]


def test_preflight_missing_a_configured_header_fails_naming_it(aws, runtime, api, capsys):
    url, behaviour = api
    behaviour.preflight_headers = "Content-Type"
    run(aws, runtime, env(url), "Failed")
    preflight = checks(capsys.readouterr().out)["cors_preflight"]
    assert "Access-Control-Allow-Headers lacks Authorization" in preflight["reason"]


def test_unhealthy_api_fails(aws, runtime, api, capsys):
    url, behaviour = api
    behaviour.health_status, behaviour.health_body = 503, {"status": "unhealthy"}
    run(aws, runtime, env(url), "Failed")
    assert "GET /health returned 503" in checks(capsys.readouterr().out)["health"]["reason"]


def test_unreachable_api_fails_in_time_and_still_reports(aws, runtime, capsys):
    # A port nothing listens on: connection refused, retried until the budget ends, then Failed.
    run(aws, runtime, env("http://127.0.0.1:9/v1/"), "Failed")
    assert not checks(capsys.readouterr().out)["health"]["ok"]


def test_bad_api_url_is_a_config_failure(aws, runtime, capsys):
    run(aws, runtime, {**env("ftp://example.invalid"), "ALLOWED_ORIGIN": ORIGIN}, "Failed", resolve=False)
    assert aws.operations("GetDeployment") == []
    assert "API_URL" in checks(capsys.readouterr().out)["config"]["reason"]


def test_without_a_login_path_the_login_check_is_skipped_and_the_preflight_targets_health(
    aws, runtime, api, capsys
):
    # GIVEN an API function with no login route (LOGIN_PATH unset) and its health route elsewhere
    url, behaviour = api
    behaviour.health_path = "/v1/status/ping"
    post = {"health_path": "/status/ping", "login_path": None, "login_body": "json"}
    # WHEN the hook runs THEN it passes, never posts, and preflights the health route
    run(aws, runtime, env(url), "Succeeded", post=post)
    lines = checks(capsys.readouterr().out)
    assert [(m, p) for m, p, _, _ in behaviour.requests] == [
        ("GET", "/v1/status/ping"),
        ("OPTIONS", "/v1/status/ping"),
    ]
    login = lines["login_rejects_bad_credentials"]
    assert login["ok"] and login["level"] == "WARN" and "no login_path is configured" in login["reason"]
    assert "GET /status/ping: healthy" in lines["health"]["reason"]


def test_health_path_is_configurable_and_a_wrong_one_fails(aws, runtime, api, capsys):
    url, _behaviour = api
    run(aws, runtime, env(url), "Failed", post={**POST, "health_path": "/healthz"})
    assert "GET /healthz returned 404" in checks(capsys.readouterr().out)["health"]["reason"]


@pytest.mark.parametrize(
    ("body", "text", "healthy"),
    [
        ({"status": "ok"}, None, True),
        ({"status": "PASS"}, None, True),
        ({"status": "Up", "checks": {}}, None, True),
        ({"uptime": 12}, None, True),  # no "status" key: the 200 decides
        (None, b"OK", True),  # not JSON: the 200 decides
        ({"status": "degraded"}, None, False),
        ({"status": "unhealthy"}, None, False),
        ({"status": None}, None, False),
        ({"status": 1}, None, False),
    ],
)
def test_healthy_means_200_and_a_healthy_status_when_there_is_one(
    aws, runtime, api, capsys, body, text, healthy
):
    url, behaviour = api
    behaviour.health_body, behaviour.health_text = body, text
    run(aws, runtime, env(url), "Succeeded" if healthy else "Failed")
    health = checks(capsys.readouterr().out)["health"]
    assert health["ok"] is healthy
    if not healthy:
        assert "not one of healthy, ok, pass, up" in health["reason"]


@pytest.mark.parametrize(("name", "value"), [("health_path", "health"), ("login_path", "login")])
def test_paths_must_start_with_a_slash(aws, runtime, api, capsys, name, value):
    url, behaviour = api
    run(aws, runtime, env(url), "Failed", post={**POST, name: value})
    assert f"post.{name}='{value}' must be" in checks(capsys.readouterr().out)["checks"]["reason"]
    assert behaviour.requests == []


def test_a_function_without_post_traffic_checks_succeeds_saying_so(aws, runtime, api, capsys):
    # GIVEN a function whose CREDMATE_CHECKS has post null (a queue worker)
    url, behaviour = api
    # WHEN the shared post-traffic hook runs for its deployment
    run(aws, runtime, env(url), "Succeeded", post=None)
    # THEN it reports Succeeded without a request, and its log says why
    assert behaviour.requests == []
    lines = checks(capsys.readouterr().out)
    note = lines["checks"]
    assert note["ok"] and f"no post-traffic checks are configured for function {FUNCTION}" in note["reason"]
    assert LABEL in note["reason"] and "health" not in lines


def test_a_probe_without_checks_fails_saying_so(aws, runtime, api, capsys):
    url, behaviour = api
    older = {"probe": "ok", "handler": "handler.lambda_handler", "function": LABEL, "errors": []}
    run(aws, runtime, env(url), "Failed", probe=older)
    assert behaviour.requests == []
    reason = checks(capsys.readouterr().out)["checks"]["reason"]
    assert "the function has no CREDMATE_CHECKS (deployed by an older credmate-lambda?)" in reason


def test_a_light_probe_that_raises_fails(aws, runtime, api, capsys):
    url, behaviour = api
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke(
        "8",
        {"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'mangum'"},
        function_error="Unhandled",
    )
    run(aws, runtime, env(url), "Failed", resolve=False)
    assert behaviour.requests == []
    assert "raised Runtime.ImportModuleError" in checks(capsys.readouterr().out)["checks"]["reason"]


def test_the_version_comes_from_the_deployment_target_when_the_appspec_is_unusable(aws, runtime, api):
    url, behaviour = api
    aws.get_deployment(None)
    aws.deployment_target("7", "6")
    aws.invoke("7", light_probe())
    run(aws, runtime, env(url), "Succeeded", resolve=False)
    assert aws.invoked_events() == [("7", LIGHT_PROBE)]
    assert [m for m, _, _, _ in behaviour.requests] == ["GET", "OPTIONS", "POST"]


def test_no_version_to_check_fails_naming_both_sources_without_a_request(aws, runtime, api, capsys):
    url, behaviour = api
    aws.get_deployment(None)
    aws.list_targets()
    run(aws, runtime, env(url), "Failed", resolve=False)
    assert aws.operations("Invoke") == [] and behaviour.requests == []
    reason = checks(capsys.readouterr().out)["target_version"]["reason"]
    assert "AppSpec (GetDeployment)" in reason and "ListDeploymentTargets returned no targets" in reason


def test_form_login_body_comes_from_the_checks(aws, runtime, api):
    url, behaviour = api
    run(aws, runtime, env(url), "Failed", post={**POST, "login_body": "form"})
    (_, _, headers, body) = behaviour.requests[-1]
    assert headers["Content-Type"] == "application/x-www-form-urlencoded" and b"username=" in body


def test_real_time_hanging_api_reports_failed_before_the_timeout(aws, capsys):
    # GIVEN an API whose every request hangs, and 5 s left, on the real clock
    aws.get_deployment(appspec_yaml(target="8"))
    aws.invoke("8", light_probe())
    aws.put_status("Failed")
    left = 5.0
    with HangingServer() as api:
        started = time.monotonic()
        result = post_traffic.run_post_traffic(
            HOOK_EVENT,
            FakeContext(int(left * 1000)),
            environ=env(api.url + "/v1/"),
            runtime=hook_calls.Runtime(),
        )
        elapsed = time.monotonic() - started
        hits = list(api.hits)
    # THEN every check failed on time, no request started without time to finish, and Failed was reported
    assert result["status"] == "Failed"
    assert [p["status"] for p in aws.operations("PutLifecycleEventHookExecutionStatus")] == ["Failed"]
    assert elapsed < left - 0.2, f"reported after {elapsed:.1f}s of {left}s"
    assert hits and hits[0][:2] == ("GET", "/v1/health")
    lines = checks(capsys.readouterr().out)
    assert not any(lines[c]["ok"] for c in ("health", "cors_preflight", "login_rejects_bad_credentials"))
