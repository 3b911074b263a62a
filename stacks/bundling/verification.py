"""Verify at synth that every handler imports from the built bundle, as Lambda would import it.

Each handler is imported in its own `python3.X -I -S` process (Lambda starts one runtime per function, so
one handler's imports must not hide another's missing module). Failures become one `BundlingError` that
names the function, the handler, the exception and a hint pointing at the file to fix. The same process then
imports the dependencies the function's code imports lazily (recorded by the bundle's import closure in
closure.json beside it), each reported with the file:line of its import.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.bundling import manifest, verify_cache
from stacks.bundling.import_closure import listed_in_requirements
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError, HandlerCheck

HEALTHY = ("healthy", "ok", "pass", "up")  # as verify_in_bundle.HEALTHY_STATUSES (that file runs standalone)

VERIFY_SCRIPT = Path(__file__).with_name("verify_in_bundle.py")
VERIFY_TIMEOUT_SECONDS = 120
# At most one check per core at once, across every verification of this process (an app verifies each
# environment's bundle side by side), each at a lower priority than synth's own work, which every synth
# waits on (a niceness, never starved like an idle-only policy would be on a busy machine).
_CORES = threading.BoundedSemaphore(os.cpu_count() or 1)
CHECK_NICENESS = 10


@dataclass(frozen=True)
class VerificationFailure:
    function: str
    handler: str
    error: str
    hint: str

    def __str__(self) -> str:
        return f"function {self.function} (handler {self.handler}): {self.error}\n    hint: {self.hint}"


def target_interpreter(spec: BundleSpec) -> str:
    """The target Python (python3.11 for runtime python3.11), found on PATH; never silently another one."""
    name = f"python{spec.python_version}"
    found = shutil.which(name)
    if not found:
        raise BundlingError(
            f"cannot verify the bundle: {name} (the {spec.runtime} runtime's interpreter) is not on PATH. "
            f"Install it, or skip verification loudly with -c skip_bundle_verification=true"
        )
    return found


def hint_for(result: Mapping[str, object], spec: BundleSpec) -> str:
    kind, message = str(result.get("type")), str(result.get("message"))
    name = result.get("name")
    handler = str(result.get("handler"))
    if kind == "ModuleNotFoundError" and isinstance(name, str):
        top = name.split(".")[0]
        if (spec.source_dir / top).exists() or (spec.source_dir / f"{top}.py").exists():
            return f"'{name}' is missing inside {spec.source_dir / top}: check the package's files"
        if listed_in_requirements(spec.requirements, top):
            return (
                f"{top} is listed in {spec.requirements} but no module '{top}' was installed "
                f"for {spec.runtime}"
            )
        return f"{top} is not in {spec.requirements}: add it there (pinned)"
    if kind == "ImportError":
        match = re.search(r"cannot import name '([^']+)' from '([^']+)'", message)
        if match:
            symbol, module = match.groups()
            where = manifest.local_module_path(spec, module) or spec.source_dir / module.replace(".", "/")
            return (
                f"module {module} no longer exports {symbol}: restore it in {where} or update the importers"
            )
    if kind in ("SyntaxError", "IndentationError", "TabError"):
        filename = str(result.get("filename") or "")
        local = filename.replace(str(result.get("bundle", "")), "")
        return f"fix the syntax error at {Path(local).name or filename} line {result.get('lineno')}"
    if kind == "AttributeError" and result.get("stage") == "attribute":
        module, _, attr = handler.rpartition(".")
        return (
            f"module {module} has no attribute {attr}: fix the handler setting of this function or define it"
        )
    if kind == "KeyError" and "environ" in str(result.get("traceback") or ""):
        variable = message.strip("'\"")
        return (
            f"the code reads environment variable {variable} at import: set it in this function's "
            f"`environment` in the function catalog (cdk.json functions.{result.get('function')}.environment)"
        )
    if result.get("stage") == "health":
        return (
            "the health GET through the handler did not answer 200 with a healthy status "
            f"({', '.join(HEALTHY)}): run the backend tests"
        )
    return "see the traceback above; the bundle's handler must import cleanly in a fresh interpreter"


def lazy_imports_for(bundle: BundleResult) -> dict[str, list[list[object]]]:
    """function -> [[module, [names], "file:line"], ...] from the bundle's closure.json ({} when absent)."""
    path = bundle.directory.parent / "closure.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lazy_failure(check: HandlerCheck, failure: Mapping[str, str], spec: BundleSpec) -> VerificationFailure:
    hint = hint_for(
        {"type": failure["type"], "message": failure["message"], "name": failure["name"] or None}, spec
    )
    return VerificationFailure(
        check.function,
        check.handler,
        f"{failure['where']}: lazy import of {failure['module']} failed: {failure['type']}: "
        f"{failure['message']}",
        hint,
    )


