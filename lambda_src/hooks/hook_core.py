"""Shared machinery of the CodeDeploy lifecycle hooks (pre_traffic.py, post_traffic.py).

One generic hook asset serves every function, rather than one hook per function: the three backend functions
share one bundle and one probe contract (lambda_src/probe/credmate_probe.py), so what differs between them is
data (function name, whether to drive GET /health, how strict the schema check is), which is what
environment variables are for. One code path means one set of tests for the part that must never go wrong,
reporting back to CodeDeploy. Least privilege stays per function: each deployment group gets its own hook
*instance* (stacks/constructs/canary.py) allowed to invoke only its own target and report only to its own
deployment group.

The guarantee every hook gives: PutLifecycleEventHookExecutionStatus is called for the deployment exactly
once with Succeeded or Failed, within the hook's own timeout, whatever happens in the checks (exceptions,
throttling, malformed responses, missing permissions). CodeDeploy therefore never waits its full hour.
"Exactly once" is one *successful* report: a retry after a timed-out attempt that had in fact landed gets
LifecycleEventAlreadyCompletedException, which counts as reported.

Every check logs one JSON line (check, ok, reason, function, version, deployment_id) to stdout, i.e. to
CloudWatch Logs, so on-call can read why a deployment rolled back:
`fields check, ok, reason | filter ok = 0` in Logs Insights.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

Status = Literal["Succeeded", "Failed"]
T = TypeVar("T")

# Error codes worth retrying: throttling, brief unavailability, and a new version still being prepared
# (Lambda answers ResourceConflictException while a just-published version is Pending).
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "ResourceConflictException",
        "EC2ThrottledException",
    }
)
ALREADY_COMPLETED = "LifecycleEventAlreadyCompletedException"


class HookEventError(ValueError):
    """The event is not a CodeDeploy lifecycle hook event: there is nothing to report to."""


class ConfigError(ValueError):
    """The hook's environment is wrong; the message names the variable."""


class DeadlineExceeded(TimeoutError):
    """A retried call was still failing when the time budget ran out."""


class ContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


# ---------------------------------------------------------------------------------------------------------
# Time, retries and errors


