"""Bundles a Python Lambda straight from its source folder, without Docker, and proves it imports.

Why not `PythonFunction` or SAM: both reuse build caches keyed on less than every input (the second outage
shipped code seven migrations old) and both need Docker to target the Lambda platform. Here:

* the **input hash** covers every file under the source folder (minus the documented excludes), the
  requirements (or lock) content, runtime, architecture, installer and bundler version and every option;
  it is both the cache key and the CDK asset hash, so any change gives a new asset (a new Lambda version
  and a canary) and no change gives the same one, with no rebuild;
* dependencies come from manylinux wheels for the target Python and architecture (`uv`, or pip when uv is
  absent), so the host OS does not matter;
* the zip is written here, entries sorted, timestamps and permissions fixed, so two clean builds are byte
  identical (CDK uploads a .zip asset as is);
* `verify_bundle` imports every handler from the built bundle in an isolated interpreter (`-I -S`: only the
  bundle and the standard library on sys.path, as on Lambda) and drives `GET /health` through the API
  handler; a failure stops synth with the function, handler, exception and a hint.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from stacks.bundling import bytecode as init_bytecode
from stacks.bundling import import_closure, layers, sdist
from stacks.bundling.lock import check_fresh as check_lock_fresh
from stacks.bundling.sdist import Wheelhouse
from stacks.bundling.strip import strip_identity, strip_native_libraries

# Bump when the bundle layout or any build step changes: it is part of every input hash.
BUNDLER_VERSION = "8"

# What Lambda never needs. Patterns match a path relative to the source folder or any single path part.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    "tests",
    "test",
    "conftest.py",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".git",
    ".venv",
    ".DS_Store",
    "*.swp",
    "*~",
    ".idea",
    ".vscode",
    "build_info.json",  # written by the bundler; a stale copy in the source tree must never win
)

# What the installed dependencies ship that nothing imports at run time: their own test suites (passlib's and
# greenlet's are 2 MB), Cython sources and type stubs. Matched like DEFAULT_EXCLUDES, against paths relative
# to the bundle root. Override with BundleSpec.dependency_excludes (e.g. () to keep everything).
DEFAULT_DEPENDENCY_EXCLUDES: tuple[str, ...] = ("tests", "*.pyx", "*.pxd", "*.pyi")

# Lambda's direct-upload limit is for the zip, the deployment limit for the unzipped size.
ZIP_LIMIT_BYTES = 50 * 1024 * 1024
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
NEAR_LIMIT_FRACTION = 0.8

_PLATFORMS = {
    "x86_64": ("x86_64-manylinux2014", "manylinux2014_x86_64"),
    "arm64": ("aarch64-manylinux2014", "manylinux2014_aarch64"),
}


class BundlingError(RuntimeError):
    """Bundling or verification failed; the message names what to fix."""


class MissingWheelError(BundlingError):
    def __init__(self, package: str, platform: str, detail: str) -> None:
        self.package = package
        super().__init__(
            f"package '{package}' has no wheel for {platform}; without Docker it cannot be built for "
            f"Lambda. Pin a version that ships a manylinux wheel, or run with a Docker daemon.\n{detail}"
        )


@dataclass(frozen=True)
class HandlerCheck:
    """One function whose handler must import from the bundle."""

    function: str
    handler: str  # "module.attr", as in Lambda's Handler setting
    http_health: bool = False  # drive GET /health through it as an API Gateway proxy event
    environment: tuple[tuple[str, str], ...] = ()  # the function's own variables that affect import
    health_path: str = "/health"  # the path of the GET driven through it when http_health is true
    memory_mb: int = 1024  # the context object's memory_limit_in_mb
    timeout_seconds: int = 60  # get_remaining_time_in_millis() counts down from this


@dataclass(frozen=True)
class BundleSpec:
    source_dir: Path
    requirements: Path
    cache_dir: Path
    runtime: str = "python3.11"
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    # Files copied into the bundle root: (name in bundle, source file).
    extra_files: tuple[tuple[str, Path], ...] = ()
    compile_bytecode: bool = True
    # Modules whose import at init gets precompiled bytecode (the handlers' modules): every bundle module
    # they load, and nothing else. Empty: every module of the bundle is compiled.
    bytecode_modules: tuple[str, ...] = ()
    # Remove debug sections from native libraries (never symbols, never auditwheel-patched files).
    strip_native: bool = True
    dependency_excludes: tuple[str, ...] = DEFAULT_DEPENDENCY_EXCLUDES
    # Folder (relative to source_dir) whose Alembic revisions give build_info.json's schema_head.
    migrations_dir: str | None = "migrations/versions"
    installer: Literal["auto", "uv", "pip"] = "auto"
    # (function name, real handler `module.attr`): whose import closures are checked and recorded.
    handlers: tuple[tuple[str, str], ...] = ()

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")


@dataclass(frozen=True)
class BundleResult:
    directory: Path  # the unzipped bundle (what /var/task will hold)
    zip_path: Path
    asset_hash: str
    tool: str
    cache_hit: bool
    seconds: float
    unzipped_bytes: int
    zipped_bytes: int
    bytecode: bool
    notices: tuple[str, ...] = ()
    bytecode_files: int = 0
    dependencies_reused: bool = False  # built on an existing dependency layer: nothing was installed

    def summary(self, functions: Sequence[str]) -> str:
        action = "cache hit" if self.cache_hit else "built"
        if not self.cache_hit and self.dependencies_reused:
            action = "built on the cached dependency layer"
        return (
            f"[bundle] {', '.join(functions)}: {self.tool}, {action} in {self.seconds:.1f}s, "
            f"{self.unzipped_bytes / 1e6:.1f} MB unzipped, {self.zipped_bytes / 1e6:.1f} MB zipped, "
            f"bytecode {f'{self.bytecode_files} modules' if self.bytecode else 'no'}, "
            f"asset {self.asset_hash[:12]}"
        )

    def limit_warnings(self) -> list[str]:
        out = []
        if self.zipped_bytes > NEAR_LIMIT_FRACTION * ZIP_LIMIT_BYTES:
            out.append(f"zip is {self.zipped_bytes / 1e6:.1f} MB, near Lambda's 50 MB direct-upload limit")
        if self.unzipped_bytes > NEAR_LIMIT_FRACTION * UNZIPPED_LIMIT_BYTES:
            out.append(f"bundle is {self.unzipped_bytes / 1e6:.1f} MB unzipped, near Lambda's 250 MB limit")
        return out


def bytecode_modules_for(handlers: Iterable[str]) -> tuple[str, ...]:
    """BundleSpec.bytecode_modules for Lambda handler settings (`module.attr`): their modules, sorted."""
    return tuple(sorted({h.rpartition(".")[0] for h in handlers}))


# ---------------------------------------------------------------------------------------------------------
# Inputs and their hash


def is_excluded(relative: str, excludes: Iterable[str]) -> bool:
    parts = relative.split("/")
    return any(
        fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts)
        for pattern in excludes
    )


def source_files(source_dir: Path, excludes: Iterable[str]) -> list[tuple[str, Path]]:
    """Every file the bundle takes from the source folder, sorted by relative POSIX path."""
    if not source_dir.is_dir():
        raise BundlingError(f"source folder {source_dir} does not exist (backend_root must hold src/)")
    excludes = tuple(excludes)
    found = []
    for path in source_dir.rglob("*"):
        relative = path.relative_to(source_dir).as_posix()
        if path.is_file() and not is_excluded(relative, excludes):
            found.append((relative, path))
    return sorted(found)


def requirements_file(spec: BundleSpec) -> Path:
    """The file dependencies install from: a hashed lock beside requirements.txt wins when present."""
    lock = spec.requirements.with_name("requirements.lock")
    chosen = lock if lock.is_file() else spec.requirements
    if not chosen.is_file():
        raise BundlingError(
            f"requirements file {spec.requirements} is missing: a Lambda without its "
            "dependencies fails every request (No module named 'mangum'). Create it."
        )
    if chosen is lock:
        check_lock_fresh(lock, spec.requirements)
    lines = [ln.strip() for ln in chosen.read_text().splitlines()]
    if not any(ln and not ln.startswith("#") for ln in lines):
        raise BundlingError(
            f"requirements file {chosen} lists no packages: refusing to bundle a Lambda "
            "without dependencies. Add the backend's packages (fastapi, mangum, ...)."
        )
    return chosen


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installer_identity(spec: BundleSpec) -> tuple[str, list[str]]:
    """(name and version, command prefix) of the tool that installs dependencies."""
    if spec.installer in ("auto", "uv"):
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        if Path(uv).exists():
            version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout
            # The host triple in "(x86_64-unknown-linux-gnu)" must not reach the hash: a laptop and CI agree.
            return version.split(" (")[0].strip(), [uv]
        if spec.installer == "uv":
            raise BundlingError("installer 'uv' requested but uv is not installed (pip install uv)")
    version = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout.split(" from ")[0]
    return version.strip(), [sys.executable, "-m", "pip"]


def host_can_compile(spec: BundleSpec) -> bool:
    return f"{sys.version_info.major}.{sys.version_info.minor}" == spec.python_version


def input_hash(spec: BundleSpec, tool: str, wheels: Sequence[tuple[str, str]] = ()) -> str:
    """One digest of every input that can change the bundle (`wheels`: locally built (name, sha256))."""
    digest = hashlib.sha256()

    def add(label: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)

    add("bundler", BUNDLER_VERSION)
    add("tool", tool)
    add("runtime", spec.runtime)
    add("architecture", spec.architecture)
    add("excludes", json.dumps(sorted(spec.excludes)))
    add("bytecode", str(spec.compile_bytecode and host_can_compile(spec)))
    add("bytecode-modules", json.dumps(list(spec.bytecode_modules)))
    add("dependency-excludes", json.dumps(sorted(spec.dependency_excludes)))
    add("strip", strip_identity() if spec.strip_native else "off")
    add("migrations", spec.migrations_dir or "")
    add("handlers", json.dumps([list(h) for h in spec.handlers]))
    if wheels:
        add("built-wheels", json.dumps(sorted(list(w) for w in wheels)))
    req = requirements_file(spec)
    add("requirements-name", req.name)
    add("requirements", req.read_bytes())
    for relative, path in source_files(spec.source_dir, spec.excludes):
        add("file", relative)
        add("content", path.read_bytes())
    for name, path in sorted(spec.extra_files):
        if not path.is_file():
            raise BundlingError(f"extra bundle file {path} (for {name}) does not exist")
        add("extra", name)
        add("content", path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Build steps

_NO_WHEEL_PATTERNS = (
    re.compile(r"(?:only|no) (?:source distribution|wheels?)[^\n]*?for `?([A-Za-z0-9_.-]+)", re.I),
    re.compile(r"Because ([A-Za-z0-9_.-]+)(?:==[^ ]+)? has no (?:usable |compatible )?wheels", re.I),
    re.compile(
        r"`?([A-Za-z0-9_.-]+)`?(?:==\S+)? .*?can't be installed because it doesn't have a wheel", re.I
    ),
    re.compile(r"No matching distribution found for ([A-Za-z0-9_.-]+)", re.I),
)


def _no_wheel_package(output: str) -> str | None:
    for pattern in _NO_WHEEL_PATTERNS:
        match = pattern.search(output)
        if match:
            return match.group(1)
    return None


def _install_command(
    spec: BundleSpec, command: list[str], target: Path, cache: Path, find_links: Path | None, dry_run: bool
) -> tuple[list[str], dict[str, str], str]:
    req = requirements_file(spec)
    uv_platform, pip_platform = _PLATFORMS[spec.architecture]
    hashes = ["--require-hashes"] if req.name == "requirements.lock" else []
    # Locally built pure-Python wheels (stacks/bundling/sdist.py), found beside the index.
    extra = [*(["--find-links", str(find_links)] if find_links else []), *(["--dry-run"] if dry_run else [])]
    if command[0].endswith("uv"):
        args = [
            *command,
            "pip",
            "install",
            "--target",
            str(target),
            "--python-platform",
            uv_platform,
            "--python-version",
            spec.python_version,
            "--only-binary",
            ":all:",
            "--no-compile",
            # Hard links into uv's cache: no 100 MB copy. Nothing edits installed files in place (strip writes
            # a new file), so the cache is never modified through a link.
            "--link-mode",
            "hardlink",
            "--no-progress",
            "--quiet",
            *extra,
            *hashes,
            "-r",
            str(req),
        ]
        env = {**os.environ, "UV_CACHE_DIR": str(cache / "uv"), "UV_NO_CONFIG": "1"}
        platform = uv_platform
    else:
        args = [
            *command,
            "install",
            "--target",
            str(target),
            "--platform",
            pip_platform,
            "--implementation",
            "cp",
            "--python-version",
            spec.python_version,
            "--only-binary=:all:",
            "--no-compile",
            "--no-deps" if hashes else "--upgrade",
            "--quiet",
            *extra,
            *hashes,
            "-r",
            str(req),
        ]
        env = dict(os.environ)
        platform = pip_platform
    return args, env, platform


def prepare_wheelhouse(
    spec: BundleSpec, tool: str, command: list[str], *, log: Callable[[str], None] = lambda _m: None
) -> Wheelhouse:
    """Pure-Python wheels built from the sdists the requirements need (usually none): cached, see sdist.py."""
    req = requirements_file(spec)

    def dry_run(find_links: Path | None) -> tuple[bool, str]:
        with tempfile.TemporaryDirectory(prefix="credmate-dry-") as target:
            args, env, _platform = _install_command(
                spec, command, Path(target), spec.cache_dir, find_links, dry_run=True
            )
            proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        return proc.returncode == 0, proc.stdout + proc.stderr

    uv = command[0] if command[0].endswith("uv") else None
    try:
        return sdist.prepare_wheelhouse(spec, req, tool, dry_run, uv=uv, log=log)
    except sdist.SdistError as exc:
        uv_platform, pip_platform = _PLATFORMS[spec.architecture]
        platform = uv_platform if uv else pip_platform
        raise MissingWheelError(
            exc.package, f"{platform}/cp{spec.python_version.replace('.', '')}", exc.detail
        ) from None


def install_dependencies(
    spec: BundleSpec, command: list[str], target: Path, cache: Path, find_links: Path | None = None
) -> None:
    req = requirements_file(spec)
    args, env, platform = _install_command(spec, command, target, cache, find_links, dry_run=False)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        package = _no_wheel_package(output)
        if package:
            raise MissingWheelError(
                package, f"{platform}/cp{spec.python_version.replace('.', '')}", output[-2000:]
            )
        raise BundlingError(
            f"installing {req} for {spec.runtime}/{spec.architecture} failed:\n{output[-3000:]}"
        )


def _prune_installed(target: Path, excludes: Iterable[str] = ()) -> None:
    """Drop what the installer writes that Lambda never reads and that would differ between hosts."""
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts: host-specific shebangs
    (target / ".lock").unlink(missing_ok=True)  # uv's install lock file
    for record in target.glob("*.dist-info/RECORD"):
        # RECORD lists install-time paths; importlib.metadata and the runtime never need it.
        record.unlink()
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    excludes = tuple(excludes)
    if not excludes:
        return
    # Top-down, so an excluded folder goes whole and its contents are never visited.
    for root, dirs, files in os.walk(target):
        base = Path(root)
        for name in sorted(dirs):
            if is_excluded((base / name).relative_to(target).as_posix(), excludes):
                shutil.rmtree(base / name)
                dirs.remove(name)
        for name in files:
            if is_excluded((base / name).relative_to(target).as_posix(), excludes):
                (base / name).unlink()


def schema_head(source_dir: Path, migrations_dir: str | None) -> str | None:
    """The Alembic head revision from the migration scripts, read as text (nothing is imported)."""
    if not migrations_dir or not (source_dir / migrations_dir).is_dir():
        return None
    revisions: dict[str, tuple[str, ...]] = {}
    rev_re = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", re.M)
    down_re = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(.+)$", re.M)
    for script in sorted((source_dir / migrations_dir).glob("*.py")):
        text = script.read_text()
        rev = rev_re.search(text)
        down = down_re.search(text)
        if rev:
            parents = tuple(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1))) if down else ()
            revisions[rev.group(1)] = parents
    referenced = {p for parents in revisions.values() for p in parents}
    heads = sorted(set(revisions) - referenced)
    if len(heads) > 1:
        raise BundlingError(
            f"{source_dir / migrations_dir} has several Alembic heads {heads}: merge them "
            "(alembic merge) before deploying"
        )
    return heads[0] if heads else None


def git_commit(paths: Sequence[Path]) -> tuple[str | None, bool]:
    """The last commit that touched the inputs, and whether they have uncommitted changes.

    Informational only (build_info.json), never part of the hash: a new commit that leaves the inputs as they
    were must not produce a new Lambda version.
    """
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=paths[0], capture_output=True, text=True, check=True
        ).stdout.strip()
        names = [str(p) for p in paths]
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%H", "--", *names],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", *names],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit or None, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return None, False


def compile_bytecode(directory: Path) -> None:
    """Unchecked-hash .pyc: Lambda's /var/task is read-only, so without these every cold start compiles.

    unchecked-hash pycs are used without comparing source mtimes (which the zip resets anyway); paths are
    rewritten to /var/task so tracebacks and co_filename are what Lambda shows and the bytes do not depend on
    the build folder. Files that do not compile are skipped, not fatal: some wheels ship modules for other
    Python versions, and a syntax error in the backend is reported by verification with its function.
    """
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(directory),
            "-p",
            "/var/task",
            str(directory),
        ],
        check=False,
        capture_output=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def compile_init_bytecode(
    spec: BundleSpec, bundle: Path, layer: layers.DependencyLayer, closure: import_closure.Closure
) -> int:
    """Unchecked-hash .pyc for what `spec.bytecode_modules` import at init (see stacks/bundling/bytecode.py):
    the bundle's own modules (source and extra files) by their static init closure, dependency modules by
    what their dependency imports load, the functions' lazy dependency imports included; returns how many."""
    extra = [(name, path) for name, path in spec.extra_files if name.endswith(".py")]
    modules = {**closure.modules, **import_closure.read_source(bundle, extra)}
    lazy = {(d.module, d.names) for deps in closure.lazy_dependencies.values() for d in deps}
    try:
        done = init_bytecode.write_bytecode(
            bundle,
            layer,
            modules,
            spec.bytecode_modules,
            import_closure.stdlib_names(spec.python_version),
            lazy_dependencies=sorted(lazy),
        )
    except init_bytecode.BytecodeError as exc:
        raise BundlingError(str(exc)) from exc
    return len(done)


