# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""A small EventBridge pattern matcher (test support for tests/test_guardrails.py), unit-tested here on its
own against the documented semantics.

EventBridge cannot be called here (no AWS account), so `eb_matches` implements the subset of its pattern
language the out-of-band rule uses (exact values, arrays as OR, prefix, suffix, anything-but, exists,
nesting, array-valued event fields).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

# ---------------------------------------------------------------------------------------------------------
# A small EventBridge pattern matcher (test support)


def eb_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Does `event` match `pattern`, as EventBridge decides? Every pattern field must match (AND); a list is
    a set of alternatives (OR); a field absent from the event matches only {"exists": false}."""
    for key, rule in pattern.items():
        present = key in event
        value = event.get(key)
        if isinstance(rule, dict):
            if not present or not isinstance(value, dict) or not eb_matches(rule, value):
                return False
        elif isinstance(rule, list):
            if not _field_matches(rule, present, value):
                return False
        else:
            raise ValueError(f"pattern field {key!r}: leaf values must be arrays, got {rule!r}")
    return True


def _field_matches(alternatives: list[Any], present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for alternative in alternatives:
        if isinstance(alternative, dict) and "exists" in alternative:
            if alternative["exists"] == present:
                return True
        elif present and any(_leaf_matches(alternative, v) for v in values):
            return True
    return False


def _leaf_matches(matcher: Any, value: Any) -> bool:
    if not isinstance(matcher, dict):
        # Exact match is type-sensitive in EventBridge: "1" is not 1, true is not 1.
        return type(matcher) is type(value) and matcher == value
    ((op, arg),) = matcher.items()
    if op == "prefix":
        return isinstance(value, str) and value.startswith(arg)
    if op == "suffix":
        return isinstance(value, str) and value.endswith(arg)
    if op == "wildcard":
        # `*` matches any run of characters, `\*` a literal star; everything else is literal.
        parts = [re.escape(p).replace(r"\*", ".*") for p in arg.split("\\*")]
        return isinstance(value, str) and re.fullmatch(r"\*".join(parts), value, re.S) is not None
    if op == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == arg.lower()
    if op == "anything-but":
        if isinstance(arg, dict):
            ((inner_op, inner_arg),) = arg.items()
            if inner_op != "prefix":
                raise ValueError(f"anything-but {inner_op!r} not supported by this matcher")
            return isinstance(value, str) and not value.startswith(inner_arg)
        excluded = arg if isinstance(arg, list) else [arg]
        return not any(_leaf_matches(e, value) for e in excluded)
    raise ValueError(f"matcher {op!r} not supported by this matcher")


class TestMatcher:
    def test_exact_values_and_arrays_as_or(self):
        assert eb_matches({"source": ["aws.lambda", "aws.s3"]}, {"source": "aws.s3"})
        assert not eb_matches({"source": ["aws.lambda"]}, {"source": "aws.s3"})
        assert not eb_matches({"n": ["1"]}, {"n": 1})  # type-sensitive

    def test_all_fields_must_match_and_nesting_recurses(self):
        pattern = {"source": ["aws.lambda"], "detail": {"eventSource": ["lambda.amazonaws.com"]}}
        assert eb_matches(
            pattern, {"source": "aws.lambda", "detail": {"eventSource": "lambda.amazonaws.com"}}
        )
        assert not eb_matches(
            pattern, {"source": "aws.lambda", "detail": {"eventSource": "s3.amazonaws.com"}}
        )
        assert not eb_matches(pattern, {"source": "aws.lambda"})

    def test_prefix_and_suffix(self):
        assert eb_matches({"e": [{"prefix": "UpdateFunctionCode"}]}, {"e": "UpdateFunctionCode20150331v2"})
        assert not eb_matches({"e": [{"prefix": "UpdateFunctionCode"}]}, {"e": "GetFunction20150331v2"})
        assert eb_matches({"f": [{"suffix": ":function:app"}]}, {"f": "123456789012:function:app"})
        assert not eb_matches({"f": [{"suffix": ":function:app"}]}, {"f": "app"})

    def test_anything_but_scalar_list_and_prefix(self):
        assert eb_matches({"ip": [{"anything-but": "cloudformation.amazonaws.com"}]}, {"ip": "203.0.113.9"})
        assert not eb_matches({"ip": [{"anything-but": ["a", "b"]}]}, {"ip": "b"})
        assert eb_matches({"ip": [{"anything-but": {"prefix": "10."}}]}, {"ip": "203.0.113.9"})
        assert not eb_matches({"ip": [{"anything-but": {"prefix": "10."}}]}, {"ip": "10.1.2.3"})

    def test_anything_but_does_not_match_an_absent_field(self):
        assert not eb_matches({"invokedBy": [{"anything-but": "cloudformation.amazonaws.com"}]}, {})

    def test_exists(self):
        assert eb_matches({"k": [{"exists": False}]}, {})
        assert not eb_matches({"k": [{"exists": False}]}, {"k": "v"})
        assert eb_matches({"k": [{"exists": True}]}, {"k": "v"})

    def test_array_valued_event_field_matches_if_any_element_does(self):
        assert eb_matches({"r": ["b"]}, {"r": ["a", "b"]})
        assert not eb_matches({"r": ["c"]}, {"r": ["a", "b"]})

    def test_malformed_patterns_are_errors_not_silent_misses(self):
        with pytest.raises(ValueError, match="arrays"):
            eb_matches({"source": "aws.lambda"}, {"source": "aws.lambda"})
        with pytest.raises(ValueError, match="numeric"):
            eb_matches({"n": [{"numeric": [">", 1]}]}, {"n": 2})
