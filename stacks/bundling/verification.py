"""Verify at synth that every handler imports from the built bundle, as Lambda would import it.

Each handler is imported in its own `python3.X -I -S` process (Lambda starts one runtime per function, so
one handler's imports must not hide another's missing module). Failures become one `BundlingError` that
names the function, the handler, the exception and a hint pointing at the file to fix. The same process then
imports the dependencies the function's code imports lazily (recorded by the bundle's import closure in
closure.json beside it), each reported with the file:line of its import.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stacks.bundling import manifest, verify_cache
from stacks.bundling.import_closure import listed_in_requirements
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError, HandlerCheck
from stacks.bundling.verify_in_bundle import HEALTHY_STATUSES

VERIFY_SCRIPT = Path(__file__).with_name("verify_in_bundle.py")
VERIFY_TIMEOUT_SECONDS = 120
# At most one check per core at once, across every verification of this process (an app verifies each
# environment's bundle side by side), each at a lower priority than synth's own work, which every synth
# waits on (a niceness, never starved like an idle-only policy would be on a busy machine).
_CORES = threading.BoundedSemaphore(os.cpu_count() or 1)
CHECK_NICENESS = 10


def target_interpreter(spec: BundleSpec) -> str:
    """The target Python (python3.11 for runtime python3.11), found on PATH; never silently another one."""
    try:
        return interpreter_for(spec.python_version)
    except BundlingError as exc:
        raise BundlingError(
            f"cannot verify the bundle: {exc}. Install it, or skip verification loudly with "
            "-c skip_bundle_verification=true"
        ) from None


def interpreter_for(version: str) -> str:
    """The executable of `python{version}` on PATH: its own, not a version manager's shim (checks and local
    runtimes run it with a scrubbed environment). Raises BundlingError saying why there is none."""
    name = f"python{version}"
    found = shutil.which(name)
    executable, problem = _executable(found, version) if found else ("", "is not on PATH")
    if problem:
        raise BundlingError(f"{name} (the python{version} runtime's interpreter) {problem}")
    return executable


@functools.lru_cache(maxsize=8)
def _executable(path: str, version: str) -> tuple[str, str]:
    """(the interpreter `path` runs, "") when it runs as Python `version`, else ("", why not). A version
    manager's shim is on PATH for every version it knows but runs only those selected (pyenv: exit 127);
    without this check every handler check would fail as if the handler had crashed."""
    script = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
    try:
        ran = subprocess.run([path, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"at {path} does not start ({exc})"
    said = ran.stdout.split()
    if ran.returncode != 0 or said[:1] != [version] or len(said) < 2:
        first = (ran.stderr.strip() or ran.stdout.strip()).splitlines()[:1]
        return "", f"at {path} does not run as Python {version} (exit {ran.returncode}: {' '.join(first)})"
    return said[1], ""


def hint_for(failure: Mapping[str, Any], check: HandlerCheck, spec: BundleSpec) -> str:
    """Where to fix a failure the verifier reported (verify_in_bundle.failure)."""
    kind, message, name = failure["type"], failure["message"], failure["name"]
    if kind == "ModuleNotFoundError" and name:
        top = name.split(".")[0]
        if (spec.source_dir / top).exists() or (spec.source_dir / f"{top}.py").exists():
            return f"'{name}' is missing inside {spec.source_dir / top}: check the package's files"
        if listed_in_requirements(spec.requirements, top):
            return (
                f"{top} is listed in {spec.requirements} but no module '{top}' was installed "
                f"for {spec.runtime}"
            )
        return f"{top} is not in {spec.requirements}: add it there (pinned)"
    match = re.search(r"cannot import name '([^']+)' from '([^']+)'", message)
    if kind == "ImportError" and match:
        symbol, module = match.groups()
        where = manifest.local_module_path(spec, module) or spec.source_dir / module.replace(".", "/")
        return f"module {module} no longer exports {symbol}: restore it in {where} or update the importers"
    if kind in ("SyntaxError", "IndentationError", "TabError"):
        filename = failure["filename"] or ""
        return f"fix the syntax error at {Path(filename).name or filename} line {failure['lineno']}"
    if kind == "AttributeError" and failure["stage"] == "attribute":
        module, _, attr = check.handler.rpartition(".")
        return (
            f"module {module} has no attribute {attr}: fix the handler setting of this function or define it"
        )
    if kind == "KeyError" and "environ" in failure["traceback"]:
        variable = message.strip("'\"")
        return (
            f"the code reads environment variable {variable} at import: set it in this function's "
            f"`environment` in the function catalog (cdk.json functions.{check.function}.environment)"
        )
    if failure["stage"] == "health":
        return (
            "the health GET through the handler did not answer 200 with a healthy status "
            f"({', '.join(HEALTHY_STATUSES)}): run the backend tests"
        )
    return "see the traceback above; the bundle's handler must import cleanly in a fresh interpreter"


def _describe(failure: Mapping[str, Any], check: HandlerCheck, spec: BundleSpec) -> str:
    error = failure.get("error") or f"{failure['type']}: {failure['message']}"
    if failure.get("where"):
        error = f"{failure['where']}: lazy import of {failure['module']} failed: {error}"
    hint = failure.get("hint") or hint_for(failure, check, spec)
    return f"function {check.function} (handler {check.handler}): {error}\n    hint: {hint}"


@dataclass(frozen=True)
class Verified:
    """What verify_bundle did: the functions whose check it ran, those proven by another function's run
    (function -> the one whose run proved it), and those whose earlier pass carried over."""

    ran: tuple[str, ...]
    carried: tuple[str, ...]
    shared: tuple[tuple[str, str], ...] = ()

    def summary(self, runtime: str) -> str:
        """The one log line of a verification."""
        ran = f": {', '.join(self.ran)}" if self.ran else ""
        parts = [f"[bundle] verified {len(self.ran)} handler(s) in isolated {runtime} interpreters{ran}"]
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
    interpreter: str | None = None,
    reuse: bool = True,
) -> Verified:
    """Raise BundlingError listing every handler that does not import (or answer /health) from the bundle.

    Each distinct check runs in a fresh interpreter (_run_check); checks equal but for the function's label
    run once (shared_identity). With `reuse`, a check that passed on an earlier bundle whose files it read
    are all unchanged here (and with the same file names) is not run again: see verify_cache.py."""
    python = interpreter or target_interpreter(spec)
    try:  # function -> [[module, [names], "file:line"], ...]: the lazy imports the build found
        lazy = json.loads((bundle.directory.parent / "closure.json").read_text())
    except (OSError, ValueError):
        lazy = {}
    # No database, no AWS: the handlers must import and answer /health lazily without either.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No AWS at synth: without this, a credential lookup would try the instance metadata endpoint.
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    records = spec.cache_dir / "verified"
    listing = verify_cache.bundle_listing(bundle.directory, bundle.layer) if reuse else ""
    first: dict[str, str] = {}  # shared_identity -> the function whose check has it
    shared: list[tuple[str, str]] = []
    carried: list[str] = []
    runs: list[tuple[HandlerCheck, dict[str, object], dict[str, str], str]] = []
    for check in checks:
        # The check's fields but its variables, and its lazy imports (all of them without per-function
        # closures, i.e. without BundleSpec.handlers).
        request = {k: v for k, v in asdict(check).items() if k not in ("environment", "label_variables")}
        request["lazy"] = lazy.get(check.function, lazy.get("*", []))
        check_env = {**env, **dict(check.environment)}
        same = shared_identity(check, request, check_env)
        if same in first:
            shared.append((check.function, first[same]))
            continue
        first[same] = check.function
        key = verify_cache.check_key(python, VERIFY_SCRIPT, request, check_env)
        if reuse and verify_cache.proven(records, key, bundle.directory, listing):
            carried.append(check.function)
        else:
            runs.append((check, request, check_env, key))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # threads start as needed; _CORES runs them
        reports = list(pool.map(lambda run: _run_check(python, bundle.paths, run[1], run[2]), runs))
    failures: list[str] = []
    for (check, _request, _env, key), report in zip(runs, reports, strict=True):
        failures += [_describe(failure, check, spec) for failure in report["failures"]]
        if reuse and not report["failures"]:
            verify_cache.remember(records, key, bundle.directory, listing, report["reads"])
    if failures:
        also = [f"{fn} (shares the check of {by})" for fn, by in shared]
        raise BundlingError(
            "bundle verification failed (the bundle would not run on Lambda):\n  "
            + "\n  ".join(failures)
            + (f"\n  checked once for: {', '.join(also)}" if also else "")
        )
    return Verified(ran=tuple(c.function for c, *_rest in runs), carried=tuple(carried), shared=tuple(shared))


def _run_check(
    python: str, paths: Sequence[Path], request: Mapping[str, object], env: Mapping[str, str]
) -> dict[str, Any]:
    """One check in a fresh interpreter, once a core is free: the verifier's report, read from a file of
    its own (never the handler's stdout), or a failure of the run itself."""
    with _CORES, tempfile.TemporaryDirectory(prefix="credmate-verify-") as folder:
        report = Path(folder, "report.json")
        command = [python, "-I", "-S", "-B", str(VERIFY_SCRIPT), os.pathsep.join(map(str, paths))]
        proc = subprocess.Popen(
            [*command, json.dumps(request), str(report)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
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
            error = f"import did not finish within {VERIFY_TIMEOUT_SECONDS}s"
            return {"failures": [{"error": error, "hint": "a handler module must not block at import"}]}
        with contextlib.suppress(OSError, ValueError):
            result = json.loads(report.read_text())
            if isinstance(result, dict) and isinstance(result.get("failures"), list):
                return result
    error = f"the verifier crashed (exit {proc.returncode}) before it reported: {err[-1500:]}"
    return {
        "failures": [{"error": error, "hint": "a handler module must not exit the interpreter at import"}]
    }