@dataclass(frozen=True)
class Runtime:
    """Clock, sleep and randomness, injectable so tests run throttling scenarios without waiting."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True)
class Budget:
    """Absolute deadlines in runtime.clock() seconds: checks stop at `checks`, reporting ends by `report`."""

    checks: float
    report: float


DEFAULT_REMAINING_MS = 60_000  # when the context does not say (local runs): assume Lambda's default minute


def budget_from_context(context: object, runtime: Runtime) -> Budget:
    """Split the remaining time: checks first, then a reserve for reporting, then a safety margin.

    With a 3-minute timeout (the post-traffic hook's, and the pre-traffic hook's least: stacks/hook_budget.py
    derives it from the target's timeout with these same reserves): checks get about 2.5 minutes,
    reporting (with its retries) about 30 s, and 3 s remain for the last log line before Lambda would
    kill the process.
    """
    getter = getattr(context, "get_remaining_time_in_millis", None)
    remaining_ms = getter() if callable(getter) else DEFAULT_REMAINING_MS
    remaining = max(0.0, float(remaining_ms) / 1000.0)
    now = runtime.clock()
    safety = min(3.0, remaining * 0.05)
    reserve = min(30.0, remaining * 0.25)
    report = now + remaining - safety
    return Budget(checks=report - reserve, report=report)


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error_code(exc) in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    # A read timeout is not transient here: the call may have run (an Invoke that outlived its budget).
    return isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError)


def describe(exc: BaseException) -> str:
    """`Code: message` for AWS errors, `Type: message` otherwise: what a log line and an on-call need."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code') or 'ClientError'}: {err.get('Message') or exc}"
    return f"{type(exc).__name__}: {exc}"


# No attempt starts with less time than this left: it could not finish, and nothing else would run instead.
MIN_ATTEMPT_SECONDS = 1.0
# Connecting to an AWS endpoint takes milliseconds; a connect that takes longer will not succeed in time.
MAX_CONNECT_SECONDS = 3.0


def call_with_retry(
    operation: Callable[[float], T],
    *,
    what: str,
    deadline: float,
    runtime: Runtime,
    retryable: Callable[[BaseException], bool] = is_transient,
    base_delay: float = 0.25,
    max_delay: float = 8.0,
    min_attempt: float = MIN_ATTEMPT_SECONDS,
    max_attempt: float | None = None,
) -> T:
    """Call `operation(seconds)`, retrying retryable errors with exponential backoff and full jitter.

    `seconds` is the time this attempt may take: what is left before `deadline` (at most `max_attempt`),
    measured when the attempt starts, so each attempt's timeouts come from the budget left at that moment.
    An attempt only starts with at least `min_attempt` seconds left, and a retry's sleep only happens when
    an attempt can still follow it; otherwise DeadlineExceeded carries the last error and the number of
    attempts, so the caller can still report in time.
    """
    attempt = 0
    last: BaseException | None = None
    while True:
        left = deadline - runtime.clock()
        if left < min_attempt:
            detail = f": {describe(last)}" if last is not None else ""
            raise DeadlineExceeded(
                f"{what} not attempted: {max(0.0, left):.1f}s left of the time budget, less than the "
                f"{min_attempt:.1f}s an attempt needs"
                if attempt == 0
                else f"{what} still failing after {attempt} attempt(s) when the time budget ran out{detail}"
            ) from last
        attempt += 1
        try:
            return operation(left if max_attempt is None else min(left, max_attempt))
        except Exception as exc:
            if not retryable(exc):
                raise
            last = exc
            delay = runtime.rng.uniform(0.0, min(max_delay, base_delay * 2**attempt))
            if runtime.clock() + delay + min_attempt > deadline:
                raise DeadlineExceeded(
                    f"{what} still failing after {attempt} attempt(s) when the time budget ran out: "
                    f"{describe(exc)}"
                ) from exc
            runtime.sleep(delay)


def attempt_timeouts(seconds: float) -> tuple[float, float]:
    """(connect, read) timeouts for one attempt that must be over within `seconds`."""
    connect = min(MAX_CONNECT_SECONDS, seconds / 4)
    return connect, max(0.1, seconds - connect)


def client(service: str, *, timeout: float) -> Any:
    """A boto3 client for ONE attempt that must be over within `timeout` seconds.

    botocore fixes a client's timeouts when the client is created, so every attempt gets its own client,
    with timeouts from the budget left at that moment: a client made early never carries a timeout into a
    later call that has less time. botocore's own retries are off (one attempt): every wait happens inside
    this hook's budget (call_with_retry). Honours AWS_ENDPOINT_URL_<SERVICE>. Tests replace this function.
    """
    connect, read = attempt_timeouts(timeout)
    config = Config(
        connect_timeout=connect,
        read_timeout=read,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return boto3.client(service, config=config)


# ---------------------------------------------------------------------------------------------------------
# Check results and structured logs


@dataclass(frozen=True)
class CheckResult:
    check: str
    ok: bool
    reason: str
    warning: bool = False  # passed, but on-call should know (schema mismatch in warn mode, no database)
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class HookLog:
    """Writes one JSON line per check, with the fields that say which deployment and version it was about."""

    hook: str
    deployment_id: str | None = None
    function: str | None = None
    version: str | None = None
    stream: Any = None

    def emit(self, check: str, ok: bool, reason: str, *, warning: bool = False, **extra: Any) -> None:
        line = {
            "hook": self.hook,
            "check": check,
            "ok": ok,
            "level": "ERROR" if not ok else ("WARN" if warning else "INFO"),
            "reason": reason,
            "function": self.function,
            "version": self.version,
            "deployment_id": self.deployment_id,
            **extra,
        }
        print(json.dumps(line, default=str, sort_keys=True), file=self.stream or sys.stdout, flush=True)

    def result(self, result: CheckResult) -> CheckResult:
        self.emit(result.check, result.ok, result.reason, warning=result.warning)
        return result


# ---------------------------------------------------------------------------------------------------------
# The hook skeleton: parse, check, report exactly once


@dataclass(frozen=True)
class HookIds:
    deployment_id: str
    execution_id: str


def parse_hook_event(event: object) -> HookIds:
    if not isinstance(event, Mapping):
        raise HookEventError(f"hook event must be an object, got {type(event).__name__}")
    deployment_id = event.get("DeploymentId")
    execution_id = event.get("LifecycleEventHookExecutionId")
    if not isinstance(deployment_id, str) or not deployment_id:
        raise HookEventError("hook event has no DeploymentId: this function is only invoked by CodeDeploy")
    if not isinstance(execution_id, str) or not execution_id:
        raise HookEventError(
            "hook event has no LifecycleEventHookExecutionId: this function is only invoked by CodeDeploy"
        )
    return HookIds(deployment_id, execution_id)


# One report attempt never waits longer than this: a slow answer is retried while the budget lasts.
REPORT_ATTEMPT_SECONDS = 10.0


def report_status(
    codedeploy_factory: Callable[[float], Any],
    ids: HookIds,
    status: Status,
    *,
    budget: Budget,
    runtime: Runtime,
    log: HookLog,
) -> None:
    """PutLifecycleEventHookExecutionStatus, retried until the report deadline; raises if it never lands.

    `codedeploy_factory(seconds)` gives a client whose timeouts end the attempt within `seconds`.
    """

    def put(seconds: float) -> Any:
        return codedeploy_factory(seconds).put_lifecycle_event_hook_execution_status(
            deploymentId=ids.deployment_id, lifecycleEventHookExecutionId=ids.execution_id, status=status
        )

    def retryable(exc: BaseException) -> bool:
        # A read timeout may hide a report that landed; retrying is safe (the next one says so).
        return is_transient(exc) or isinstance(exc, ReadTimeoutError)

    try:
        call_with_retry(
            put,
            what="PutLifecycleEventHookExecutionStatus",
            deadline=budget.report,
            runtime=runtime,
            retryable=retryable,
            max_attempt=REPORT_ATTEMPT_SECONDS,
        )
    except ClientError as exc:
        if error_code(exc) == ALREADY_COMPLETED:
            log.emit(
                "report",
                True,
                f"{status} not recorded: this lifecycle event was already completed ({describe(exc)})",
                warning=True,
                status=status,
            )
            return
        log.emit("report", False, f"could not report {status} to CodeDeploy: {describe(exc)}", status=status)
        raise
    except Exception as exc:
        log.emit("report", False, f"could not report {status} to CodeDeploy: {describe(exc)}", status=status)
        raise
    log.emit("report", True, f"reported {status} to CodeDeploy", status=status)


def overall_status(results: Sequence[CheckResult]) -> Status:
    return "Succeeded" if results and all(r.ok for r in results) else "Failed"


def run_hook(
    event: object,
    context: object,
    *,
    log: HookLog,
    checks: Callable[[HookIds, Budget], Sequence[CheckResult]],
    codedeploy_factory: Callable[[float], Any],
    runtime: Runtime,
) -> dict[str, Any]:
    """Run `checks` and report the outcome exactly once. Any exception in the checks means Failed."""
    ids = parse_hook_event(event)  # without the IDs nothing can be reported: fail loudly instead
    log.deployment_id = ids.deployment_id
    budget = budget_from_context(context, runtime)
    status: Status = "Failed"
    try:
        status = overall_status(checks(ids, budget))
    except Exception as exc:
        log.emit("hook", False, f"checks stopped by an unexpected error: {describe(exc)}")
    except BaseException:
        report_status(codedeploy_factory, ids, "Failed", budget=budget, runtime=runtime, log=log)
        raise
    report_status(codedeploy_factory, ids, status, budget=budget, runtime=runtime, log=log)
    return {"status": status, "deployment_id": ids.deployment_id}


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


def env_flag(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"environment variable {name}={value!r} must be true or false")


def env_required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    return value


def env_list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in environ.get(name, "").split(",") if part.strip())


def remaining(deadline: float, runtime: Runtime) -> float:
    return max(0.0, deadline - runtime.clock())
