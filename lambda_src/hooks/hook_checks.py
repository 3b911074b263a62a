"""What the version under test is asked and how its answers are judged: invoking exactly that version
(invoke_check: an ExecutedVersion other than the one asked for is refused), what its probe says to check
(function_checks, from the function's own CREDMATE_CHECKS variable), and whether a health response is
healthy (health_problem).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ReadTimeoutError
from hook_calls import DeadlineExceeded, Runtime, call_with_retry, describe
from hook_report import CheckResult
from hook_target import DeploymentTarget

# ---------------------------------------------------------------------------------------------------------
# Invoking the version under test

PROBE_KEY = "credmate_probe"


@dataclass(frozen=True)
class Invocation:
    status_code: int | None
    function_error: str | None
    executed_version: str | None
    payload: Any  # parsed JSON, or the raw text when it is not JSON


def invoke_version(
    lambda_factory: Callable[[float], Any],
    *,
    function_name: str,
    version: str,
    event: Mapping[str, Any],
    deadline: float,
    runtime: Runtime,
) -> Invocation:
    def call(seconds: float) -> tuple[Mapping[str, Any], bytes]:
        # Reading the payload is part of the attempt: its read timeout is the same client's.
        response = lambda_factory(seconds).invoke(
            FunctionName=function_name,
            Qualifier=version,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        body = response.get("Payload")
        return response, body.read() if body is not None else b""

    response, raw = call_with_retry(
        call, what=f"Invoke {function_name}:{version}", deadline=deadline, runtime=runtime
    )
    text = raw.decode("utf-8", errors="replace")
    try:
        payload: Any = json.loads(text) if text else None
    except ValueError:
        payload = text
    return Invocation(
        response.get("StatusCode"), response.get("FunctionError"), response.get("ExecutedVersion"), payload
    )


def function_error_reason(invocation: Invocation) -> str:
    payload = invocation.payload
    if isinstance(payload, Mapping) and ("errorType" in payload or "errorMessage" in payload):
        return f"{payload.get('errorType') or invocation.function_error}: {payload.get('errorMessage', '')}"
    return f"{invocation.function_error}: {str(payload)[:500]}"


def invoke_check(
    check: str,
    lambda_factory: Callable[[float], Any],
    target: DeploymentTarget,
    event: Mapping[str, Any],
    deadline: float,
    runtime: Runtime,
) -> tuple[CheckResult | None, Invocation | None]:
    """Invoke and turn transport-level failures into a failed check; (None, invocation) when it answered."""
    version = target.version
    try:
        invocation = invoke_version(
            lambda_factory,
            function_name=target.function_name,
            version=version,
            event=event,
            deadline=deadline,
            runtime=runtime,
        )
    except ReadTimeoutError:
        return CheckResult(
            check, False, f"invoke of version {version} timed out (no answer within the hook's time budget)"
        ), None
    except DeadlineExceeded as exc:
        return CheckResult(check, False, f"invoke of version {version}: {exc}"), None
    except Exception as exc:
        return CheckResult(check, False, f"invoke of version {version} failed: {describe(exc)}"), None
    if invocation.function_error:
        return CheckResult(
            check, False, f"version {version} raised {function_error_reason(invocation)}"
        ), invocation
    if invocation.executed_version not in (None, version):
        return CheckResult(
            check,
            False,
            f"Lambda ran version {invocation.executed_version}, not {version}: "
            "refusing a result about other code",
        ), invocation
    return None, invocation


# What a health endpoint may say it is; any other "status" value (degraded, unhealthy, ...) is not healthy.
HEALTHY_STATUSES = ("healthy", "ok", "pass", "up")


def health_problem(status_code: object, body: str | bytes | None) -> str | None:
    """None when a health response is healthy, else why not.

    Healthy: HTTP 200 and, when the body is a JSON object with a "status" key, that value is one of
    HEALTHY_STATUSES (any case). A 200 without a JSON status (plain text, another shape) is healthy: the
    status code is the contract every health endpoint keeps, the status key is one some add.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else (body or "")
    if status_code != 200:
        return f"returned {status_code}: {text[:300]}"
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(parsed, Mapping) or "status" not in parsed:
        return None
    value = parsed["status"]
    if isinstance(value, str) and value.strip().lower() in HEALTHY_STATUSES:
        return None
    return f"returned 200 with status {value!r}, not one of {', '.join(HEALTHY_STATUSES)}: {text[:300]}"


