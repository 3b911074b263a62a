# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""Real Lambda log lines through the metric filters' patterns, with CloudWatch Logs filter semantics.

The matcher below implements the part of CloudWatch Logs' text filter-pattern syntax that
stacks/constructs/alarms.py uses (and rejects the rest loudly, so a pattern using more syntax cannot be
"tested" by a matcher that misunderstands it):
- terms separated by spaces; a term is a bare word (letters, digits, `_`) or a "quoted phrase";
- plain terms must all appear (AND); `?term`s: at least one must appear (OR); `-term` must not appear;
- matching is case-sensitive and a term may appear anywhere in the event (substring);
- an empty pattern matches every event.
test_alarms.py checks that the synthesized MetricFilters carry exactly LOG_PATTERNS.
"""

from __future__ import annotations

import re

import pytest

from stacks.constructs.alarms import LOG_PATTERNS

_TOKEN = re.compile(r'\s*([?-]?)("(?:[^"\\]|\\.)*"|[^\s"]+)')
_BARE = re.compile(r"\w+")


def parse_pattern(pattern: str) -> tuple[str, list[tuple[str, str]]]:
    """Returns ("all" | "any", [(prefix, term)]) or raises ValueError for syntax this matcher lacks."""
    text = pattern.strip()
    if text[:1] in ("{", "[", "%"):
        raise ValueError(f"JSON, space-delimited and regex patterns are not supported: {pattern!r}")
    terms: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot parse {pattern!r} at {pos}")
        prefix, raw = match.groups()
        if raw.startswith('"'):
            term = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif _BARE.fullmatch(raw):
            term = raw
        else:
            raise ValueError(f"term {raw!r} has non-alphanumeric characters: CloudWatch needs it quoted")
        terms.append((prefix, term))
        pos = match.end()
    prefixes = {p for p, _ in terms}
    if "?" in prefixes and prefixes != {"?"}:
        raise ValueError(f"mixing ?-terms with other terms is not supported: {pattern!r}")
    return ("any" if prefixes == {"?"} else "all"), terms


def matches(pattern: str, event: str) -> bool:
    mode, terms = parse_pattern(pattern)
    if mode == "any":
        return any(term in event for _, term in terms)
    return all((term in event) != (prefix == "-") for prefix, term in terms)


def metric_matches(kind: str, event: str) -> bool:
    """A metric fed by several filters counts an event when any of its patterns matches it."""
    return any(matches(p, event) for p in LOG_PATTERNS[kind])


# ---------------------------------------------------------------------------------------------------------
# The matcher itself


class TestMatcher:
    def test_quoted_phrases_are_anded(self):
        assert matches('"INIT_REPORT" "Status: error"', "INIT_REPORT Init Duration: 1 ms\tStatus: error")
        assert not matches(
            '"INIT_REPORT" "Status: error"', "INIT_REPORT Init Duration: 1 ms\tStatus: success"
        )
        assert not matches('"INIT_REPORT" "Status: error"', "REPORT RequestId: x\tStatus: error")

    def test_question_mark_terms_are_ored(self):
        pattern = '?"Runtime.ImportModuleError" ?"Runtime.HandlerNotFound"'
        assert matches(pattern, "[ERROR] Runtime.HandlerNotFound: handler.nope is undefined")
        assert matches(pattern, "[ERROR] Runtime.ImportModuleError: Unable to import module 'x'")
        assert not matches(pattern, "[ERROR] ValueError: bad input")

    def test_bare_terms_exclusion_and_case(self):
        assert matches("ERROR", "[ERROR] boom")
        assert not matches("ERROR", "[error] boom")  # case-sensitive
        assert matches("ERROR -Timeout", "[ERROR] boom")
        assert not matches("ERROR -Timeout", "[ERROR] Timeout talking to db")

    def test_phrase_must_match_exactly_including_whitespace(self):
        # Lambda's platform lines separate fields with tabs: a phrase spanning two fields would miss.
        assert not matches('"Phase: init Status: error"', "Phase: init\tStatus: error")

    def test_empty_pattern_matches_everything(self):
        assert matches("", "anything at all")

    @pytest.mark.parametrize(
        "pattern",
        ['{ $.level = "ERROR" }', "[ip, user, ...]", "%ERROR.*%", "Runtime.ImportModuleError", '?"a" "b"'],
    )
    def test_unsupported_syntax_is_an_error_not_a_silent_miss(self, pattern):
        with pytest.raises(ValueError):
            matches(pattern, "Runtime.ImportModuleError")


# ---------------------------------------------------------------------------------------------------------
# Real Lambda (python3.11 runtime) log events. Platform lines separate fields with tabs; the brief's
# INIT_REPORT sample with spaces is kept too, since both must match.

REQ = "8f5e2c1a-3b4d-4e6f-9a0b-1c2d3e4f5a6b"
IMPORT_ERROR_INVOCATION = [
    "INIT_START Runtime Version: python:3.11.v48\tRuntime Version ARN: arn:aws:lambda:eu-west-1::runtime:abc",
    "[ERROR] Runtime.ImportModuleError: Unable to import module 'handler': No module named 'mangum'\n"
    "Traceback (most recent call last):",
    "INIT_REPORT Init Duration: 1234.56 ms\tPhase: init\tStatus: error\t"
    "Error Type: Runtime.ImportModuleError",
    f"START RequestId: {REQ} Version: 7",
    "[ERROR] Runtime.ImportModuleError: Unable to import module 'handler': No module named 'mangum'\n"
    "Traceback (most recent call last):",
    "INIT_REPORT Init Duration: 1211.02 ms\tPhase: invoke\tStatus: error\t"
    "Error Type: Runtime.ImportModuleError",
    f"END RequestId: {REQ}",
    f"REPORT RequestId: {REQ}\tDuration: 1250.11 ms\tBilled Duration: 1251 ms\tMemory Size: 1024 MB\t"
    "Max Memory Used: 81 MB\tStatus: error\tError Type: Runtime.ImportModuleError",
]
INIT_FAILURES = [
    "INIT_REPORT Init Duration: 1234.56 ms Phase: init Status: error Error Type: Runtime.ImportModuleError",
    "[ERROR] Runtime.HandlerNotFound: Handler 'lambda_handler' missing on module 'handler'",
    "[ERROR] Runtime.UserCodeSyntaxError: Syntax error in module 'handler': "
    "invalid syntax (handler.py, line 3)",
    "INIT_REPORT Init Duration: 912.40 ms\tPhase: init\tStatus: error\tError Type: Runtime.ExitError",
    "RequestId: 1b2c Error: Runtime exited with error: exit status 1\nRuntime.ExitError",
    "INIT_REPORT Init Duration: 10000.00 ms\tPhase: init\tStatus: timeout",
]
TIMEOUTS = [
    "2026-11-22T10:00:00.000Z abc Task timed out after 60.00 seconds",
    f"2026-11-22T10:05:31.417Z {REQ} Task timed out after 60.06 seconds",
]
TIMEOUT_REPORT = (
    f"REPORT RequestId: {REQ}\tDuration: 60000.00 ms\tBilled Duration: 60000 ms\tMemory Size: 1024 MB\t"
    "Max Memory Used: 310 MB\tStatus: timeout"
)
ORDINARY = [
    "INIT_START Runtime Version: python:3.11.v48\tRuntime Version ARN: arn:aws:lambda:eu-west-1::runtime:abc",
    f"START RequestId: {REQ} Version: 8",
    f"END RequestId: {REQ}",
    f"REPORT RequestId: {REQ}\tDuration: 85.20 ms\tBilled Duration: 86 ms\tMemory Size: 1024 MB\t"
    "Max Memory Used: 140 MB\tInit Duration: 2480.33 ms",
    f"REPORT RequestId: {REQ}\tDuration: 12.01 ms\tBilled Duration: 13 ms\tMemory Size: 1024 MB\t"
    "Max Memory Used: 141 MB",
    f"[INFO]\t2026-11-22T10:00:01.120Z\t{REQ}\tGET /health 200 in 4 ms",
    f"[WARNING]\t2026-11-22T10:00:02.000Z\t{REQ}\tslow query (1.9 s): SELECT * FROM credentials",
    f"[ERROR]\t2026-11-22T10:00:03.000Z\t{REQ}\tValueError: license number is empty",
    '{"level": "INFO", "message": "campaign run finished", "sent": 42, "timed_out": 0}',
    f"[INFO]\t2026-11-22T10:00:04.000Z\t{REQ}\tretrying request that timed out after 5 s",
    "EXTENSION\tName: xray\tState: Ready\tEvents: [INVOKE, SHUTDOWN]",
]


@pytest.mark.parametrize("event", [e for e in IMPORT_ERROR_INVOCATION if "ImportModuleError" in e])
def test_import_error_lines_feed_the_init_error_metric(event):
    assert metric_matches("InitErrors", event)


def test_one_failed_cold_start_counts_at_least_once():
    assert sum(metric_matches("InitErrors", e) for e in IMPORT_ERROR_INVOCATION) >= 1


@pytest.mark.parametrize("event", INIT_FAILURES)
def test_other_init_failures_feed_the_init_error_metric(event):
    assert metric_matches("InitErrors", event)


@pytest.mark.parametrize("event", TIMEOUTS)
def test_timeout_lines_are_not_init_errors(event):
    # Timeouts are counted from the Duration metric (alarms.timeout_rank_statistic), not from log lines.
    assert not metric_matches("InitErrors", event)


@pytest.mark.parametrize(
    ("event", "counted"),
    [
        ("INIT_REPORT Init Duration: 10.00 ms\tPhase: init\tStatus: success", False),
        ("INIT_REPORT Init Duration: 10.00 ms\tPhase: invoke\tStatus: failure", True),
        ("INIT_REPORT Init Duration: 10.00 ms\tPhase: init\tStatus: timeout", True),
    ],
)
def test_every_init_report_status_but_success_is_an_init_error(event, counted):
    assert metric_matches("InitErrors", event) is counted


def test_a_timed_out_invocations_report_line_is_not_an_init_error():
    # Its "Status: timeout" must not be mistaken for an init timeout (no INIT_REPORT on the line).
    assert not metric_matches("InitErrors", TIMEOUT_REPORT)


@pytest.mark.parametrize("event", ORDINARY)
@pytest.mark.parametrize("kind", sorted(LOG_PATTERNS))
def test_ordinary_lines_match_no_filter(kind, event):
    assert not metric_matches(kind, event)


def test_every_pattern_is_within_the_matchers_syntax():
    for kind, patterns in LOG_PATTERNS.items():
        for pattern in patterns:
            parse_pattern(pattern)  # raises for syntax the matcher (and these tests) would misread
            assert len(pattern) <= 1024, f"{kind}: CloudWatch limits a filter pattern to 1024 characters"
