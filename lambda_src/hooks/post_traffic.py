"""CodeDeploy AfterAllowTraffic hook: the incident runbook's checks on the public API, after the shift.

Handler `post_traffic.handler`. One instance serves every deployment group of an environment. Environment:
API_URL (the stage URL), ALLOWED_ORIGIN (one browser origin the API must allow), CORS_METHODS and
CORS_HEADERS (comma-separated, what a preflight must allow), TARGET_ALIAS (default `live`).

Which function and version: as the pre-traffic hook (hook_target.resolve_target: the deployment's AppSpec,
else ListDeploymentTargets + GetDeploymentTarget). What to check: that version's light probe
(`{"credmate_probe": {"checks_only": true}}`: no database or version read, no import sweep) answers with
`checks`, its function's CREDMATE_CHECKS parsed. `checks.post` null (a function without an API, such as a
queue worker): Succeeded, with a log line saying no post-traffic checks are configured for it. Otherwise its
`health_path`, `login_path` (null: no login route) and `login_body` (`json` or `form`) drive:

1. health: GET health_path answers 200 and, if its JSON body has a "status", it is healthy/ok/pass/up;
2. cors_get: that response carries Access-Control-Allow-Origin for ALLOWED_ORIGIN;
3. cors_preflight: OPTIONS on the login path (the health path without one) from ALLOWED_ORIGIN allows every
   configured method and header (OPTIONS itself need not be listed: browsers never preflight a preflight);
4. login_rejects_bad_credentials: POST login_path with credentials that cannot exist answers 401, not 5xx;
   skipped, with a log line, when login_path is null.

A probe response without valid `checks` fails ("the function has no CREDMATE_CHECKS (deployed by an older
credmate-lambda?)"). HTTP with urllib only; the same reporting guarantee as the pre-traffic hook
(hook_report.run_hook): every call's timeout comes from the budget left when it starts, and none starts
without time to finish. scripts/deploy/smoke_test.py runs the same four checks (api_checks) from a laptop.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import hook_calls
import hook_checks
from hook_calls import Budget, Clients, Runtime
from hook_checks import PROBE_KEY, PostChecks, function_checks, invoke_check
from hook_report import CheckResult, ConfigError, HookIds, HookLog, env_list, env_required, run_hook
from hook_target import find_target

USER_AGENT = "credmate-post-traffic-hook"
MAX_REQUEST_SECONDS = 15.0


@dataclass(frozen=True)
class ApiSettings:
    """The hook's own environment: the environment's API, and what its browsers need from it."""

    api_url: str
    allowed_origin: str
    cors_methods: tuple[str, ...]
    cors_headers: tuple[str, ...]
    alias: str = "live"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        api_url = env_required(environ, "API_URL")
        if urllib.parse.urlsplit(api_url).scheme not in ("http", "https"):
            raise ConfigError(f"environment variable API_URL={api_url!r} must be an http(s) URL")
        return cls(
            api_url=api_url,
            allowed_origin=env_required(environ, "ALLOWED_ORIGIN"),
            cors_methods=tuple(m.upper() for m in env_list(environ, "CORS_METHODS")),
            cors_headers=env_list(environ, "CORS_HEADERS"),
            alias=environ.get("TARGET_ALIAS", "").strip() or "live",
        )


@dataclass(frozen=True)
class PostTrafficConfig:
    """Everything the four checks need: the API (ApiSettings) and the function's routes (`checks.post`)."""

    # ApiSettings' fields again, flat: the checks (and their tests) build one object without the environment.
    api_url: str
    allowed_origin: str
    cors_methods: tuple[str, ...]
    cors_headers: tuple[str, ...]
    login_path: str | None = None
    login_body: Literal["json", "form"] = "json"
    health_path: str = "/health"

    @classmethod
    def of(cls, api: ApiSettings, post: PostChecks) -> PostTrafficConfig:
        return cls(
            api_url=api.api_url,
            allowed_origin=api.allowed_origin,
            cors_methods=api.cors_methods,
            cors_headers=api.cors_headers,
            login_path=post.login_path,
            login_body=post.login_body,
            health_path=post.health_path,
        )

    @property
    def preflight_path(self) -> str:
        """Where the preflight goes: the login route a browser really preflights, else the health route."""
        return self.login_path or self.health_path

    def url(self, path: str) -> str:
        return self.api_url.rstrip("/") + "/" + path.lstrip("/")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            return None

    def excerpt(self) -> str:
        return self.body[:300].decode("utf-8", errors="replace")


