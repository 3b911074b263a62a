"""What the bundler's modules share: the bundle's specification and result, its errors, and which files of
the source folder a bundle takes.

Kept apart from the steps that use them (input_hash.py, install.py, build.py, verification.py, lock.py,
sdist.py, import_closure.py), and importing none of them, so every step can import these at module level
without a cycle. Plain Python, no CDK: the benchmark, the local harness and the scripts use it too.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


class BundlingError(RuntimeError):
    """Bundling or verification failed; the message names what to fix."""


class MissingWheelError(BundlingError):
    def __init__(self, package: str, platform: str, detail: str) -> None:
        self.package = package
        super().__init__(
            f"package '{package}' has no wheel for {platform} and is not pure Python, so it cannot be "
            f"built for Lambda here. Pin a version that ships a manylinux wheel for {platform}, or publish "
            f"one to your index.\n{detail}"
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
    # Variables of `environment` that only label the function (e.g. for its reports): checks equal apart
    # from these and the function's name are run once (verification.shared_identity).
    label_variables: tuple[str, ...] = ()


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
    # they load, and nothing else. Empty: those of `handlers`, else every module of the source.
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
    # The dependency layer's tree, which follows `directory` on sys.path (None: `directory` holds it all).
    layer: Path | None = None
    # Which manifest the dependencies came from (manifest.py), e.g. "pyproject.toml + uv.lock".
    manifest: str = ""
    zip_sha256: str = ""  # of zip_path: the deploy guard finds these very bytes in the assembly

    @property
    def paths(self) -> tuple[Path, ...]:
        """The bundle's folders, as sys.path must list them to run it as Lambda's /var/task would."""
        return (self.directory,) if self.layer is None else (self.directory, self.layer)

    def summary(self, functions: Sequence[str]) -> str:
        action = "cache hit" if self.cache_hit else "built"
        if not self.cache_hit and self.dependencies_reused:
            action = "built on the cached dependency layer"
        return (
            f"[bundle] {', '.join(functions)}: {self.tool}, {action} in {self.seconds:.1f}s, "
            f"{self.unzipped_bytes / 1e6:.1f} MB unzipped, {self.zipped_bytes / 1e6:.1f} MB zipped, "
            f"bytecode {f'{self.bytecode_files} modules' if self.bytecode else 'no'}, "
            f"{f'manifest: {self.manifest}, ' if self.manifest else ''}asset {self.asset_hash[:12]}"
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
# Which files a bundle takes: the one rule the input hash, the build, dependency pruning, the import closure
# and the PR impact report all apply, so none of them can disagree about what ships.


def is_excluded(relative: str, excludes: Iterable[str]) -> bool:
    """Whether a pattern matches the whole relative path or any one of its parts (fnmatch rules)."""
    pattern = _exclusion(tuple(excludes))
    return bool(pattern.match(relative)) or any(pattern.match(part) for part in relative.split("/"))


@functools.lru_cache(maxsize=64)
def _exclusion(excludes: tuple[str, ...]) -> re.Pattern[str]:
    # One compiled alternation instead of an fnmatch call per pattern and part: pruning an installed tree
    # asks this of every one of its thousands of files. No pattern: "(?!)", which matches nothing.
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in excludes) or "(?!)")


def source_root(project: Path) -> Path:
    """Where a project's importable code lives: `src/` when it has one (the src layout), else the project
    folder itself (the flat layout: `app/` beside pyproject.toml), as setuptools and hatchling find packages.
    One rule for the backend and its local packages."""
    src = project / "src"
    return src if src.is_dir() else project


def source_files(source_dir: Path, excludes: Iterable[str]) -> list[tuple[str, Path]]:
    """Every file the bundle takes from the source folder, sorted by relative POSIX path."""
    if not source_dir.is_dir():
        raise BundlingError(f"source folder {source_dir} does not exist")
    excludes = tuple(excludes)
    found = ((path.relative_to(source_dir).as_posix(), path) for path in source_dir.rglob("*"))
    return sorted((rel, path) for rel, path in found if path.is_file() and not is_excluded(rel, excludes))


# The bundler's own package: its code is part of every key that caches what it makes.
BUNDLER_DIR = Path(__file__).resolve().parent


def bundler_code(package: Path) -> str:
    """A digest of the bundler's own source files: any change to how a bundle is made makes a new one
    (read again whenever a file's size or time changes: a long-running `make local-api` sees edits too)."""
    modules = sorted(package.rglob("*.py"))  # subpackages included, should one be added
    return _digest_files(package, tuple((m, m.stat().st_size, m.stat().st_mtime_ns) for m in modules))


@functools.lru_cache(maxsize=8)
def _digest_files(package: Path, files: tuple[tuple[Path, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, size, _mtime in files:
        digest.update(f"{path.relative_to(package).as_posix()}:{size}:".encode() + path.read_bytes())
    return digest.hexdigest()
