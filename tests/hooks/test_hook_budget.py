"""stacks/hook_budget.py: the pre-traffic hook's timeout always leaves room to report to CodeDeploy."""

from __future__ import annotations

import pytest

from stacks import hook_budget
from stacks.hook_budget import (
    LAMBDA_MAX_TIMEOUT_SECONDS,
    MIN_HOOK_TIMEOUT_SECONDS,
    check_fits,
    hook_timeout_seconds,
    max_function_timeout_seconds,
)


@pytest.mark.parametrize("invokes", [1, 2])
@pytest.mark.parametrize("function_timeout", [1, 3, 30, 60, 120, 300, 413, 434, 700, 900])
def test_every_accepted_function_timeout_gets_a_hook_that_outlasts_its_invokes(function_timeout, invokes):
    try:
        check_fits(function_timeout, invokes=invokes)
    except ValueError:
        assert function_timeout > max_function_timeout_seconds(invokes=invokes)
        return
    hook = hook_timeout_seconds(function_timeout, invokes=invokes)
    assert MIN_HOOK_TIMEOUT_SECONDS <= hook <= LAMBDA_MAX_TIMEOUT_SECONDS
    # Every invoke may run to the function's timeout (plus a cold start), and the report still has its
    # reserve and margin before Lambda ends the hook.
    spent = hook_budget.SETUP_SECONDS + invokes * (function_timeout + hook_budget.INVOKE_OVERHEAD_SECONDS)
    assert hook - spent >= hook_budget.REPORT_RESERVE_SECONDS + hook_budget.SAFETY_SECONDS


def test_short_timeouts_keep_the_three_minute_floor_and_long_ones_grow():
    assert hook_timeout_seconds(3) == MIN_HOOK_TIMEOUT_SECONDS
    assert hook_timeout_seconds(60) > MIN_HOOK_TIMEOUT_SECONDS  # two 60 s invokes do not fit in 3 minutes
    assert hook_timeout_seconds(300) > hook_timeout_seconds(60)


def test_the_longest_accepted_timeout_fits_exactly():
    for invokes in (1, 2):
        longest = max_function_timeout_seconds(invokes=invokes)
        check_fits(longest, invokes=invokes)
        assert hook_timeout_seconds(longest, invokes=invokes) <= LAMBDA_MAX_TIMEOUT_SECONDS
        with pytest.raises(ValueError):
            check_fits(longest + 1, invokes=invokes)


def test_too_long_a_function_timeout_is_refused_naming_both_numbers():
    with pytest.raises(ValueError) as info:
        check_fits(900)
    message = str(info.value)
    assert "function timeout 900 s" in message
    assert f"maximum of {LAMBDA_MAX_TIMEOUT_SECONDS} s" in message
    assert f"at most {max_function_timeout_seconds()} s" in message


@pytest.mark.parametrize("bad", [0, -5, 901, 60.5, "60", True])
def test_a_function_timeout_lambda_would_refuse_is_refused(bad):
    with pytest.raises(ValueError, match="must be a whole number of seconds from 1 to 900"):
        check_fits(bad)
