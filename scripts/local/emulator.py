"""Run a real Lambda bundle under AWS's Runtime Interface Emulator and awslambdaric, without Docker.

    with LambdaEmulator(bundle=path, environment={"CREDMATE_REAL_HANDLER": "handler.lambda_handler"}) as fn:
        result = fn.invoke({"credmate_probe": {}})

The emulator binary comes from scripts/local/fetch_rie.py (it ships in the aws-sam-cli wheel). It always binds
127.0.0.1 on free ports: without an address flag it would listen on every interface. The runtime is this
interpreter started with `-S`, so its site-packages (where the backend's dependencies are installed for the
tests) are NOT importable; sys.path is the bundle, then a folder holding only awslambdaric and its two
dependencies: the same view of the world a Lambda function has (/var/task, then the runtime).
Observed behaviour of aws-lambda-rie 1.170.0 (from SAM CLI): an init failure answers HTTP 502 with the
runtime's error document (`{"errorType": "Runtime.ImportModuleError", ...}`), an unhandled exception in the
handler answers 200 with the error document, and the process is restarted for the next invoke (as Lambda
re-runs init after a failed one).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from scripts.local import fetch_rie as fetch_rie_script  # re-exported: the tests and fixtures use it
from stacks.bundling import bundle_cache
from stacks.bundling.indexes import find_uv

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["HarnessError", "InvokeResult", "LambdaEmulator", "fetch_rie_script", "free_port", "runtime_path"]

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RUNTIME_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")
ERROR_KEYS = frozenset({"errorType", "errorMessage", "stackTrace", "requestId", "cause"})


class HarnessError(RuntimeError):
    """The emulator could not be started or answered nonsense; the message says what to fix."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runtime_path(cache_dir: Path = fetch_rie_script.DEFAULT_CACHE, python_version: str | None = None) -> Path:
    """A folder with only awslambdaric, its C extension and its dependencies: symlinks into this venv for
    this Python, else the same versions installed for `python_version` (once, by uv, cached)."""
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python_version not in (None, host):
        return _installed_runtime(cache_dir, str(python_version))
    target = cache_dir / f"runtime-py{host.replace('.', '')}"
    target.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise HarnessError(
                f"{name} is not installed in {sys.prefix}: pip install -r requirements-dev.txt"
            ) from exc
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith(("..", "/"))}
        for top in tops:
            if top.endswith((".dist-info", ".data")) or top == "__pycache__":
                continue
            source = Path(str(dist.locate_file(top)))
            link = target / top
            if source.exists() and not link.exists():
                with contextlib.suppress(FileExistsError):  # a parallel test worker made it first
                    link.symlink_to(source)
    return target


def _installed_runtime(cache_dir: Path, python_version: str) -> Path:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in RUNTIME_DISTRIBUTIONS]
    versions = "-".join(pin.partition("==")[2] for pin in pins)
    target = cache_dir / f"runtime-py{python_version.replace('.', '')}-{versions}"

    def install(work: Path) -> None:
        uv = find_uv()
        if uv is None:
            raise HarnessError(f"uv is needed to install awslambdaric for Python {python_version}")
        args = [uv, "pip", "install", "--target", str(work), "--python-version", python_version, "--quiet"]
        done = subprocess.run([*args, "--only-binary", ":all:", *pins], capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(
                f"installing {' '.join(pins)} for Python {python_version} failed:\n{done.stderr[-2000:]}"
            )

    bundle_cache.publish(target, install)  # complete or absent, whoever installs it at the same time
    return target


@dataclass(frozen=True)
class InvokeResult:
    http_status: int
    payload: Any  # parsed JSON, or the raw text
    raw: bytes

    @property
    def function_error(self) -> bool:
        """The runtime's error document: an init failure (HTTP 502) or an unhandled exception."""
        return self.http_status != 200 or (
            isinstance(self.payload, dict) and "errorType" in self.payload and set(self.payload) <= ERROR_KEYS
        )


class LambdaEmulator:
    """One function: one aws-lambda-rie process serving one bundle and handler. Always stopped on exit."""

    def __init__(
        self,
        *,
        bundle: Path,
        paths: Sequence[Path] = (),
        environment: Mapping[str, str],
        handler: str = "credmate_probe.handler",
        function_name: str = "function",
        timeout_seconds: int = 30,
        rie: Path | None = None,
        python: str = sys.executable,
        python_version: str | None = None,  # `python`'s X.Y when it is not this interpreter
        start_timeout: float = 15.0,
        bootstrap: Sequence[str] = (),
    ) -> None:
        self.bundle = Path(bundle).resolve()
        self.paths = [Path(p).resolve() for p in paths]  # the bundle's other folders (its dependency layer)
        if not (self.bundle / handler.rpartition(".")[0].replace(".", "/")).with_suffix(".py").exists():
            raise HarnessError(f"{self.bundle} has no module for handler {handler}")
        self.environment = dict(environment)
        self.handler = handler
        self.function_name = function_name
        self.timeout_seconds = timeout_seconds
        self.rie = rie
        self.python = python
        self.python_version = python_version
        self.start_timeout = start_timeout
        # The runtime's command before the handler (default: `python -S -B -m awslambdaric`).
        self.bootstrap = list(bootstrap) or [python, "-S", "-B", "-m", "awslambdaric"]
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="rie-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{INVOKE_PATH}"

    def start(self) -> LambdaEmulator:
        rie = self.rie or fetch_rie_script.fetch_rie()
        self.port, runtime_api_port = free_port(), free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONPATH": os.pathsep.join(
                map(str, [self.bundle, *self.paths, runtime_path(python_version=self.python_version)])
            ),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(self.bundle),
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_seconds),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            **self.environment,
        }
        command = [
            str(rie),
            "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
            "--runtime-api-address", f"127.0.0.1:{runtime_api_port}",
            *self.bootstrap, self.handler,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=self.bundle,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise HarnessError(f"aws-lambda-rie exited at start-up:\n{self.logs()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise HarnessError(
            f"aws-lambda-rie did not listen on 127.0.0.1:{self.port} within {self.start_timeout}s"
        )

    def invoke(self, event: Any, *, timeout: float | None = None) -> InvokeResult:
        if self.process is None:
            raise HarnessError("emulator not started")
        raw_event = event if isinstance(event, bytes) else json.dumps(event).encode()
        request = urllib.request.Request(
            self.url, data=raw_event, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout_seconds + 10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            payload: Any = json.loads(text) if text else None
        except ValueError:
            payload = text
        if status != 200 and not isinstance(payload, dict):
            # The emulator lost the runtime's error document (e.g. the process died): say so from its log.
            payload = {"errorType": "Runtime.ExitError", "errorMessage": self._last_error() or text}
        return InvokeResult(status, payload, raw)

    def _last_error(self) -> str:
        lines = [ln for ln in self.logs().splitlines() if ln.startswith("[ERROR]") or "Error" in ln[:40]]
        return lines[-1][:1000] if lines else ""

    def logs(self) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""

    def logs_since(self, offset: int) -> tuple[str, int]:
        """The log written after byte `offset`, and the offset to pass next time."""
        try:
            with open(self._log.name, "rb") as log:
                log.seek(offset)
                data = log.read()
        except OSError:
            return "", offset
        return data.decode(errors="replace"), offset + len(data)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # the emulator and the runtime it started
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> LambdaEmulator:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
