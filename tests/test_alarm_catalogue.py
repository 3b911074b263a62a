# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The alarm catalogue and the alarm code that need no synthesized stack: the default thresholds, the
scheduler window setting, the health check's inline code run against a local server, and the README table
generated from the catalogue (tests/test_alarms.py proves the alarms on synthesized templates).
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns

from scripts.alarm_table.table import END, START, main, render_table
from stacks.config import AlarmThresholds
from stacks.constructs.alarms import (
    CATALOGUE,
    HEALTH_CHECK_SOURCE,
    FunctionAlarms,
)
from tests.alarm_stack import RUNBOOK, TIMEOUT


def test_defaults_are_the_incident_write_ups_numbers():
    assert dataclasses.asdict(AlarmThresholds()) == {
        "error_rate_percent": 5.0,
        "throttles": 1.0,
        "timeout_rate_percent": 1.0,
        "init_errors": 1.0,
        "duration_p99_fraction_of_timeout": 0.8,
        "dlq_depth": 0.0,
        "dlq_oldest_age_seconds": 86400.0,
        "scheduler_min_invocations": 1.0,
        "api_5xx_count": 10.0,
        "api_5xx_rate_percent": 5.0,
        "api_latency_p99_ms": 5000.0,
        "health_check_failures": 1.0,
        "waf_blocked_requests": 100.0,
    }
    assert {s.threshold_field for s in CATALOGUE} - {None} == {
        f.name for f in dataclasses.fields(AlarmThresholds)
    }


def test_an_impossible_scheduler_window_names_the_setting():
    stack = cdk.Stack(cdk.App(), "Window")
    log_group = logs.LogGroup(stack, "Logs")
    fn = lambda_.Function(stack, "Fn", code=lambda_.Code.from_inline("x = 1"), handler="index.h",
                          runtime=lambda_.Runtime.PYTHON_3_11, log_group=log_group)  # fmt: skip
    alias = lambda_.Alias(stack, "Live", alias_name="live", version=fn.current_version)
    with pytest.raises(ValueError, match=r"expected_invocation_window.*trigger.expression"):
        FunctionAlarms(
            stack,
            "Alarms",
            label="CampaignScheduler",
            function=fn,
            alias=alias,
            log_group=log_group,
            timeout=TIMEOUT,
            thresholds=AlarmThresholds(),
            topic=sns.Topic(stack, "Topic"),
            runbook_url=RUNBOOK,
            expected_invocation_window=cdk.Duration.days(2),
        )


# ---------------------------------------------------------------------------------------------------------
# The health check's inline code, run against a local HTTP server


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[int]]]:
    statuses: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/health", statuses
    server.shutdown()


def health_handler(monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    monkeypatch.setenv("HEALTH_URL", url)
    monkeypatch.setenv("RETRY_DELAY_SECONDS", "0")
    monkeypatch.setenv("ATTEMPT_TIMEOUT_SECONDS", "2")
    namespace: dict[str, Any] = {}
    exec(compile(HEALTH_CHECK_SOURCE, "index.py", "exec"), namespace)
    return namespace["handler"]


def test_health_check_passes_on_200(health_server, monkeypatch):
    url, _ = health_server
    assert health_handler(monkeypatch, url)({}, None) == {"healthy": True, "status": 200}


def test_health_check_retries_once_then_passes(health_server, monkeypatch):
    url, statuses = health_server
    statuses.extend([502])
    assert health_handler(monkeypatch, url)({}, None)["status"] == 200


def test_health_check_fails_the_invocation_on_persistent_502(health_server, monkeypatch):
    url, statuses = health_server
    statuses.extend([502, 502])
    with pytest.raises(RuntimeError, match="502"):
        health_handler(monkeypatch, url)({}, None)


def test_health_check_fails_when_nothing_listens(monkeypatch):
    with pytest.raises(RuntimeError, match="health check failed"):
        health_handler(monkeypatch, "http://127.0.0.1:9/health")({}, None)


def test_health_check_source_fits_cloudformation_inline_limit():
    assert len(HEALTH_CHECK_SOURCE.encode()) < 4096


# ---------------------------------------------------------------------------------------------------------
# The README table, generated from the catalogue


def test_table_has_a_row_per_catalogue_alarm_and_thresholds_per_environment():
    table = render_table({"staging": AlarmThresholds(), "prod": AlarmThresholds(api_5xx_count=3)})
    lines = table.splitlines()
    assert lines[0].startswith("| Alarm | Applies to | Meaning | Threshold (staging) | Threshold (prod) |")
    assert len(lines) == 2 + len(CATALOGUE)
    (row,) = [line for line in lines if line.startswith("| `Api5xxCount`")]
    assert "> 10 5XX responses in 5 min | > 3 5XX responses in 5 min" in row
    (page,) = [line for line in lines if line.startswith("| `ServiceUnhealthy`")]
    assert "paging topic" in page


def test_readme_check_and_write(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{START}\nold\n{END}\nafter\n")
    assert main(["--check", str(readme)]) == 1
    assert main(["--write", str(readme)]) == 0
    assert main(["--check", str(readme)]) == 0
    text = readme.read_text()
    assert text.endswith(f"{END}\nafter\n") and "| `InitErrors` |" in text
    readme.write_text("no markers")
    assert main(["--check", str(readme)]) == 2
    assert "alarm-table:start" in capsys.readouterr().err
