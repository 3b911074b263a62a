# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""goals_common: its exports, and that every importer only uses exported names (the incident: a name the
login path imported was missing from the package, and every login failed at init)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def imported_names(module: str) -> dict[str, set[str]]:
    """{file: names} for every `from <module> import ...` in src/, outside the package itself."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        if module in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                found.setdefault(str(path.relative_to(SRC)), set()).update(a.name for a in node.names)
    return found


def test_all_lists_only_names_that_exist():
    import goals_common

    missing = [name for name in goals_common.__all__ if not hasattr(goals_common, name)]
    assert missing == []


def test_api_worker_and_scheduler_import_only_exported_names():
    import goals_common

    importers = imported_names("goals_common")
    # the three entry points' code paths all depend on it
    assert {"app/routes/auth.py", "app/documents.py", "campaign_scheduler.py"} <= set(importers)
    not_exported = {
        f: sorted(n - set(goals_common.__all__))
        for f, n in importers.items()
        if n - set(goals_common.__all__)
    }
    assert not_exported == {}, f"add these to goals_common/__init__.py and __all__: {not_exported}"


def test_validate_goal_defaults_and_accepts_valid_goals():
    from goals_common import DEFAULT_GOAL, RenewalGoal, validate_goal

    assert validate_goal(None) == validate_goal({}) == DEFAULT_GOAL
    assert validate_goal({"days_before_expiry": 30}) == RenewalGoal(days_before_expiry=30)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"days_before_expiry": 0}, "between 1 and 365"),
        ({"days_before_expiry": 366}, "between 1 and 365"),
        ({"days_before_expiry": True}, "must be an integer"),
        ({"days_before_expiry": "30"}, "must be an integer"),
        ({"kind": "cme"}, "goal.kind"),
        ({"days": 30}, "unknown field"),
        ([30], "must be an object"),
    ],
)
def test_validate_goal_rejects_with_the_field_named(raw, message):
    from goals_common import GoalValidationError, validate_goal

    with pytest.raises(GoalValidationError, match=message):
        validate_goal(raw)
