"""Installs a bundle's dependencies for the Lambda platform, whatever the host.

* Only manylinux wheels for the target Python and architecture are installed (`--only-binary :all:` with the
  target's platform tag): a wheel for Lambda installs the same on a laptop and in CI, and nothing is compiled
  for the wrong machine. `uv` when present (hard links into its cache, no copy), pip otherwise.
* The file installed from is what the backend's manifest pins (manifest.py); with a lock, every file's hash
  is required. Local packages are installed after, from their wheels.
* A requirement published only as a pure-Python sdist becomes a wheel first (sdist.py); one that has no
  wheel for the target and none can be built stops synth with MissingWheelError naming the package (no
  Docker fallback: nothing built elsewhere reaches an environment unverified).
* What the installer leaves that Lambda never reads or that differs between hosts (console scripts, RECORD,
  `__pycache__`, the dependency excludes) is pruned, so two hosts install the same tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from stacks.bundling import manifest, sdist
from stacks.bundling.indexes import auth_refused, installer_environment, redact
from stacks.bundling.lock import platform_args, platform_tag
from stacks.bundling.sdist import Wheelhouse
from stacks.bundling.spec import BundleSpec, BundlingError, MissingWheelError, is_excluded


def requirements_file(spec: BundleSpec) -> Path:
    """The file registry dependencies install from: the backend's manifest turned into pins (manifest.py):
    requirements.txt, its fresh hashed lock, or what uv.lock or poetry.lock pin for the target."""
    resolved = manifest.resolve(spec)
    chosen = resolved.pins
    if not chosen.is_file():
        raise BundlingError(
            f"requirements file {spec.requirements} is missing: a Lambda without its "
            "dependencies fails every request (No module named 'mangum'). Create it."
        )
    lines = [ln.strip() for ln in chosen.read_text().splitlines()]
    if not resolved.local and not any(ln and not ln.startswith("#") for ln in lines):
        raise BundlingError(
            f"requirements file {resolved.manifest.lock or chosen} lists no packages: refusing to bundle a "
            "Lambda without dependencies. Add the backend's packages (fastapi, mangum, ...)."
        )
    return chosen


def _wheel_target(spec: BundleSpec) -> str:
    """The platform and Python the installer is told to install for, as MissingWheelError names them."""
    return f"{platform_tag(spec.architecture, spec.python_version)}/cp{spec.python_version.replace('.', '')}"


def _install_args(spec: BundleSpec, command: list[str], target: Path) -> list[str]:
    """`uv pip install` (or `pip install`) into `target` for the Lambda platform: the runtime's manylinux
    platform and Python, wheels only, no bytecode (bytecode.py writes its own, reproducibly)."""
    uv = command[0].endswith("uv")
    tool = ["pip", "install"] if uv else ["install", "--implementation", "cp"]
    tool += [
        *platform_args(spec.architecture, spec.python_version, "uv" if uv else "pip"),
        "--only-binary=:all:",
    ]
    return [*command, *tool, "--target", str(target), "--python-version", spec.python_version, "--no-compile"]


def _run_install(
    spec: BundleSpec,
    command: list[str],
    target: Path,
    cache: Path,
    find_links: Path | None,
    *,
    dry_run: bool,
    pins: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Install requirements_file(spec) (or `pins`: those with the local wheels' hashes, sdist.py) into
    `target` (emptied before each attempt: a failed one may leave part of the tree), with the locally built
    wheels of `find_links` beside the index.

    A lock pins every distribution with the hashes of its files (required), so its dependencies are not
    resolved again (--no-deps: that would only fetch each one's metadata; check_lock_complete makes up for
    it), and uv installs it from its cache alone first (--offline), asking the index only when the cache
    lacks something: the index can change nothing about what gets installed, and asking it costs a round
    trip per package on every dependency change. An unlocked requirements.txt always goes to the index.
    """
    # Absolute: uv runs in the backend's folder (--directory), where a relative path would mean another.
    chosen = requirements_file(spec).absolute()
    req = pins.absolute() if pins else chosen
    locked = req.name == "requirements.lock"
    uv = command[0].endswith("uv")
    args = [*_install_args(spec, command, target.absolute()), "--quiet"]
    if uv:
        # In the backend's folder: its uv.toml / pyproject.toml [tool.uv] index settings apply (indexes.py
        # says why configuration is safe to read). Hard links into uv's cache: no 100 MB copy; nothing edits
        # installed files in place (strip writes a new file), so the cache is never modified through a link.
        args += ["--directory", str(chosen.parent), "--link-mode", "hardlink", "--no-progress"]
    args += ["--no-deps", "--require-hashes"] if locked else ([] if uv else ["--upgrade"])
    args += [*(["--find-links", str(find_links.absolute())] if find_links else []), "-r", str(req)]
    args += ["--dry-run"] if dry_run else []
    env = installer_environment("uv" if uv else "pip", uv_cache=cache.absolute() / "uv")
    for offline in [True, False] if locked and uv else [False]:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        run = [*args, "--offline"] if offline else args
        proc = subprocess.run(run, capture_output=True, text=True, env=env, check=False)
        if proc.returncode == 0:
            break
    return proc


