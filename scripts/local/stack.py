"""A synthesized stack, run locally: its functions' code, handlers and environment, read from the template.

Shared by scripts/local/api.py (the API behind a local API Gateway), scripts/local/event.py (SQS and
EventBridge events) and scripts/bench/local_api.py. Everything comes from the synthesized template in the
cloud assembly, never from the stack's Python code, so any function catalog works:

* code: the function's `Code` asset (S3Key `<hash>.zip`, metadata `aws:asset:path`). A bundle this repo's
  bundler built is found in its cache (`.cache/bundles/<input hash>/bundle`: CDK's custom asset hash is the
  sha256 of the input hash); any other zip asset is unzipped once into `.cache/local-api/assets/<hash>/code`
  (assets.py, which keeps that folder bounded);
  a directory asset is used as it is; inline `ZipFile` code is written to `index.py`.
* handler, runtime, timeout, memory and `Environment.Variables`; intrinsics that only CloudFormation can
  resolve (a queue's Ref, a role's Fn::GetAtt) become `local-unresolved:<intrinsic>` placeholders, listed so
  the caller can log them; pseudo parameters get local values (region us-east-1, account 123456789012).

Each function runs in its own aws-lambda-rie process with awslambdaric (scripts/local/emulator.py), started on
first use and kept warm, one invocation at a time (a Lambda sandbox has concurrency one).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.local import assets

# rie is importable through this package's __init__; HarnessError is re-exported for the local commands.
from scripts.local.emulator import HarnessError as HarnessError
from scripts.local.emulator import InvokeResult, LambdaEmulator
from stacks.bundling import bundle_cache
from stacks.bundling.spec import BundlingError
from stacks.bundling.verification import interpreter_for

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_CACHE = REPO_ROOT / ".cache"
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"
UNRESOLVED = "local-unresolved"
_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine().lower()
)

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalStackError(RuntimeError):
    """The template or assembly cannot be run locally; the message says what to fix."""


# ---------------------------------------------------------------------------------------------------------
# Synth


def parse_pairs(pairs: Sequence[str], option: str, example: str) -> dict[str, str]:
    """`KEY=VALUE` command-line values (repeatable `option`) as a mapping; a bad one names the option."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LocalStackError(f"{option} {pair!r}: expected KEY=VALUE (e.g. {option} {example})")
        out[key] = value
    return out


def parse_context(pairs: Sequence[str]) -> dict[str, str]:
    return parse_pairs(pairs, "-c", "backend_root=apps/backend-api")


def synthesize(outdir: Path, context: Mapping[str, str], *, log: Log = stderr_log) -> None:
    """`cdk synth` of the app (as `make synth`) into `outdir`; bundling and import verification included."""
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    command = [str(cdk)] if cdk.exists() else ["npx", "--no-install", "cdk"]
    command += ["synth", "--quiet", "--output", str(outdir)]
    for key, value in context.items():
        command += ["-c", f"{key}={value}"]
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(REPO_ROOT / ".venv" / "bin"), str(REPO_ROOT / "node_modules" / ".bin"), os.environ["PATH"]]
        ),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    output = proc.stdout + proc.stderr
    for line in output.splitlines():
        if line.startswith("[bundle]"):
            log(line)
    if proc.returncode != 0:
        noise = ("b'!!", "!!", "[bundle]")  # jsii's banner; bundle lines were logged above
        relevant = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(noise)]
        raise LocalStackError(f"cdk synth failed (exit {proc.returncode}):\n" + "\n".join(relevant[-40:]))
    log(f"[local] synthesized {outdir} in {time.monotonic() - started:.1f} s")


def backend_root(context: Mapping[str, str]) -> Path:
    """The backend folder the app bundles: `-c backend_root=`, else cdk.json's context (as app.py does)."""
    raw = context.get("backend_root")
    if raw is None:
        try:
            raw = json.loads((REPO_ROOT / "cdk.json").read_text())["context"].get("backend_root")
        except (OSError, ValueError, KeyError):
            raw = None
    root = Path(raw or "apps/backend-api")
    return (root if root.is_absolute() else REPO_ROOT / root).resolve()


