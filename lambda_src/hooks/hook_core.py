"""Shared machinery of the CodeDeploy lifecycle hooks (pre_traffic.py, post_traffic.py).

One pre-traffic hook Lambda and one post-traffic hook Lambda serve every deployment group of an environment.
Nothing about the function under deployment is in the hook's environment (Lambda's 4 KB of variables could
not hold 60 functions): each execution finds it from the deployment itself (resolve_target below), then asks
that exact version what to check (the probe's `checks`, from the function's own CREDMATE_CHECKS variable,
parsed by function_checks below). Least privilege is in IAM: the hooks may read and report to their
application's deployment groups only, and invoke exactly the versions the deployments publish.

Which function and version (resolve_target, one implementation for both hooks):

1. GetDeployment's `revision.appSpecContent.content` (YAML or JSON). The AppSpec of a Lambda deployment names
   one function resource: the one whose `Alias` is the hook's TARGET_ALIAS is taken (two are refused as
   ambiguous), with its `Name`, `CurrentVersion` and `TargetVersion`. GetDeployment gets only a share of the
   checks' time, so the second source and the checks keep theirs.
2. Else (AppSpec missing, unreadable, naming no such resource, or its TargetVersion refused):
   ListDeploymentTargets(deploymentId) and GetDeploymentTarget, whose
   `deploymentTarget.lambdaTarget.lambdaFunctionInfo` gives functionName, functionAlias, currentVersion and
   targetVersion (also with a share of the time). A CurrentVersion the AppSpec named stays refused.
3. Neither usable: Failed, with a reason naming both sources.

`$LATEST`, the alias, anything that is not a published version number, and the CurrentVersion (already
live) are never tested: testing them would pass a deployment whose new code was never run. An invocation's
ExecutedVersion must be the version asked for.

The guarantee every hook gives: PutLifecycleEventHookExecutionStatus is called for the deployment exactly
once with Succeeded or Failed, within the hook's own timeout, whatever happens in the checks (exceptions,
throttling, malformed responses, missing permissions). CodeDeploy therefore never waits its full hour.
"Exactly once" is one *successful* report: a retry after a timed-out attempt that had in fact landed gets
LifecycleEventAlreadyCompletedException, which counts as reported.

Every check logs one JSON line (check, ok, reason, function, label, version, deployment_id) to stdout, i.e.
to CloudWatch Logs, so on-call can read why a deployment rolled back:
`fields check, ok, function, label, reason | filter ok = 0` in Logs Insights.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

import boto3
import yaml
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
    function: str | None = None  # the function under deployment, once resolved
    version: str | None = None
    label: str | None = None  # its catalog name (the probe's CREDMATE_FUNCTION_LABEL), once it answered
    stream: Any = None

    def emit(self, check: str, ok: bool, reason: str, *, warning: bool = False, **extra: Any) -> None:
        line = {
            "hook": self.hook,
            "check": check,
            "ok": ok,
            "level": "ERROR" if not ok else ("WARN" if warning else "INFO"),
            "reason": reason,
            "function": self.function,
            "label": self.label,
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


# ---------------------------------------------------------------------------------------------------------
# Clients and invocations


@dataclass
class Clients:
    """A client per attempt, with timeouts from the budget left when it starts (`client`); made only when
    called, so a broken Lambda client never stops the CodeDeploy report."""

    def codedeploy(self, seconds: float) -> Any:
        return client("codedeploy", timeout=seconds)

    def lambda_(self, seconds: float) -> Any:
        return client("lambda", timeout=seconds)


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


# ---------------------------------------------------------------------------------------------------------
# Which function and version: the AppSpec (JSON or YAML; PyYAML ships in the hook asset), else the
# deployment's target


class AppSpecError(ValueError):
    pass


def parse_appspec(content: str) -> Any:
    text = content.strip()
    if not text:
        raise AppSpecError("AppSpec content is empty")
    json_error = None
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            json_error = exc  # maybe flow-style YAML: PyYAML decides
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())[:300]
        if json_error is not None:
            raise AppSpecError(f"AppSpec JSON is invalid ({json_error}), and not YAML either") from exc
        raise AppSpecError(f"AppSpec YAML is invalid: {detail}") from exc
    if document is None:
        raise AppSpecError("AppSpec content has only comments")
    return document


@dataclass(frozen=True)
class AppSpecTarget:
    resource: str
    name: str | None
    alias: str | None
    current_version: str | None
    target_version: str | None


def texts(mapping: Mapping[str, Any], *keys: str) -> tuple[str | None, ...]:
    """The values of `keys` in `mapping` as text, None where a key is absent or null."""
    return tuple(None if mapping.get(key) is None else str(mapping.get(key)) for key in keys)


def appspec_targets(document: Any) -> list[AppSpecTarget]:
    if not isinstance(document, Mapping):
        raise AppSpecError("AppSpec is not a mapping")
    resources = document.get("Resources") or document.get("resources")
    if isinstance(resources, Mapping):
        resources = [{key: value} for key, value in resources.items()]
    if not isinstance(resources, list):
        raise AppSpecError("AppSpec has no Resources list")
    found = []
    for item in resources:
        if not isinstance(item, Mapping):
            continue
        for resource, body in item.items():
            props = body.get("Properties") if isinstance(body, Mapping) else None
            if not isinstance(props, Mapping):
                continue
            found.append(
                AppSpecTarget(
                    str(resource), *texts(props, "Name", "Alias", "CurrentVersion", "TargetVersion")
                )
            )
    return found


class TargetVersionError(ValueError):
    """No version to test; `function_name`/`current_version` keep what a refused source did say."""

    def __init__(
        self, message: str, *, function_name: str | None = None, current_version: str | None = None
    ) -> None:
        super().__init__(message)
        self.function_name = function_name
        self.current_version = current_version


@dataclass(frozen=True)
class DeploymentTarget:
    """The function and version a deployment shifts its alias to, and where that was read."""

    function_name: str
    version: str
    alias: str
    current_version: str | None
    source: Literal["AppSpec", "deployment target"]
    notes: tuple[str, ...] = ()  # why an earlier source was not used


_VERSION_NUMBER = re.compile(r"^[0-9]+$")


def function_name_of(value: str) -> str:
    """`name`, `name:qualifier` or an ARN `arn:aws:lambda:region:account:function:name[:qualifier]` → name."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 7:
        return parts[6]
    return parts[0]