def check_import_closure(spec: BundleSpec, bundle: Path) -> import_closure.Closure:
    """The static import closure of the source, resolved against the installed bundle; raises BundlingError
    naming file:line, module or name, and the functions reaching the file (see import_closure.py)."""
    files = source_files(spec.source_dir, spec.excludes)
    tops = {rel.split("/")[0].removesuffix(".py") for rel, _p in files}
    closure = import_closure.analyze(
        spec.source_dir,
        files,
        spec.handlers,
        installed=import_closure.installed_top_levels(bundle, tops),
        python_version=spec.python_version,
        requirements=spec.requirements,
    )
    if closure.problems:
        raise BundlingError(import_closure.closure_error(closure.problems))
    return closure


def dependency_layer(
    spec: BundleSpec, tool: str, command: list[str], wheelhouse: Wheelhouse
) -> layers.DependencyLayer:
    """The installed, pruned, stripped dependencies for `spec`, from the layer cache or built now."""
    req = requirements_file(spec)

    def build(tree: Path) -> list[str]:
        install_dependencies(
            spec, command, tree, spec.cache_dir, wheelhouse.directory if wheelhouse.wheels else None
        )
        _prune_installed(tree, spec.dependency_excludes)
        return strip_native_libraries(tree, spec.architecture) if spec.strip_native else []

    parts: list[tuple[str, str | bytes]] = [
        ("bundler", BUNDLER_VERSION),
        ("tool", tool),
        ("runtime", spec.runtime),
        ("architecture", spec.architecture),
        ("dependency-excludes", json.dumps(sorted(spec.dependency_excludes))),
        ("strip", strip_identity() if spec.strip_native else "off"),
        ("requirements-name", req.name),
        ("requirements", req.read_bytes()),
        # Wheels built here from pure-Python sdists: part of what gets installed.
        ("built-wheels", json.dumps(sorted(list(w) for w in wheelhouse.wheels))),
    ]
    return layers.dependency_layer(spec.cache_dir, parts, build)


