"""How long a pre-traffic hook may run, from its target function's timeout. Pure arithmetic (no aws_cdk).

The hook invokes the new version synchronously (the probe, then GET /health for an API function) and must
then report to CodeDeploy before Lambda kills it; when it is killed first, CodeDeploy waits an hour. The
hook itself bounds every call by the time it has left (lambda_src/hooks/hook_calls.py), so it always reports;
this module makes sure that time is enough for the target to give its own answer: each invoke may last the
target's full timeout (Lambda then ends it with "Task timed out", a definite Failed) plus a cold start.

The numbers mirror `hook_calls.budget_from_context`: the last REPORT_RESERVE_SECONDS are for the report and
the last SAFETY_SECONDS for the final log line.
"""

from __future__ import annotations

LAMBDA_MAX_TIMEOUT_SECONDS = 900
# The floor: the hooks' timeout before it was derived, enough for any short-timeout function.
MIN_HOOK_TIMEOUT_SECONDS = 180
# GetDeployment (bounded in the hook to 20 s) and creating clients, before the first invoke.
SETUP_SECONDS = 20
# Per invoke, beyond the function's own timeout: a cold start with its init (Lambda allows 10 s) and the
# network round trip.
INVOKE_OVERHEAD_SECONDS = 12
# hook_calls.budget_from_context: at most 30 s kept for reporting, at most 3 s kept as the last margin.
REPORT_RESERVE_SECONDS = 30
SAFETY_SECONDS = 3
# The probe and GET /health: what a pre-traffic hook of an API function does.
DEFAULT_INVOKES = 2


def _check_function_timeout(function_timeout_seconds: int) -> None:
    if (
        isinstance(function_timeout_seconds, bool)
        or not isinstance(function_timeout_seconds, int)
        or not 1 <= function_timeout_seconds <= LAMBDA_MAX_TIMEOUT_SECONDS
    ):
        raise ValueError(
            f"function timeout {function_timeout_seconds!r} must be a whole number of seconds from 1 to "
            f"{LAMBDA_MAX_TIMEOUT_SECONDS} (Lambda's limit)"
        )


def needed_seconds(function_timeout_seconds: int, *, invokes: int = DEFAULT_INVOKES) -> int:
    """Seconds the pre-traffic hook needs so every invoke can run to the target's own timeout and still
    report: set-up, then each invoke (function timeout plus overhead), then the report reserve and margin."""
    _check_function_timeout(function_timeout_seconds)
    if invokes < 1:
        raise ValueError(f"invokes must be at least 1, got {invokes}")
    return (
        SETUP_SECONDS
        + invokes * (function_timeout_seconds + INVOKE_OVERHEAD_SECONDS)
        + REPORT_RESERVE_SECONDS
        + SAFETY_SECONDS
    )


def hook_timeout_seconds(function_timeout_seconds: int, *, invokes: int = DEFAULT_INVOKES) -> int:
    """The pre-traffic hook's Lambda timeout for a target with this timeout (at least 3 minutes).

    Raises ValueError (check_fits' message) when no hook timeout Lambda allows is enough.
    """
    check_fits(function_timeout_seconds, invokes=invokes)
    return max(MIN_HOOK_TIMEOUT_SECONDS, needed_seconds(function_timeout_seconds, invokes=invokes))


def max_function_timeout_seconds(*, invokes: int = DEFAULT_INVOKES) -> int:
    """The longest function timeout a pre-traffic hook with `invokes` invokes can wait for."""
    spare = LAMBDA_MAX_TIMEOUT_SECONDS - SETUP_SECONDS - REPORT_RESERVE_SECONDS - SAFETY_SECONDS
    return spare // invokes - INVOKE_OVERHEAD_SECONDS


def check_fits(function_timeout_seconds: int, *, invokes: int = DEFAULT_INVOKES) -> None:
    """Raise ValueError when a function with this timeout cannot be tested by a pre-traffic hook that
    always reports to CodeDeploy before Lambda's 900 s limit ends it."""
    needed = needed_seconds(function_timeout_seconds, invokes=invokes)
    if needed > LAMBDA_MAX_TIMEOUT_SECONDS:
        raise ValueError(
            f"function timeout {function_timeout_seconds} s is too long for its pre-traffic hook: the hook "
            f"invokes the function {invokes} time(s), each of which may run to that timeout, and must then "
            f"report to CodeDeploy, which needs a hook timeout of {needed} s, more than Lambda's maximum of "
            f"{LAMBDA_MAX_TIMEOUT_SECONDS} s. Use a function timeout of at most "
            f"{max_function_timeout_seconds(invokes=invokes)} s."
        )
