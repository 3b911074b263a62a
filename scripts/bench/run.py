"""Benchmark: this bundler against `sam build`, every tool timed as a whole process, on the same inputs.

Run by `make bench`; writes docs/benchmark.md. Each row runs its commands interleaved (A B A B ...), --runs
times (5), and reports the median with the spread (min-max). SAM gets the backend's lock pins as its
requirements file (what this bundler installs), so both install the same versions.

Rows and targets:
* cold bundle: `python -m scripts.bundle.build` in an empty cache folder (uv's wheel cache included) against
  `sam build` in a fresh build folder with an empty pip cache: <= 0.3x;
* after a one-line edit in the middle of handler.py: `cdk synth` of this app against a no-op `cdk synth`
  (<= 1.15x) and against `sam build --cached` after the same edit;
* save-to-served: `make local-api WATCH=1`'s process serving the backend, from the file write to the first
  response of GET /health that shows the new code version, against `sam build --cached` after the same
  edit plus the same request to its output under the Lambda RIE: <= 1 s and <= 0.5x `sam build --cached`;
* zip size of both outputs, zipped the same way;
* cold start under the RIE: start plus first GET /health of each output (no target; the standing figure).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.bench.report import (
    EDITED,
    Report,
    Timing,
    interleaved,
    lock_pins,
    middle_edit,
    render,
    render_document,
)
from scripts.local.emulator import LambdaEmulator
from stacks.bundling.zipwrite import write_zip

REPO_ROOT = Path(__file__).resolve().parents[2]

SAM_VERSION = "1.170.0"
SAM_VENV = REPO_ROOT / ".cache" / "bench" / "sam-venv"
DOC_PATH = REPO_ROOT / "docs" / "benchmark.md"
TIMEOUT_S = 900
SAM_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: app/
      Handler: handler.lambda_handler
      Runtime: python3.11
      Architectures: [x86_64]
"""
HEALTH_EVENT = {
    "resource": "/{proxy+}",
    "path": "/health",
    "httpMethod": "GET",
    "headers": {"Host": "bench.local"},
    "multiValueHeaders": {"Host": ["bench.local"]},
    "queryStringParameters": None,
    "multiValueQueryStringParameters": None,
    "pathParameters": {"proxy": "health"},
    "stageVariables": None,
    "requestContext": {
        "resourcePath": "/{proxy+}",
        "httpMethod": "GET",
        "path": "/v1/health",
        "stage": "v1",
        "requestId": "bench",
        "identity": {"sourceIp": "127.0.0.1"},
    },
    "body": None,
    "isBase64Encoded": False,
}
# What each side of each row includes; docs/benchmark.md states it under the tables.


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which command and why."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str], what: str, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> float:
    """Run `cmd` as a whole process; its wall time, or BenchError naming `what`."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=TIMEOUT_S, env=dict(env or os.environ), cwd=cwd
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{what}: {exc}") from exc
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2500:]}")
    return elapsed


def ensure_sam(venv: Path = SAM_VENV) -> Path:
    """`sam` of aws-sam-cli==SAM_VERSION in a venv of its own, created once."""
    sam = venv / "bin" / "sam"
    if not sam.exists():
        _log(f"[bench] installing aws-sam-cli=={SAM_VERSION} into {venv} (once; a few minutes)")
        run([sys.executable, "-m", "venv", str(venv)], "creating the SAM venv")
        run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"aws-sam-cli=={SAM_VERSION}"],
            f"pip install aws-sam-cli=={SAM_VERSION}",
        )
    return sam


@dataclass(frozen=True)
class Project:
    """A copy of the backend (ours) and a SAM project of the same source and pins."""

    backend: Path
    sam_stage: Path

    @property
    def edited(self) -> tuple[Path, Path]:
        return self.backend / "src" / EDITED, self.sam_stage / "app" / EDITED


def stage(backend: Path, dest: Path) -> Project:
    lock = backend / "requirements.lock"
    if not lock.is_file():
        raise BenchError(f"{backend} has no requirements.lock: run `make lock` (both tools get its pins)")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(backend / "src", dest / "backend" / "src", ignore=ignore)
    for name in ("requirements.txt", "requirements.lock"):
        shutil.copyfile(backend / name, dest / "backend" / name)
    shutil.copytree(backend / "src", dest / "sam" / "app", ignore=ignore)
    (dest / "sam" / "app" / "requirements.txt").write_text(lock_pins(lock.read_text()))
    (dest / "sam" / "template.yaml").write_text(SAM_TEMPLATE)
    return Project(dest / "backend", dest / "sam")


class Bench:
    def __init__(self, backend: Path, scratch: Path, runs: int, log: Callable[[str], None] = _log) -> None:
        self.scratch, self.runs, self.log = scratch, runs, log
        self.project = stage(backend, scratch / "project")
        self.sam = ensure_sam()
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join(
                [
                    str(REPO_ROOT / ".venv" / "bin"),
                    str(REPO_ROOT / "node_modules" / ".bin"),
                    os.environ.get("PATH", ""),
                ]
            ),
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "SAM_CLI_TELEMETRY": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.nonce = uuid.uuid4().hex[:12]  # no bundle cached by an earlier invocation answers an edit
        self.ours_zip: Path | None = None

    def sam_build(self, build: Path, *, cached: bool, pip_cache: Path) -> float:
        cmd = [str(self.sam), "build", "--template-file", "template.yaml", "--build-dir", str(build)]
        if cached:
            cmd += ["--cached", "--cache-dir", str(self.scratch / "sam-cache")]
        env = {**self.env, "PIP_CACHE_DIR": str(pip_cache)}
        return run(cmd, "sam build" + (" --cached" if cached else ""), env=env, cwd=self.project.sam_stage)

    def cold(self) -> dict[str, Timing]:
        def ours(n: int) -> float:
            cache = self.scratch / f"cold-{n}"
            cmd = [
                sys.executable,
                "-m",
                "scripts.bundle.build",
                "--backend",
                str(self.project.backend),
                "--cache-dir",
                str(cache),
            ]
            seconds = run(cmd, "scripts/bundle/build.py (cold)", env=self.env, cwd=REPO_ROOT)
            zips = sorted(cache.glob("bundles/*/bundle.zip"))
            if zips:
                self.ours_zip = self.scratch / "ours.zip"
                shutil.copyfile(zips[0], self.ours_zip)
            shutil.rmtree(cache)
            return seconds

        def sam(n: int) -> float:
            build, pip_cache = self.scratch / f"sam-cold-{n}", self.scratch / f"sam-pip-{n}"
            seconds = self.sam_build(build, cached=False, pip_cache=pip_cache)
            if n == 0:
                shutil.copytree(build / "Api", self.scratch / "sam-output")
            shutil.rmtree(build)
            shutil.rmtree(pip_cache, ignore_errors=True)
            return seconds

        return interleaved(self.runs, [("cold", ours), ("sam_cold", sam)], self.log)

    def edits(self) -> dict[str, Timing]:
        outdir = self.scratch / "cdk.out"
        synth_cmd = [
            "cdk",
            "synth",
            "--quiet",
            "-c",
            f"backend_root={self.project.backend}",
            "--output",
            str(outdir),
        ]
        ours_file, sam_file = self.project.edited
        pip_cache = self.scratch / "sam-pip-cached"

        def synth(what: str) -> float:
            return run(synth_cmd, what, env=self.env, cwd=REPO_ROOT)

        def synth_edit(n: int) -> float:
            middle_edit(ours_file, f"synth-{self.nonce}-{n}")
            return synth("cdk synth (after the edit)")

        def sam_cached(n: int) -> float:
            middle_edit(sam_file, f"synth-{self.nonce}-{n}")
            return self.sam_build(self.scratch / "sam-build", cached=True, pip_cache=pip_cache)

        synth("cdk synth (priming: this copy's bundle)")
        self.sam_build(self.scratch / "sam-build", cached=True, pip_cache=pip_cache)  # priming
        steps = [
            ("synth_noop", lambda _n: synth("cdk synth (no-op)")),
            ("synth_edit", synth_edit),
            ("sam_cached", sam_cached),
        ]
        return interleaved(self.runs, steps, self.log)

    def served(self) -> dict[str, Timing]:
        ours_file, sam_file = self.project.edited
        log_path = self.scratch / "local-api.log"
        cmd = [
            sys.executable,
            "-m",
            "scripts.local.api",
            "--watch",
            "--port",
            "0",
            "-c",
            f"backend_root={self.project.backend}",
            "--cdk-out",
            str(self.scratch / "cdk.out-local"),
        ]
        with log_path.open("w") as out:
            server = subprocess.Popen(cmd, cwd=REPO_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = _wait_for(lambda: _listening(log_path), 300, "local_api.py listening", server) + "/health"
            _wait_for(lambda: "watching" in log_path.read_text(), 120, "local_api.py watching", server)

            def ours(n: int) -> float:
                before = _code_version(url)
                started = time.perf_counter()
                middle_edit(ours_file, f"served-{self.nonce}-{n}")
                _wait_for(
                    lambda: _code_version(url) not in (before, None), 60, "the edit served", server, 0.01
                )
                return time.perf_counter() - started

            def sam(n: int) -> float:
                middle_edit(sam_file, f"served-{self.nonce}-{n}")
                build = self.scratch / "sam-served"
                started = time.perf_counter()
                self.sam_build(build, cached=True, pip_cache=self.scratch / "sam-pip-cached")
                _invoke_health(build / "Api", (), "handler.lambda_handler", {})
                return time.perf_counter() - started

            return interleaved(self.runs, [("served", ours), ("sam_served", sam)], self.log, warmup=True)
        finally:
            server.terminate()
            server.wait(30)

    def cold_starts(self) -> dict[str, Timing]:
        from scripts.local.environment import environment_config
        from stacks.backend_bundle import bundle_spec, function_environment
        from stacks.bundling.build import build_bundle

        config = environment_config({}, "staging")
        spec = bundle_spec(config, backend_root=self.project.backend, cache_dir=REPO_ROOT / ".cache")
        bundle = build_bundle(spec)
        api = next(f for f in config.functions if f.is_api)
        env = function_environment(config, api, {})
        sam_output = self.scratch / "sam-output"

        def ours(_n: int) -> float:
            return _invoke_health(bundle.directory, bundle.paths[1:], "credmate_probe.handler", env)

        def sam(_n: int) -> float:
            return _invoke_health(sam_output, (), "handler.lambda_handler", {})

        return interleaved(self.runs, [("start", ours), ("sam_start", sam)], self.log, warmup=True)


def _invoke_health(code: Path, layers: Sequence[Path], handler: str, env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    with LambdaEmulator(bundle=code, paths=layers, environment=env, handler=handler) as emulator:
        result = emulator.invoke(HEALTH_EVENT, timeout=60)
    if (
        result.function_error
        or not isinstance(result.payload, dict)
        or result.payload.get("statusCode") != 200
    ):
        raise BenchError(
            f"GET /health under the RIE of {code} did not answer 200: {str(result.payload)[:500]}"
        )
    return time.perf_counter() - started


def _listening(log_path: Path) -> str | None:
    found = re.search(r"listening on (http://127\.0\.0\.1:\d+/\S+)", log_path.read_text())
    return found.group(1) if found else None


def _code_version(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return str(json.loads(response.read()).get("code_version")) if response.status == 200 else None
    except (OSError, ValueError):
        return None


def _wait_for(
    check: Callable[[], object],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes],
    interval: float = 0.1,
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return str(found)
        if proc.poll() is not None:
            raise BenchError(f"{what}: local_api.py exited ({proc.returncode})")
        time.sleep(interval)
    raise BenchError(f"{what}: not within {timeout:.0f} s")


def measure(backend: Path, runs: int, scratch: Path, log: Callable[[str], None] = _log) -> Report:
    load = os.getloadavg()[0]
    bench = Bench(backend, scratch, runs, log)
    rows: dict[str, Timing] = {}
    notes = []
    for name, part in (
        ("cold", bench.cold),
        ("edit", bench.edits),
        ("served", bench.served),
        ("cold start", bench.cold_starts),
    ):
        try:
            rows.update(part())
        except BenchError as exc:
            log(f"[bench] {name} rows not measured: {exc}")
            notes.append(f"{name} rows not measured: {str(exc).splitlines()[0]}")
    sam_output = scratch / "sam-output"
    sam_zip = None
    if sam_output.is_dir():
        write_zip(sam_output, scratch / "sam.zip")
        sam_zip = (scratch / "sam.zip").stat().st_size
    environment = (
        ("host", f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"),
        ("python", platform.python_version()),
        ("sam", f"aws-sam-cli {SAM_VERSION}, no container"),
        ("load average (1 min)", f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"),
    )
    zips = {"ours": bench.ours_zip.stat().st_size if bench.ours_zip else None, "sam": sam_zip}
    return Report(rows, zips, environment, tuple(notes))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (medians are reported)")
    parser.add_argument("--backend", type=Path, default=REPO_ROOT / "apps" / "backend-api")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        with tempfile.TemporaryDirectory(prefix="credmate-bench-") as tmp:
            report = measure(args.backend.resolve(), args.runs, Path(tmp))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(render(report, args.runs))
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m scripts.bench", *(sys.argv[1:] if argv is None else argv)])
    DOC_PATH.write_text(render_document(report, args.runs, command, generated))
    _log(f"[bench] wrote {DOC_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