@dataclass(frozen=True)
class Verified:
    """What verify_bundle did: the functions whose check it ran, those proven by another function's run
    (function -> the one whose run proved it), and those whose earlier pass carried over."""

    ran: tuple[str, ...]
    carried: tuple[str, ...]
    shared: tuple[tuple[str, str], ...] = ()

    def summary(self, runtime: str) -> str:
        """The one log line of a verification."""
        parts = [f"[bundle] verified {len(self.ran)} handler(s) in isolated {runtime} interpreters"]
        if self.ran:
            parts[0] += f": {', '.join(self.ran)}"
        if self.shared:
            parts.append(
                "shared (same handler and environment but the function label): "
                + ", ".join(f"{fn} by {by}" for fn, by in self.shared)
            )
        if self.carried:
            parts.append(
                f"carried over (every bundle file its check read is unchanged): {', '.join(self.carried)}"
            )
        return "; ".join(parts)


def _request(check: HandlerCheck, lazy: Mapping[str, list[list[object]]]) -> dict[str, object]:
    return {
        "function": check.function,
        "handler": check.handler,
        "http_health": check.http_health,
        "health_path": check.health_path,
        "memory_mb": check.memory_mb,
        "timeout_seconds": check.timeout_seconds,
        # Without per-function closures (no BundleSpec.handlers), every lazy import.
        "lazy": lazy.get(check.function, lazy.get("*", [])),
    }


def shared_identity(check: HandlerCheck, request: Mapping[str, object], env: Mapping[str, str]) -> str:
    """What a check's run depends on, but the function's label: its name (the context's function name and
    ARN) and `check.label_variables`. Two functions equal in all else run the same handler with the same
    environment and lazy imports, so one run proves both. A run sees one function's name and label, so
    code comparing the two sees them agree, as on Lambda."""
    unlabelled = {k: v for k, v in env.items() if k not in check.label_variables}
    return json.dumps([{**request, "function": ""}, unlabelled], sort_keys=True)


