"""Run scripts.local.api as a developer does (its own process, a real port) and talk to it with urllib.

The synthesized assembly of the real app is shared by every xdist worker of one run: the first worker to
need it synthesizes under a file lock, the others reuse it (a full synth costs ~10 s).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts.local import stack as local_stack

REPO_ROOT = Path(__file__).resolve().parents[2]

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/\S+)")


def shared_assembly(
    tmp_path_factory: pytest.TempPathFactory, context: Mapping[str, str] | None = None
) -> Path:
    """The app synthesized once per test run (the lock makes parallel workers wait for the first)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run only
    outdir = base / "local-api-assembly"
    with open(base / "local-api-assembly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (outdir / "manifest.json").is_file():
            local_stack.synthesize(outdir, dict(context or {}), log=lambda _m: None)
    return outdir


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> HttpResult:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return HttpResult(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


class LocalApiProcess:
    """`python -m scripts.local.api ARGS --port 0`, its log in a file; stopped by its own process id."""

    def __init__(self, args: list[str], log_path: Path, *, start_timeout: float = 240.0) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scripts.local.api", "--port", "0", *args],
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + start_timeout
        while True:
            found = LISTENING.search(self.log())
            if found:
                self.url = found.group(1)
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise AssertionError(f"local_api.py did not start:\n{log[-4000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"local_api.py log never showed {what}:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()
