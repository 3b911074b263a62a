"""Renewal goals: how long before a license expires its holder wants to be reminded.

Shared by the API (the login response carries the user's goal), the worker (renewal checks) and the
campaign scheduler (which licenses are "expiring soon"), so all three agree on one validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

GOAL_KINDS: tuple[str, ...] = ("license_renewal",)
MIN_DAYS_BEFORE_EXPIRY = 1
MAX_DAYS_BEFORE_EXPIRY = 365
_FIELDS = frozenset({"kind", "days_before_expiry"})


class GoalValidationError(ValueError):
    """A goal is malformed; the message names the offending field."""


@dataclass(frozen=True, kw_only=True)
class RenewalGoal:
    kind: str = "license_renewal"
    days_before_expiry: int = 60

    def window_end(self, today: date) -> date:
        """Last expiration date (inclusive) that counts as "expiring soon" on `today`."""
        return today + timedelta(days=self.days_before_expiry)

    def as_dict(self) -> dict[str, str | int]:
        return {"kind": self.kind, "days_before_expiry": self.days_before_expiry}


DEFAULT_GOAL = RenewalGoal()


def validate_goal(raw: Mapping[str, object] | None) -> RenewalGoal:
    """Parse a goal object; None or {} gives DEFAULT_GOAL. Raises GoalValidationError naming the field."""
    if raw is None:
        return DEFAULT_GOAL
    if not isinstance(raw, Mapping):
        raise GoalValidationError(f"goal must be an object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise GoalValidationError(f"goal has unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
    kind = raw.get("kind", DEFAULT_GOAL.kind)
    if kind not in GOAL_KINDS:
        raise GoalValidationError(f"goal.kind must be one of {list(GOAL_KINDS)}, got {kind!r}")
    days = raw.get("days_before_expiry", DEFAULT_GOAL.days_before_expiry)
    # bool is an int subclass: `true` must not silently mean one day.
    if isinstance(days, bool) or not isinstance(days, int):
        raise GoalValidationError(f"goal.days_before_expiry must be an integer, got {days!r}")
    if not MIN_DAYS_BEFORE_EXPIRY <= days <= MAX_DAYS_BEFORE_EXPIRY:
        raise GoalValidationError(
            f"goal.days_before_expiry must be between {MIN_DAYS_BEFORE_EXPIRY} and "
            f"{MAX_DAYS_BEFORE_EXPIRY}, got {days}"
        )
    return RenewalGoal(kind=str(kind), days_before_expiry=days)