# ---------------------------------------------------------------------------------------------------------
# What to check: the function's CREDMATE_CHECKS, as its probe reports it (`checks`)

CHECKS_ENV = "CREDMATE_CHECKS"
NO_CHECKS = f"the function has no {CHECKS_ENV} (deployed by an older credmate-lambda?)"


class ChecksError(ValueError):
    pass


@dataclass(frozen=True)
class PreChecks:
    http_health: bool
    health_path: str
    uses_database: bool
    schema_mismatch: Literal["fail", "warn"]


@dataclass(frozen=True)
class PostChecks:
    health_path: str
    login_path: str | None
    login_body: Literal["json", "form"]


@dataclass(frozen=True)
class FunctionChecks:
    pre: PreChecks
    post: PostChecks | None  # None: no post-traffic checks (a function without an API)


def _field(section: Mapping[str, Any], where: str, key: str, kind: str) -> Any:
    if key not in section:
        raise ChecksError(f"{CHECKS_ENV} {where}.{key} is missing")
    value = section[key]
    ok = {
        "bool": isinstance(value, bool),
        "path": isinstance(value, str) and value.startswith("/"),
        "path?": value is None or (isinstance(value, str) and value.startswith("/")),
        "fail|warn": value in ("fail", "warn"),
        "json|form": value in ("json", "form"),
    }[kind]
    if not ok:
        expected = {"path": "a path starting with '/'", "path?": "null or a path starting with '/'"}.get(
            kind, kind
        )
        raise ChecksError(f"{CHECKS_ENV} {where}.{key}={value!r} must be {expected}")
    return value


def parse_checks(checks: object) -> FunctionChecks:
    """The probe's `checks` (CREDMATE_CHECKS parsed) as typed settings; ChecksError says what is wrong."""
    if not isinstance(checks, Mapping):
        raise ChecksError(f"{CHECKS_ENV} must be an object, got {type(checks).__name__}")
    pre = checks.get("pre")
    if not isinstance(pre, Mapping):
        raise ChecksError(f"{CHECKS_ENV} pre must be an object")
    post = checks.get("post")
    if post is not None and not isinstance(post, Mapping):
        raise ChecksError(f"{CHECKS_ENV} post must be null or an object")
    return FunctionChecks(
        PreChecks(
            _field(pre, "pre", "http_health", "bool"),
            _field(pre, "pre", "health_path", "path"),
            _field(pre, "pre", "uses_database", "bool"),
            _field(pre, "pre", "schema_mismatch", "fail|warn"),
        ),
        None
        if post is None
        else PostChecks(
            _field(post, "post", "health_path", "path"),
            _field(post, "post", "login_path", "path?"),
            _field(post, "post", "login_body", "json|form"),
        ),
    )


def function_checks(payload: object, version: str) -> tuple[CheckResult, FunctionChecks | None]:
    """The `checks` check: what the probe of `version` says to check, or why it cannot say."""
    if not isinstance(payload, Mapping) or payload.get("probe") not in ("ok", "failed"):
        return CheckResult(
            "checks",
            False,
            f"version {version} gave no probe response, so nothing says what to check: {str(payload)[:300]}",
        ), None
    if payload.get("checks") is None:
        errors = [str(e) for e in payload.get("errors") or [] if CHECKS_ENV in str(e)]
        detail = f": the probe says {'; '.join(errors)}" if errors else ""
        return CheckResult("checks", False, f"version {version}: {NO_CHECKS}{detail}"), None
    try:
        checks = parse_checks(payload["checks"])
    except ChecksError as exc:
        return CheckResult("checks", False, f"version {version}: {exc}"), None
    post = checks.post
    post_text = (
        "none"
        if post is None
        else f"health {post.health_path}, login {post.login_path or 'none'} ({post.login_body})"
    )
    pre = checks.pre
    return CheckResult(
        "checks",
        True,
        f"version {version} asks for: pre-traffic http_health={str(pre.http_health).lower()} "
        f"({pre.health_path}), uses_database={str(pre.uses_database).lower()}, schema_mismatch="
        f"{pre.schema_mismatch}; post-traffic {post_text}",
        data={"checks": payload["checks"]},
    ), checks
