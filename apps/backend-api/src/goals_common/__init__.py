"""Goal logic shared by the API, the worker and the campaign scheduler.

Every name the three entry points import must be listed in `__all__` and re-exported here: a name missing
from this file once failed every login (ImportError at init). tests/test_backend_goals_common.py checks the
importers against `__all__`.
"""

from goals_common.goals import (
    DEFAULT_GOAL,
    GOAL_KINDS,
    MAX_DAYS_BEFORE_EXPIRY,
    MIN_DAYS_BEFORE_EXPIRY,
    GoalValidationError,
    RenewalGoal,
    validate_goal,
)

__all__ = [
    "DEFAULT_GOAL",
    "GOAL_KINDS",
    "MAX_DAYS_BEFORE_EXPIRY",
    "MIN_DAYS_BEFORE_EXPIRY",
    "GoalValidationError",
    "RenewalGoal",
    "validate_goal",
]
