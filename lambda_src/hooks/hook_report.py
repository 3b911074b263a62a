"""The skeleton of a CodeDeploy lifecycle hook: parse the event, run the checks, log each result, and
report to CodeDeploy exactly once.

The guarantee every hook gives: PutLifecycleEventHookExecutionStatus is called for the deployment exactly
once with Succeeded or Failed, within the hook's own timeout, whatever happens in the checks (exceptions,
throttling, malformed responses, missing permissions). CodeDeploy therefore never waits its full hour.
"Exactly once" is one *successful* report: a retry after a timed-out attempt that had in fact landed gets
LifecycleEventAlreadyCompletedException, which counts as reported.

Every check logs one JSON line (check, ok, reason, function, label, version, deployment_id) to stdout, i.e.
to CloudWatch Logs, so on-call can read why a deployment rolled back:
`fields check, ok, function, label, reason | filter ok = 0` in Logs Insights.

Also here: the hook's own environment (env_required, env_flag, env_list; ConfigError names the variable).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import ClientError, ReadTimeoutError
from hook_calls import (
    Budget,
    Runtime,
    budget_from_context,
    call_with_retry,
    describe,
    error_code,
    is_transient,
)

Status = Literal["Succeeded", "Failed"]
ALREADY_COMPLETED = "LifecycleEventAlreadyCompletedException"


class HookEventError(ValueError):
    """The event is not a CodeDeploy lifecycle hook event: there is nothing to report to."""


class ConfigError(ValueError):
    """The hook's environment is wrong; the message names the variable."""


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


# ---------------------------------------------------------------------------------------------------------
# The hook's own environment


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