# ---------------------------------------------------------------------------------------------------------
# Template


def referenced_ids(value: Any) -> list[str]:
    """Logical IDs a template value references (Ref, Fn::GetAtt, Fn::Sub ${X} / ${X.Attr}), in order."""
    found: list[str] = []
    if isinstance(value, dict):
        if set(value) == {"Ref"} and isinstance(value["Ref"], str):
            found.append(value["Ref"])
        elif set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            found.append(target[0] if isinstance(target, list) else str(target).split(".")[0])
        elif set(value) == {"Fn::Sub"}:
            body = value["Fn::Sub"]
            text = body[0] if isinstance(body, list) else body
            found += [m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", str(text))]
            if isinstance(body, list) and len(body) > 1:
                found += referenced_ids(body[1])
        else:
            for item in value.values():
                found += referenced_ids(item)
    elif isinstance(value, list):
        for item in value:
            found += referenced_ids(item)
    return [f for f in found if not f.startswith("AWS::")]


class Template:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise LocalStackError(
                f"{path} does not exist: synthesize first (make synth) or check the stack name"
            )
        self.path = path
        self.outdir = path.parent
        self.stack_name = path.name.removesuffix(".template.json")
        self.data: dict[str, Any] = json.loads(path.read_text())
        self.resources: dict[str, dict[str, Any]] = self.data.get("Resources", {})

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r.get("Type") == kind}

    def props(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resources.get(logical_id, {}).get("Properties", {}))

    def cdk_path(self, logical_id: str) -> str:
        path = str(self.resources.get(logical_id, {}).get("Metadata", {}).get("aws:cdk:path", logical_id))
        return path.removeprefix(f"{self.stack_name}/").removesuffix("/Resource")

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::NoValue": "",
        }.get(name)

    def resolve(self, value: Any) -> str | None:
        """A value as a string when it needs nothing CloudFormation creates; None otherwise."""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.pseudo(str(arg))
            if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                parts = [self.resolve(p) for p in arg[1]]
                return None if any(p is None for p in parts) else str(arg[0]).join(p or "" for p in parts)
            if key == "Fn::Sub" and isinstance(arg, str):

                def sub(match: re.Match[str]) -> str:
                    got = self.pseudo(match.group(1))
                    if got is None:
                        raise KeyError(match.group(1))
                    return got

                try:
                    return re.sub(r"\$\{([^!}][^}]*)\}", sub, arg)
                except KeyError:
                    return None
        return None

    def function_of(self, value: Any) -> str | None:
        """The AWS::Lambda::Function a value points at, through an alias or a version (integration URIs,
        rule targets, event source mappings)."""
        for ref in referenced_ids(value):
            seen: set[str] = set()
            while ref not in seen:
                seen.add(ref)
                kind = self.resources.get(ref, {}).get("Type")
                if kind == "AWS::Lambda::Function":
                    return ref
                if kind in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
                    targets = referenced_ids(self.props(ref).get("FunctionName"))
                    if not targets:
                        break
                    ref = targets[0]
                else:
                    break
        return None


# ---------------------------------------------------------------------------------------------------------
# Functions


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    path: str  # construct path without the stack, e.g. "BackendApi/Function"
    handler: str
    runtime: str
    architecture: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str]
    unresolved: tuple[str, ...]  # "NAME (Ref X)" for each placeholder
    code: Path
    layers: tuple[Path, ...] = ()  # folders after `code` on sys.path (the bundler's dependency layer)

    @property
    def label(self) -> str:
        return self.path.split("/")[0]


def _placeholder(value: Any) -> str:
    refs = referenced_ids(value)
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return f"{UNRESOLVED}:{key}:{','.join(refs) or 'value'}"
    return f"{UNRESOLVED}:{','.join(refs) or 'value'}"