def verify_bundle(
    bundle: BundleResult,
    spec: BundleSpec,
    checks: Sequence[HandlerCheck],
    *,
    environment: Mapping[str, str] | None = None,
    interpreter: str | None = None,
    reuse: bool = True,
) -> Verified:
    """Raise BundlingError listing every handler that does not import (or answer /health) from the bundle.

    Each distinct check runs in a fresh interpreter, up to one per core at once (across the process);
    checks equal but for the
    function's label run once (shared_identity). With `reuse`, a check that passed on an earlier bundle
    whose files it read are all unchanged here (and with the same file names) is not run again: see
    verify_cache.py."""
    python = interpreter or target_interpreter(spec)
    lazy = lazy_imports_for(bundle)
    # No database, no AWS: the handlers must import and answer /health lazily without either.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No AWS at synth: without this, a credential lookup would try the instance metadata endpoint.
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        **(environment or {}),
    }
    records = spec.cache_dir / "verified"
    listing = verify_cache.bundle_listing(bundle.directory, bundle.layer) if reuse else ""
    first: dict[str, HandlerCheck] = {}
    shared: list[tuple[str, str]] = []
    carried: list[str] = []
    runs: list[tuple[HandlerCheck, dict[str, object], dict[str, str], str]] = []
    for check in checks:
        request, check_env = _request(check, lazy), {**env, **dict(check.environment)}
        same = shared_identity(check, request, check_env)
        if same in first:
            shared.append((check.function, first[same].function))
            continue
        first[same] = check
        key = verify_cache.check_key(python, VERIFY_SCRIPT, request, check_env)
        if reuse and verify_cache.proven(records, key, bundle.directory, listing):
            carried.append(check.function)
        else:
            runs.append((check, request, check_env, key))
    workers = max(1, min(len(runs), os.cpu_count() or 1))
    with (
        tempfile.TemporaryDirectory(prefix="credmate-verify-") as reports,
        ThreadPoolExecutor(workers) as pool,
    ):
        results = list(
            pool.map(
                lambda n: _run_check(python, bundle.paths, *runs[n][1:3], Path(reports, str(n))),
                range(len(runs)),
            )
        )
    failures: list[VerificationFailure] = []
    for (check, *_given, key), result in zip(runs, results, strict=True):
        if isinstance(result, VerificationFailure):
            failures.append(result)
        elif result.get("lazy_failures"):
            failures.extend(_lazy_failure(check, f, spec) for f in result["lazy_failures"])
        elif not result.get("ok"):
            result["bundle"] = str(bundle.directory)
            error = f"{result.get('type')}: {result.get('message')}"
            failures.append(VerificationFailure(check.function, check.handler, error, hint_for(result, spec)))
        elif reuse:
            verify_cache.remember(records, key, bundle.directory, listing, result.get("reads") or ())
    if failures:
        also = [f"{fn} (shares the check of {by})" for fn, by in shared]
        raise BundlingError(
            "bundle verification failed (the bundle would not run on Lambda):\n  "
            + "\n  ".join(str(f) for f in failures)
            + (f"\n  checked once for: {', '.join(also)}" if also else "")
        )
    return Verified(ran=tuple(c.function for c, *_rest in runs), carried=tuple(carried), shared=tuple(shared))


def _run_check(
    python: str, paths: Sequence[Path], request: Mapping[str, object], env: Mapping[str, str], report: Path
) -> dict[str, Any] | VerificationFailure:
    """One check in a fresh interpreter; its result comes through `report`, never the handler's stdout."""
    function, handler = str(request["function"]), str(request["handler"])
    with _CORES:
        return _run_one(python, paths, request, env, report, function, handler)


def _run_one(
    python: str,
    paths: Sequence[Path],
    request: Mapping[str, object],
    env: Mapping[str, str],
    report: Path,
    function: str,
    handler: str,
) -> dict[str, Any] | VerificationFailure:
    proc = subprocess.Popen(
        [
            python,
            "-I",
            "-S",
            "-B",
            str(VERIFY_SCRIPT),
            os.pathsep.join(map(str, paths)),
            json.dumps(request),
            str(report),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        cwd=paths[0],
    )
    with contextlib.suppress(OSError):  # the process may have ended already
        os.setpriority(os.PRIO_PROCESS, proc.pid, CHECK_NICENESS)
    try:
        _out, err = proc.communicate(timeout=VERIFY_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return VerificationFailure(
            function,
            handler,
            f"import did not finish within {VERIFY_TIMEOUT_SECONDS}s",
            "a handler module must not block at import",
        )
    try:
        result = json.loads(report.read_text())
    except (OSError, ValueError):
        result = None
    if not isinstance(result, dict):
        return VerificationFailure(
            function,
            handler,
            f"the verifier crashed (exit {proc.returncode}) before it reported: {err[-1500:]}",
            "a handler module must not exit the interpreter at import",
        )
    return result