def http_request(
    method: str, url: str, *, headers: Mapping[str, str], body: bytes | None, timeout: float
) -> HttpResponse:
    """One request; an HTTP error status is a response, not an exception (the checks judge it)."""
    request = urllib.request.Request(
        url, data=body, method=method, headers={"User-Agent": USER_AGENT, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpResponse(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def request_with_retry(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    deadline: float,
    runtime: Runtime,
) -> HttpResponse:
    """Retries only what says nothing about the new code: connection failures and API Gateway throttling."""

    class _Throttled(Exception):
        pass

    def attempt(seconds: float) -> HttpResponse:
        response = http_request(method, url, headers=headers, body=body, timeout=seconds)
        if response.status == 429:
            raise _Throttled(f"{method} {url} was throttled (429)")
        return response

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, _Throttled) or (
            isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError)
        )

    return hook_calls.call_with_retry(
        attempt,
        what=f"{method} {url}",
        deadline=deadline,
        runtime=runtime,
        retryable=retryable,
        max_attempt=MAX_REQUEST_SECONDS,
    )


# ---------------------------------------------------------------------------------------------------------
# The four checks, as pure functions of responses


def health_check(response: HttpResponse, path: str = "/health") -> CheckResult:
    problem = hook_checks.health_problem(response.status, response.body)
    if problem:
        return CheckResult("health", False, f"GET {path} {problem}")
    return CheckResult("health", True, f"GET {path}: healthy (200)")


def _origin_allowed(value: str | None, origin: str) -> bool:
    return value is not None and value.strip() in (origin, "*")


def cors_get_check(response: HttpResponse, origin: str, path: str = "/health") -> CheckResult:
    allowed = response.header("Access-Control-Allow-Origin")
    if not _origin_allowed(allowed, origin):
        return CheckResult(
            "cors_get",
            False,
            f"GET {path} from origin {origin}: Access-Control-Allow-Origin is "
            f"{allowed!r}; browsers at {origin} would be blocked",
        )
    return CheckResult("cors_get", True, f"GET {path} allows origin {origin} ({allowed})")


def _listed(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


def cors_preflight_check(response: HttpResponse, config: PostTrafficConfig) -> CheckResult:
    path = config.preflight_path
    if not 200 <= response.status < 300:
        return CheckResult(
            "cors_preflight",
            False,
            f"OPTIONS {path} (preflight) returned {response.status}: {response.excerpt()}",
        )
    problems = []
    allowed_origin = response.header("Access-Control-Allow-Origin")
    if not _origin_allowed(allowed_origin, config.allowed_origin):
        problems.append(f"Access-Control-Allow-Origin is {allowed_origin!r}, not {config.allowed_origin}")
    methods = _listed(response.header("Access-Control-Allow-Methods"))
    missing_methods = [m for m in config.cors_methods if m != "OPTIONS" and m.lower() not in methods]
    if missing_methods and "*" not in methods:
        problems.append(f"Access-Control-Allow-Methods lacks {', '.join(missing_methods)}")
    headers = _listed(response.header("Access-Control-Allow-Headers"))
    missing_headers = [h for h in config.cors_headers if h.lower() not in headers]
    if missing_headers and "*" not in headers:
        problems.append(f"Access-Control-Allow-Headers lacks {', '.join(missing_headers)}")
    if problems:
        return CheckResult(
            "cors_preflight",
            False,
            f"preflight OPTIONS {path} from {config.allowed_origin}: " + "; ".join(problems),
        )
    return CheckResult(
        "cors_preflight",
        True,
        f"preflight OPTIONS {path} allows {config.allowed_origin}, "
        f"methods {','.join(config.cors_methods)}, headers "
        f"{','.join(config.cors_headers)}",
    )


def login_check(response: HttpResponse, path: str) -> CheckResult:
    if response.status == 401:
        return CheckResult("login_rejects_bad_credentials", True, f"POST {path} with bad credentials: 401")
    kind = "server error" if response.status >= 500 else "unexpected status"
    return CheckResult(
        "login_rejects_bad_credentials",
        False,
        f"POST {path} with bad credentials returned "
        f"{response.status} ({kind}, expected 401): "
        f"{response.excerpt()}",
    )


def login_request_body(config: PostTrafficConfig) -> tuple[bytes, str]:
    # A random address at example.com (reserved by RFC 2606, and unlike .invalid accepted by e-mail
    # validators, so the answer is about credentials, not a 422) and a random password: no account matches.
    email = f"credmate-canary-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(24)
    if config.login_body == "form":
        return urllib.parse.urlencode({"username": email, "password": password}).encode(), (
            "application/x-www-form-urlencoded"
        )
    return json.dumps({"email": email, "username": email, "password": password}).encode(), "application/json"


# ---------------------------------------------------------------------------------------------------------
# The hook


def api_checks(
    config: PostTrafficConfig, *, deadline: float, log: HookLog, runtime: Runtime
) -> list[CheckResult]:
    """The four checks on the public API, each logged; every request ends by `deadline`."""
    origin = {"Origin": config.allowed_origin}

    def guarded(check: str, run: Any) -> CheckResult:
        try:
            return log.result(run())
        except Exception as exc:
            return log.result(CheckResult(check, False, f"request failed: {hook_calls.describe(exc)}"))

    health_path = config.health_path

    def health_pair() -> tuple[CheckResult, CheckResult]:
        try:
            response = request_with_retry(
                "GET",
                config.url(health_path),
                headers={**origin, "Accept": "application/json"},
                body=None,
                deadline=deadline,
                runtime=runtime,
            )
        except Exception as exc:
            reason = f"GET {health_path} failed: {hook_calls.describe(exc)}"
            return CheckResult("health", False, reason), CheckResult("cors_get", False, reason)
        return health_check(response, health_path), cors_get_check(
            response, config.allowed_origin, health_path
        )

    health, cors_get = health_pair()
    results = [log.result(health), log.result(cors_get)]
    results.append(
        guarded(
            "cors_preflight",
            lambda: cors_preflight_check(
                request_with_retry(
                    "OPTIONS",
                    config.url(config.preflight_path),
                    headers={
                        **origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": ",".join(config.cors_headers).lower(),
                    },
                    body=None,
                    deadline=deadline,
                    runtime=runtime,
                ),
                config,
            ),
        )
    )
    login_path = config.login_path
    if login_path is None:
        results.append(
            log.result(
                CheckResult(
                    "login_rejects_bad_credentials",
                    True,
                    "skipped: no login_path is configured (this API has no login route to test)",
                    warning=True,
                )
            )
        )
        return results
    body, content_type = login_request_body(config)
    results.append(
        guarded(
            "login_rejects_bad_credentials",
            lambda: login_check(
                request_with_retry(
                    "POST",
                    config.url(login_path),
                    headers={**origin, "Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    deadline=deadline,
                    runtime=runtime,
                ),
                login_path,
            ),
        )
    )
    return results


def post_traffic_checks(
    ids: HookIds,
    budget: Budget,
    *,
    environ: Mapping[str, str],
    clients: Clients,
    log: HookLog,
    runtime: Runtime,
) -> list[CheckResult]:
    try:
        api = ApiSettings.from_env(environ)
    except ConfigError as exc:
        return [log.result(CheckResult("config", False, str(exc)))]
    found, target = find_target(
        clients, ids, alias=api.alias, deadline=budget.checks, runtime=runtime, log=log
    )
    if target is None:
        return [found]
    failed, invocation = invoke_check(
        "checks", clients.lambda_, target, {PROBE_KEY: {"checks_only": True}}, budget.checks, runtime
    )
    if failed is not None or invocation is None:
        return [found, log.result(failed or CheckResult("checks", False, "no answer"))]
    payload = invocation.payload
    if isinstance(payload, Mapping) and isinstance(payload.get("function"), str):
        log.label = payload["function"]
    checked, checks = function_checks(payload, target.version)
    if checks is not None and checks.post is None:
        note = (
            f"no post-traffic checks are configured for function {target.function_name} "
            f"({log.label or 'no label'}): its CREDMATE_CHECKS has post null, so there is nothing to check"
        )
        return [found, log.result(CheckResult("checks", True, note))]
    results = [found, log.result(checked)]
    if checks is None or checks.post is None:
        return results
    config = PostTrafficConfig.of(api, checks.post)
    return results + api_checks(config, deadline=budget.checks, log=log, runtime=runtime)


# Each hook's entry point: the same wiring with its own checks (the logic is hook_report.run_hook's).
def run_post_traffic(
    event: object, context: object, *, environ: Mapping[str, str], runtime: Runtime
) -> dict[str, Any]:
    log = HookLog(hook="post_traffic")
    clients = Clients()
    return run_hook(
        event,
        context,
        log=log,
        runtime=runtime,
        codedeploy_factory=clients.codedeploy,
        checks=lambda ids, budget: post_traffic_checks(
            ids, budget, environ=environ, clients=clients, log=log, runtime=runtime
        ),
    )


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_post_traffic(event, context, environ=os.environ, runtime=Runtime())