def version_of(value: str) -> str:
    """A version number or the qualifier of a version ARN."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) >= 8:
        return parts[7]
    return value.strip()


def version_problem(version: str | None, *, current: str | None, alias: str) -> str | None:
    if not version:
        return "no version given"
    if version == "$LATEST":
        return "$LATEST is never tested: CodeDeploy shifts traffic to a published version"
    if version == alias or not _VERSION_NUMBER.match(version):
        return f"'{version}' is not a published version number (an alias or $LATEST is never tested)"
    if current is not None and version == current:
        return f"version {version} is the CurrentVersion (already live), not the new one"
    return None


def _the_one_for(alias: str, items: Sequence[tuple[str | None, str, str, T]], *, none: str, many: str) -> T:
    """The one item deploying `alias`, from (alias, where, name, item) rows; TargetVersionError, worded by
    `none` ({named}: every row) or `many` ({count}, {names}), when there is none or more than one."""
    mine = [row for row in items if row[0] == alias]
    if not mine:
        named = ", ".join(f"{where} (alias {a})" for a, where, _n, _i in items) or "none"
        raise TargetVersionError(none.format(named=named))
    if len(mine) > 1:
        raise TargetVersionError(many.format(count=len(mine), names=", ".join(n for _a, _w, n, _i in mine)))
    return mine[0][3]


def target_from_appspec(targets: Sequence[AppSpecTarget], alias: str) -> DeploymentTarget:
    """The one function resource whose Alias is `alias`, and its TargetVersion; TargetVersionError if none."""
    entry = _the_one_for(
        alias,
        [(t.alias, t.resource, t.name or t.resource, t) for t in targets],
        none=f"names no function resource with Alias {alias} (resources: {{named}})",
        many=f"names {{count}} function resources with Alias {alias} ({{names}}): ambiguous, refused",
    )
    if not entry.name:
        raise TargetVersionError(f"resource {entry.resource} has no Name")
    function = function_name_of(entry.name)
    current = version_of(entry.current_version) if entry.current_version else None
    target = version_of(entry.target_version) if entry.target_version else None
    problem = version_problem(target, current=current, alias=alias)
    if problem is not None or target is None:
        raise TargetVersionError(
            f"TargetVersion of {function} refused: {problem}", function_name=function, current_version=current
        )
    return DeploymentTarget(function, target, alias, current, "AppSpec")


@dataclass(frozen=True)
class LambdaTargetInfo:
    """GetDeploymentTarget's deploymentTarget.lambdaTarget.lambdaFunctionInfo."""

    target_id: str
    function_name: str | None
    alias: str | None
    current_version: str | None
    target_version: str | None