def function_environment(template: Template, logical_id: str) -> tuple[dict[str, str], tuple[str, ...]]:
    variables = template.props(logical_id).get("Environment", {}).get("Variables", {}) or {}
    env: dict[str, str] = {}
    unresolved: list[str] = []
    for name, raw in variables.items():
        value = template.resolve(raw)
        if value is None:
            value = _placeholder(raw)
            unresolved.append(f"{name} ({json.dumps(raw, sort_keys=True)[:120]})")
        env[name] = value
    return env, tuple(unresolved)


def code_location(template: Template, logical_id: str, cache_dir: Path = DEFAULT_CACHE) -> tuple[Path, ...]:
    """The unzipped code of a function, as sys.path lists it: the bundler's cache (its bundle folder and
    dependency layer, held while this process runs: no pruning deletes them), a directory asset, or the zip
    unzipped once."""
    resource = template.resources[logical_id]
    code = resource.get("Properties", {}).get("Code", {})
    if "ZipFile" in code:
        text = template.resolve(code["ZipFile"]) or ""
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        folder = cache_dir / "local-api" / "inline" / digest
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.py").write_text(text)
        return (folder,)
    s3_key = code.get("S3Key")
    asset_path = resource.get("Metadata", {}).get("aws:asset:path")
    key_hash = str(s3_key).split(".")[0] if isinstance(s3_key, str) else None
    if key_hash is None and asset_path:
        key_hash = str(asset_path).removeprefix("asset.").split(".")[0]
    if key_hash is None:
        raise LocalStackError(
            f"{template.path.name}: function {logical_id} has neither Code.S3Key nor aws:asset:path "
            "metadata; cannot find its code (images and S3 code outside the assembly are not supported)"
        )
    bundles = cache_dir / "bundles"
    for candidate in bundles.iterdir() if bundles.is_dir() else ():
        name = candidate.name
        if candidate.is_dir() and key_hash in (name, hashlib.sha256(name.encode()).hexdigest()):
            paths = bundle_paths(candidate)
            if paths:
                return paths
    asset = template.outdir / (asset_path or f"asset.{key_hash}.zip")
    if not asset.exists():
        matches = sorted(template.outdir.glob(f"asset.{key_hash}*"))
        if not matches:
            raise LocalStackError(
                f"{template.path.name}: function {logical_id}'s code asset {key_hash} is neither in "
                f"{template.outdir} nor in {bundles}: synthesize again"
            )
        asset = matches[0]
    if asset.is_dir():
        return (asset,)
    return (assets.unzipped(asset, cache_dir / "local-api" / "assets", key_hash),)


def bundle_paths(entry: Path) -> tuple[Path, ...]:
    """A bundle of the bundler's cache as sys.path lists it, held for this process; () when it is gone."""
    if not bundle_cache.use(entry):
        return ()
    layer = json.loads((entry / "meta.json").read_text()).get("layer")
    if not layer:
        return (entry / "bundle",)
    layer_dir = entry.parent.parent / "layers" / layer
    return (entry / "bundle", layer_dir / "tree") if bundle_cache.use(layer_dir) else ()


def load_function(template: Template, logical_id: str, cache_dir: Path = DEFAULT_CACHE) -> LocalFunction:
    props = template.props(logical_id)
    if template.resources.get(logical_id, {}).get("Type") != "AWS::Lambda::Function":
        raise LocalStackError(f"{template.path.name}: {logical_id} is not an AWS::Lambda::Function")
    if props.get("PackageType") == "Image":
        raise LocalStackError(f"function {logical_id} is a container image: not supported locally")
    env, unresolved = function_environment(template, logical_id)
    code, *layers = code_location(template, logical_id, cache_dir)
    return LocalFunction(
        logical_id=logical_id,
        path=template.cdk_path(logical_id),
        handler=str(props.get("Handler", "index.handler")),
        runtime=str(props.get("Runtime", "")),
        architecture=str((props.get("Architectures") or ["x86_64"])[0]),
        timeout_seconds=int(props.get("Timeout", 3)),
        memory_mb=int(props.get("MemorySize", 128)),
        environment=env,
        unresolved=unresolved,
        code=code,
        layers=tuple(layers),
    )