def prepare_wheelhouse(
    spec: BundleSpec, tool: str, command: list[str], *, log: Callable[[str], None] = lambda _m: None
) -> Wheelhouse:
    """Pure-Python wheels built from the sdists the requirements need (usually none): cached, see sdist.py."""
    req = requirements_file(spec)

    def dry_run(find_links: Path | None, pins: Path | None) -> tuple[bool, str]:
        with tempfile.TemporaryDirectory(prefix="credmate-dry-") as target:
            proc = _run_install(
                spec, command, Path(target), spec.cache_dir, find_links, dry_run=True, pins=pins
            )
        output = redact(proc.stdout + proc.stderr)
        what = f"resolving {req} for {spec.runtime}/{spec.architecture}"
        if proc.returncode != 0 and (refused := auth_refused(output, what)):
            raise refused
        return proc.returncode == 0, output

    uv = command[0] if command[0].endswith("uv") else None
    try:
        return sdist.prepare_wheelhouse(spec, req, tool, dry_run, uv=uv, log=log)
    except sdist.SdistError as exc:
        if refused := auth_refused(exc.detail, f"downloading the source distribution of {exc.package}"):
            raise refused from None
        raise MissingWheelError(exc.package, _wheel_target(spec), exc.detail) from None


def install_dependencies(
    spec: BundleSpec, command: list[str], target: Path, cache: Path, wheelhouse: Wheelhouse | None = None
) -> None:
    pins = wheelhouse.pins if wheelhouse else None
    req = pins or requirements_file(spec)
    find_links = wheelhouse.directory if wheelhouse and wheelhouse.wheels else None
    proc = _run_install(spec, command, target, cache, find_links, dry_run=False, pins=pins)
    if proc.returncode != 0:
        output = redact(proc.stdout + proc.stderr)
        what = f"installing {req} for {spec.runtime}/{spec.architecture}"
        if refused := auth_refused(output, what):
            raise refused
        if found := sdist.no_wheel_requirement(output):
            raise MissingWheelError(found[0], _wheel_target(spec), output[-2000:])
        raise BundlingError(f"{what} failed:\n{output[-3000:]}")
    _install_local_packages(spec, command, target)
    if req.name == "requirements.lock":
        check_lock_complete(target, spec, req)


def _install_local_packages(spec: BundleSpec, command: list[str], target: Path) -> None:
    """Install the wheels of the manifest's local packages (manifest.py) into `target`, without dependencies
    (the pins hold them) and without any index or configuration: nothing but those wheels can be installed."""
    resolved = manifest.resolve(spec)
    if not resolved.local:
        return
    args = [*_install_args(spec, command, target), "--no-deps", "--no-index", "--quiet"]
    env = {**os.environ, "UV_NO_CONFIG": "1"}  # pip does not read it
    proc = subprocess.run(
        [*args, *(str(p.wheel) for p in resolved.local)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise BundlingError(
            f"installing the local packages of {resolved.manifest.primary} "
            f"({', '.join(str(p.source) for p in resolved.local)}) failed:\n"
            f"{redact((proc.stdout + proc.stderr)[-2000:])}"
        )


def check_lock_complete(target: Path, spec: BundleSpec, lock: Path) -> None:
    """Every dependency an installed distribution requires on the target is installed too.

    A lock installs without dependency resolution (--no-deps), so a hand-edited lock that lost a pin would
    otherwise ship a tree missing a package, found only when some import reaches it. Requirements of
    extras are not judged: which extras were asked for is not in the lock, only their pins.
    """
    from packaging.utils import canonicalize_name

    environment = manifest.target_environment(spec.python_version, spec.architecture)
    requires = {}
    for metadata in sorted(target.glob("*.dist-info/METADATA")):
        name, lines = manifest.requires_on_target(metadata.read_text(errors="replace"), environment)
        requires[canonicalize_name(name or metadata.parent.name)] = lines
    for name, requirements in sorted(requires.items()):
        for needed in requirements:
            if canonicalize_name(needed.name) not in requires:
                named = manifest.resolve(spec).manifest
                raise BundlingError(
                    f"{named.lock or lock} does not pin {needed.name}, which {name} requires ({needed}) "
                    f"on {spec.runtime}/{spec.architecture}: the lock is incomplete (edited by hand?). Run "
                    f"{named.refresh} and commit the new lock"
                )


def prune_installed(target: Path, excludes: Iterable[str] = ()) -> None:
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