def target_from_deployment_targets(
    infos: Sequence[LambdaTargetInfo],
    alias: str,
    *,
    known_function: str | None = None,
    known_current: str | None = None,
) -> DeploymentTarget:
    """The one Lambda target deploying `alias`. `known_*`: what a refused AppSpec said (still binding)."""
    info = _the_one_for(
        alias,
        [(i.alias, str(i.function_name), str(i.function_name), i) for i in infos],
        none=f"no Lambda target with alias {alias} (targets: {{named}})",
        many=f"{{count}} Lambda targets with alias {alias} ({{names}}): ambiguous, refused",
    )
    if not info.function_name:
        raise TargetVersionError(f"target {info.target_id} has no functionName")
    function = function_name_of(info.function_name)
    if known_function is not None and function != known_function:
        raise TargetVersionError(f"target {function} is not the AppSpec's function {known_function}")
    current = version_of(info.current_version) if info.current_version else None
    target = version_of(info.target_version) if info.target_version else None
    problem = version_problem(target, current=current, alias=alias)
    if problem is None and known_current is not None and target == known_current:
        problem = f"version {target} is the AppSpec's CurrentVersion (already live), not the new one"
    if problem is not None or target is None:
        raise TargetVersionError(f"targetVersion of {function} refused: {problem}")
    return DeploymentTarget(function, target, alias, current or known_current, "deployment target")


# Each source may use this much of the checks' time at most (and at most this share of what is left when
# it starts): when one is slow, the other and the checks still have the rest. A very short budget (local
# runs) still gives each source time for one attempt.
SOURCE_SECONDS = 20.0
SOURCE_SHARE = 0.25
SOURCE_MIN_SECONDS = 2 * MIN_ATTEMPT_SECONDS
SOURCE_ATTEMPT_SECONDS = 8.0
MAX_DEPLOYMENT_TARGETS = 10  # a Lambda deployment has one target; more is refused as ambiguous anyway


def _source_deadline(deadline: float, runtime: Runtime) -> float:
    left = remaining(deadline, runtime)
    share = max(SOURCE_MIN_SECONDS, min(SOURCE_SECONDS, left * SOURCE_SHARE))
    return runtime.clock() + min(left, share)


def read_appspec_targets(
    codedeploy_factory: Callable[[float], Any], deployment_id: str, *, deadline: float, runtime: Runtime
) -> tuple[list[AppSpecTarget] | None, str | None]:
    """(targets, problem): GetDeployment's AppSpec, or why it is unusable."""
    try:
        response = call_with_retry(
            lambda seconds: codedeploy_factory(seconds).get_deployment(deploymentId=deployment_id),
            what="GetDeployment",
            deadline=_source_deadline(deadline, runtime),
            runtime=runtime,
            max_attempt=SOURCE_ATTEMPT_SECONDS,
        )
    except ReadTimeoutError:
        return None, "GetDeployment did not answer within its share of the time budget"
    except Exception as exc:
        return None, f"GetDeployment failed: {describe(exc)}"
    info = response.get("deploymentInfo") if isinstance(response, Mapping) else None
    revision = info.get("revision") if isinstance(info, Mapping) else None
    content = revision.get("appSpecContent", {}).get("content") if isinstance(revision, Mapping) else None
    if not isinstance(content, str):
        return None, "GetDeployment returned no revision.appSpecContent.content"
    try:
        return appspec_targets(parse_appspec(content)), None
    except AppSpecError as exc:
        return None, str(exc)