def find_function(template: Template, name: str) -> str:
    """A function's logical ID from a logical ID, a construct path or its first part (e.g. `Worker`)."""
    functions = template.of_type("AWS::Lambda::Function")
    if name in functions:
        return name
    matches = [
        fid
        for fid in functions
        if template.cdk_path(fid) == name
        or template.cdk_path(fid).split("/")[0] == name
        or template.cdk_path(fid).startswith(name.rstrip("/") + "/")
    ]
    if len(matches) > 1:
        exact = [fid for fid in matches if template.cdk_path(fid) in (name, f"{name}/Function")]
        matches = exact or matches
    if len(matches) != 1:
        listing = ", ".join(sorted(template.cdk_path(f) for f in functions))
        what = "matches several functions" if matches else "matches no function"
        raise LocalStackError(f"{name!r} {what} in {template.path.name}; functions: {listing}")
    return matches[0]


# ---------------------------------------------------------------------------------------------------------
# Runtimes


def _worth_forwarding(line: str) -> bool:
    """The function's own output and the emulator's errors; not its per-invoke bookkeeping."""
    text = line.strip()
    if not text or text.startswith(("START RequestId", "END RequestId", "REPORT RequestId")):
        return False
    return "(rapid)" not in text or any(w in text.lower() for w in ("error", "timeout", "timed out"))


@dataclass
class _Slot:
    function: LocalFunction
    lock: threading.Lock = field(default_factory=threading.Lock)
    emulator: LambdaEmulator | None = None
    invocations: int = 0
    log_offset: int = 0


def runtime_python(runtime: str) -> tuple[str, str | None, str]:
    """How a function of `runtime` runs here: (its interpreter, that interpreter's X.Y when it is not this
    one, why this one stands in for the runtime's: "" when it does not). The runtime's own Python when this
    machine has it: a bundle's native extensions load only under the Python they were built for."""
    if not runtime or runtime == f"python{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable, None, ""
    version = runtime.removeprefix("python")
    try:
        return interpreter_for(version), version, ""
    except BundlingError as exc:
        return sys.executable, None, str(exc)


@dataclass(frozen=True)
class Invocation:
    result: InvokeResult
    cold: bool
    seconds: float


