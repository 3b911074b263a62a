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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stacks.bundling import verify_cache
from stacks.bundling.import_closure import listed_in_requirements
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError, HandlerCheck

HEALTHY = ("healthy", "ok", "pass", "up")  # as verify_in_bundle.HEALTHY_STATUSES (that file runs standalone)

VERIFY_SCRIPT = Path(__file__).with_name("verify_in_bundle.py")
VERIFY_TIMEOUT_SECONDS = 120
# How long a check runs at idle priority before it gets the normal one (a check takes about a second).
IDLE_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class VerificationFailure:
    function: str
    handler: str
    error: str
    hint: str

    def __str__(self) -> str:
        return f"function {self.function} (handler {self.handler}): {self.error}\n    hint: {self.hint}"


def _lower_priority(pid: int) -> None:
    """Checks run beside synth's own work (building the other stacks, cdk-nag, writing the assembly): on a
    small machine they should take the idle core, not slow the path every synth waits on."""
    # Not on every platform; the process may also have ended already. SCHED_IDLE (Linux): only CPU time
    # nothing else wants (undone after IDLE_GRACE_SECONDS, see _normal_priority); elsewhere a higher nice
    # value, which an unprivileged process cannot undo, so a moderate one.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, pid, 10)


def _normal_priority(pid: int) -> None:
    """Back to the normal policy: on a machine kept busy by other work, an idle-only check could otherwise
    wait long enough to be reported as a hanging import."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


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
            return (
                f"module {module} no longer exports {symbol}: restore it in "
                f"{spec.source_dir / module.replace('.', '/')} or update the importers"
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
    """What verify_bundle did: the functions it ran, and those whose earlier pass carried over."""

    ran: tuple[str, ...]
    carried: tuple[str, ...]


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

    With `reuse`, a check that passed on an earlier bundle whose files it read are all unchanged here (and
    with the same file names) is not run again: see verify_cache.py."""
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
    listing = verify_cache.bundle_listing(bundle.directory) if reuse else ""
    carried: list[str] = []
    procs = []
    for check in checks:
        request = {
            "function": check.function,
            "handler": check.handler,
            "http_health": check.http_health,
            "health_path": check.health_path,
            "memory_mb": check.memory_mb,
            "timeout_seconds": check.timeout_seconds,
            # Without per-function closures (no BundleSpec.handlers), every lazy import.
            "lazy": lazy.get(check.function, lazy.get("*", [])),
        }
        check_env = {**env, **dict(check.environment)}
        key = verify_cache.check_key(python, VERIFY_SCRIPT, request, check_env)
        if reuse and verify_cache.proven(records, key, bundle.directory, listing):
            carried.append(check.function)
            continue
        proc = subprocess.Popen(
            [python, "-I", "-S", "-B", str(VERIFY_SCRIPT), str(bundle.directory), json.dumps(request)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=check_env,
            cwd=bundle.directory,
        )
        _lower_priority(proc.pid)
        procs.append((check, proc, key))
    failures = []
    for check, proc, key in procs:
        try:
            try:
                out, err = proc.communicate(timeout=IDLE_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                _normal_priority(proc.pid)
                out, err = proc.communicate(timeout=VERIFY_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            failures.append(
                VerificationFailure(
                    check.function,
                    check.handler,
                    f"import did not finish within {VERIFY_TIMEOUT_SECONDS}s",
                    "a handler module must not block at import",
                )
            )
            continue
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            failures.append(
                VerificationFailure(
                    check.function,
                    check.handler,
                    f"the verifier crashed (exit {proc.returncode}): {err[-1500:]}",
                    "a handler module must not exit the interpreter at import",
                )
            )
            continue
        result = json.loads(lines[-1])
        if result.get("lazy_failures"):
            failures.extend(_lazy_failure(check, f, spec) for f in result["lazy_failures"])
        elif not result["ok"]:
            result["bundle"] = str(bundle.directory)
            error = f"{result['type']}: {result['message']}"
            failures.append(VerificationFailure(check.function, check.handler, error, hint_for(result, spec)))
        elif reuse:
            verify_cache.remember(records, key, bundle.directory, listing, result.get("reads") or ())
    if failures:
        raise BundlingError(
            "bundle verification failed (the bundle would not run on Lambda):\n  "
            + "\n  ".join(str(f) for f in failures)
        )
    return Verified(ran=tuple(c.function for c, _p, _k in procs), carried=tuple(carried))
