"""Every AWS call a CodeDeploy lifecycle hook makes: its time budget, retries, and one client per attempt.

The guarantee every hook gives (hook_report.run_hook) rests on this module: each call's timeouts come from
the budget left when its attempt starts (budget_from_context splits the hook's remaining time into the
checks' share, a reserve for reporting and a last margin), retryable errors are retried with backoff and
full jitter (call_with_retry), and no attempt starts that could not finish in time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

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


def remaining(deadline: float, runtime: Runtime) -> float:
    return max(0.0, deadline - runtime.clock())


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


@dataclass
class Clients:
    """A client per attempt, with timeouts from the budget left when it starts (`client`); made only when
    called, so a broken Lambda client never stops the CodeDeploy report."""

    def codedeploy(self, seconds: float) -> Any:
        return client("codedeploy", timeout=seconds)

    def lambda_(self, seconds: float) -> Any:
        return client("lambda", timeout=seconds)