def read_deployment_targets(
    codedeploy_factory: Callable[[float], Any], deployment_id: str, *, deadline: float, runtime: Runtime
) -> tuple[list[LambdaTargetInfo] | None, str | None]:
    """(targets, problem): ListDeploymentTargets + GetDeploymentTarget's Lambda function info, or why not."""
    own_deadline = _source_deadline(deadline, runtime)

    def call(what: str, method: str, **kwargs: Any) -> Any:
        return call_with_retry(
            lambda seconds: getattr(codedeploy_factory(seconds), method)(**kwargs),
            what=what,
            deadline=own_deadline,
            runtime=runtime,
            max_attempt=SOURCE_ATTEMPT_SECONDS,
        )

    target_ids: list[str] = []
    infos: list[LambdaTargetInfo] = []
    try:
        token: str | None = None
        while True:
            more = {"nextToken": token} if token else {}
            page = call(
                "ListDeploymentTargets", "list_deployment_targets", deploymentId=deployment_id, **more
            )
            target_ids += [t for t in page.get("targetIds") or [] if isinstance(t, str)]
            token = page.get("nextToken")
            if not token or len(target_ids) >= MAX_DEPLOYMENT_TARGETS:
                break
        if not target_ids:
            return None, "ListDeploymentTargets returned no targets"
        for target_id in target_ids[:MAX_DEPLOYMENT_TARGETS]:
            response = call(
                "GetDeploymentTarget", "get_deployment_target", deploymentId=deployment_id, targetId=target_id
            )
            target = response.get("deploymentTarget") if isinstance(response, Mapping) else None
            lambda_target = target.get("lambdaTarget") if isinstance(target, Mapping) else None
            info = lambda_target.get("lambdaFunctionInfo") if isinstance(lambda_target, Mapping) else None
            if not isinstance(info, Mapping):
                continue
            infos.append(
                LambdaTargetInfo(
                    target_id,
                    *texts(info, "functionName", "functionAlias", "currentVersion", "targetVersion"),
                )
            )
    except ReadTimeoutError:
        return None, "ListDeploymentTargets/GetDeploymentTarget did not answer within its share of the time"
    except Exception as exc:
        return None, f"{describe(exc)}"
    if not infos:
        return (
            None,
            f"GetDeploymentTarget gave no lambdaTarget.lambdaFunctionInfo for {', '.join(target_ids)}",
        )
    return infos, None


def resolve_target(
    codedeploy_factory: Callable[[float], Any],
    deployment_id: str,
    *,
    alias: str,
    deadline: float,
    runtime: Runtime,
) -> DeploymentTarget:
    """The function and version under deployment: the AppSpec, else the deployment's Lambda target."""
    appspec, problem = read_appspec_targets(
        codedeploy_factory, deployment_id, deadline=deadline, runtime=runtime
    )
    known_function = known_current = None
    if appspec is not None:
        try:
            return target_from_appspec(appspec, alias)
        except TargetVersionError as exc:
            problem, known_function, known_current = str(exc), exc.function_name, exc.current_version
    appspec_problem = f"AppSpec (GetDeployment): {problem}"
    infos, problem = read_deployment_targets(
        codedeploy_factory, deployment_id, deadline=deadline, runtime=runtime
    )
    if infos is not None:
        try:
            found = target_from_deployment_targets(
                infos, alias, known_function=known_function, known_current=known_current
            )
            return replace(found, notes=(appspec_problem,))
        except TargetVersionError as exc:
            problem = str(exc)
    raise TargetVersionError(
        f"{appspec_problem}; deployment target (ListDeploymentTargets/GetDeploymentTarget): {problem}"
    )


def find_target(
    clients: Clients, ids: HookIds, *, alias: str, deadline: float, runtime: Runtime, log: HookLog
) -> tuple[CheckResult, DeploymentTarget | None]:
    """resolve_target as the `target_version` check; the log carries the function and version from here."""
    try:
        target = resolve_target(
            clients.codedeploy, ids.deployment_id, alias=alias, deadline=deadline, runtime=runtime
        )
    except TargetVersionError as exc:
        return log.result(CheckResult("target_version", False, f"no version to test: {exc}")), None
    log.function, log.version = target.function_name, target.version
    note = f" ({'; '.join(target.notes)})" if target.notes else ""
    return log.result(
        CheckResult(
            "target_version",
            True,
            f"testing version {target.version} of {target.function_name} (alias {target.alias}) from the "
            f"{target.source}{note}; current version {target.current_version or 'unknown'}",
            warning=bool(target.notes),
        )
    ), target


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