def _tree_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def build_bundle(spec: BundleSpec, *, log: Callable[[str], None] = lambda _m: None) -> BundleResult:
    """Return the bundle for `spec`, building it only when no complete bundle exists for its input hash."""
    started = time.monotonic()
    tool, command = installer_identity(spec)
    wheelhouse = prepare_wheelhouse(spec, tool, command, log=log)
    asset_hash = input_hash(spec, tool, wheelhouse.wheels)
    final = spec.cache_dir / "bundles" / asset_hash
    meta_path = final / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return _result(final, asset_hash, tool, meta, cache_hit=True, started=started)

    notices: list[str] = []
    final.parent.mkdir(parents=True, exist_ok=True)
    # Built beside its final place and renamed in one step: an interrupted build never looks complete.
    work = Path(tempfile.mkdtemp(prefix=f".{asset_hash[:12]}-", dir=final.parent))
    try:
        bundle = work / "bundle"
        bundle.mkdir()
        layer = dependency_layer(spec, tool, command, wheelhouse)
        notices.extend(layer.notices)
        layer.link_into(bundle)
        # Files from the layer are hard links: anything this build writes over one is unlinked first, so
        # the layer (and uv's cache behind it) is never written through.
        own: dict[str, Path] = {}
        for relative, path in [*source_files(spec.source_dir, spec.excludes), *spec.extra_files]:
            dest = bundle / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            shutil.copyfile(path, dest)
            own[relative] = dest
        closure = check_import_closure(spec, bundle)
        closure_info = {
            # What each function imports lazily from its dependencies: the probe imports exactly these.
            "lazy_imports": closure.lazy_imports(),
            # Source files each function imports at init / reaches lazily (what a change to a file impacts).
            "closure": {
                fn: {"init": closure.init_files[fn], "lazy": closure.lazy_files[fn]}
                for fn in closure.init_files
            },
            "built_wheels": [name for name, _sha in wheelhouse.wheels],
        }
        # Beside the bundle (not in it): the lazy dependency imports, with file:line, for verification.
        (work / "closure.json").write_text(
            json.dumps(
                {fn: [d.as_json() for d in deps] for fn, deps in sorted(closure.lazy_dependencies.items())},
                sort_keys=True,
            )
        )
        commit, dirty = git_commit([spec.source_dir, spec.requirements])
        req = requirements_file(spec)
        info = {
            "code_version": asset_hash[:12],
            "bundle_hash": asset_hash,
            "source_hash": _sha256(
                b"".join(
                    rel.encode() + b"\0" + _sha256(p.read_bytes()).encode()
                    for rel, p in source_files(spec.source_dir, spec.excludes)
                )
            )[:12],
            "requirements_hash": _sha256(req.read_bytes())[:12],
            "schema_head": schema_head(spec.source_dir, spec.migrations_dir),
            "git_commit": commit,
            "git_dirty": dirty,
            "runtime": spec.runtime,
            "architecture": spec.architecture,
            "installer": tool,
            **closure_info,
        }
        (bundle / "build_info.json").unlink(missing_ok=True)
        (bundle / "build_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        bytecode = spec.compile_bytecode and host_can_compile(spec)
        bytecode_files = 0
        if bytecode and spec.bytecode_modules:
            bytecode_files = compile_init_bytecode(spec, bundle, layer, closure)
        elif bytecode:
            compile_bytecode(bundle)
            bytecode_files = sum(1 for _ in bundle.rglob("*.pyc"))
        elif spec.compile_bytecode:
            notices.append(
                f"no precompiled bytecode: host Python is {sys.version_info.major}."
                f"{sys.version_info.minor}, target is {spec.python_version}"
            )
        zipped, unzipped = layer.write_zip(work / "bundle.zip", bundle, replaced=[*own, "build_info.json"])
        meta = {
            "unzipped_bytes": unzipped,
            "zipped_bytes": zipped,
            "bytecode": bytecode,
            "bytecode_files": bytecode_files,
            "tool": tool,
            "dependencies_reused": not layer.built,
        }
        (work / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        if final.exists():  # a concurrent synth finished first; its bundle has the same inputs
            shutil.rmtree(work)
        else:
            os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for notice in notices:
        log(f"[bundle] notice: {notice}")
    return _result(final, asset_hash, tool, meta, cache_hit=False, started=started, notices=tuple(notices))


def _result(
    final: Path,
    asset_hash: str,
    tool: str,
    meta: dict[str, Any],
    *,
    cache_hit: bool,
    started: float,
    notices: tuple[str, ...] = (),
) -> BundleResult:
    return BundleResult(
        directory=final / "bundle",
        zip_path=final / "bundle.zip",
        asset_hash=asset_hash,
        tool=tool,
        cache_hit=cache_hit,
        seconds=time.monotonic() - started,
        unzipped_bytes=meta["unzipped_bytes"],
        zipped_bytes=meta["zipped_bytes"],
        bytecode=meta["bytecode"],
        bytecode_files=meta.get("bytecode_files", 0),
        notices=notices,
        dependencies_reused=meta.get("dependencies_reused", False),
    )