class Runtimes:
    """One warm aws-lambda-rie process per function, started on its first invocation."""

    def __init__(
        self,
        functions: Mapping[str, LocalFunction],
        *,
        extra_env: Mapping[str, str] | None = None,
        log: Log = stderr_log,
        forward_logs: bool = True,
        bootstrap: Sequence[str] = (),
    ) -> None:
        self._slots = {fid: _Slot(fn) for fid, fn in functions.items()}
        self.bootstrap = tuple(bootstrap)  # the runtimes' command before the handler (rie.LambdaEmulator)
        self.extra_env = dict(extra_env or {})
        self.log = log
        self.forward_logs = forward_logs
        self._closed = False

    def function(self, logical_id: str) -> LocalFunction:
        return self._slots[logical_id].function

    def emulator(self, logical_id: str) -> LambdaEmulator | None:
        return self._slots[logical_id].emulator

    def _start(self, slot: _Slot) -> LambdaEmulator:
        fn = slot.function
        if fn.architecture != _HOST_ARCH:
            self.log(
                f"[local] WARNING {fn.label}: an {fn.architecture} function on an {_HOST_ARCH} host; its "
                "native libraries may not load here"
            )
        python, version, why = runtime_python(fn.runtime)
        if why:
            self.log(
                f"[local] WARNING {fn.label}: runtime {fn.runtime} runs under this host's "
                f"python{sys.version_info.major}.{sys.version_info.minor}; its native extensions may not "
                f"load: {why}"
            )
        for item in fn.unresolved:
            self.log(f"[local] {fn.label}: environment {item} has no local value: set to a {UNRESOLVED} "
                     "placeholder (override with --set-env NAME=VALUE)")  # fmt: skip
        emulator = LambdaEmulator(
            bundle=fn.code,
            paths=fn.layers,
            environment={
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_mb),
                "AWS_REGION": LOCAL_REGION,
                "AWS_DEFAULT_REGION": LOCAL_REGION,
                **fn.environment,
                **self.extra_env,
            },
            handler=fn.handler,
            function_name=fn.label,
            timeout_seconds=fn.timeout_seconds,
            python=python,
            python_version=version,
            bootstrap=self.bootstrap if version is None else (),  # the zygote serves this interpreter only
        )
        emulator.start()
        slot.emulator, slot.invocations, slot.log_offset = emulator, 0, 0
        self.log(f"[local] {fn.label}: runtime started ({fn.handler}, code {fn.code})")
        return emulator

    def _forward(self, slot: _Slot) -> str:
        """The emulator's log lines written since the last call, printed with the function's label."""
        if slot.emulator is None:
            return ""
        new, slot.log_offset = slot.emulator.logs_since(slot.log_offset)
        if self.forward_logs:
            for line in new.splitlines():
                if _worth_forwarding(line):
                    self.log(f"  {slot.function.label} | {line}")
        return new

    def invoke(self, logical_id: str, event: Any, *, timeout: float | None = None) -> Invocation:
        slot = self._slots[logical_id]
        with slot.lock:
            if self._closed:
                raise HarnessError("runtimes are stopped")
            started = time.monotonic()
            emulator = slot.emulator
            if emulator is None or emulator.process is None or emulator.process.poll() is not None:
                if emulator is not None:  # its process died (out of memory, killed): clean up, start afresh
                    self._forward(slot)
                    emulator.__exit__(None, None, None)
                self._start(slot)
            assert slot.emulator is not None
            cold = slot.invocations == 0
            try:
                result = slot.emulator.invoke(event, timeout=timeout)
            except OSError as exc:  # urllib timeout or connection reset: the sandbox is gone
                self._forward(slot)
                slot.emulator.stop()
                slot.emulator = None
                raise HarnessError(f"{slot.function.label}: invocation failed: {exc}") from exc
            slot.invocations += 1
            self._forward(slot)
            if result.http_status != 200:
                slot.invocations = 0  # the emulator re-runs init on the next invocation (as Lambda does)
            seconds = time.monotonic() - started
            if cold:
                self.log(
                    f"[local] {slot.function.label}: cold start, init + first invoke {seconds * 1000:.0f} ms"
                )
            return Invocation(result=result, cold=cold, seconds=seconds)

    def stop(self) -> None:
        self._closed = True
        for slot in self._slots.values():
            with slot.lock:
                if slot.emulator is not None:
                    slot.emulator.__exit__(None, None, None)
                    slot.emulator = None


def load_functions(
    template: Template, logical_ids: Iterable[str], cache_dir: Path = DEFAULT_CACHE
) -> dict[str, LocalFunction]:
    return {fid: load_function(template, fid, cache_dir) for fid in sorted(set(logical_ids))}


def override_code(functions: dict[str, LocalFunction], template: Template, pairs: Sequence[str]) -> None:
    """`NAME=DIR` pairs: run an unzipped bundle folder instead of the template's code for that function."""
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep:
            raise LocalStackError(f"--code {pair!r}: expected FUNCTION=FOLDER")
        fid = find_function(template, name)
        path = Path(folder).resolve()
        if not path.is_dir():
            raise LocalStackError(f"--code {pair!r}: {path} is not a folder")
        if fid in functions:
            fn = functions[fid]
            functions[fid] = LocalFunction(**{**fn.__dict__, "code": path, "layers": ()})


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    return parse_pairs(pairs, "--set-env", "DATABASE_URL=sqlite:///dev.sqlite")
