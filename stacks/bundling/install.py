"""Installs a bundle's dependencies for the Lambda platform, whatever the host.

* Only manylinux wheels for the target Python and architecture are installed (`--only-binary :all:` with the
  target's platform tag): a wheel for Lambda installs the same on a laptop and in CI, and nothing is compiled
  for the wrong machine. `uv` when present (hard links into its cache, no copy), pip otherwise.
* The file installed from is what the backend's manifest pins (manifest.py: uv.lock, poetry.lock, a hashed
  `requirements.lock` resolved from the requirements.txt beside it, or requirements.txt alone); a stale lock
  stops synth. With a lock, every file's hash is required. Local packages are installed after, from wheels.
* A requirement published only as a pure-Python sdist becomes a wheel first (sdist.py); one that has no
  wheel for the target and none can be built stops synth with MissingWheelError naming the package (no
  Docker fallback: nothing built elsewhere reaches an environment unverified).
* What the installer leaves that Lambda never reads or that differs between hosts (console scripts, RECORD,
  `__pycache__`, the dependency excludes) is pruned, so two hosts install the same tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from stacks.bundling import manifest, sdist
from stacks.bundling.indexes import auth_refused, installer_environment, redact
from stacks.bundling.sdist import Wheelhouse
from stacks.bundling.spec import BundleSpec, BundlingError, MissingWheelError, is_excluded

_PLATFORMS = {
    "x86_64": ("x86_64-manylinux2014", "manylinux2014_x86_64"),
    "arm64": ("aarch64-manylinux2014", "manylinux2014_aarch64"),
}


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


def _wheel_target(spec: BundleSpec, command: list[str]) -> str:
    """The platform and Python the installer is told to install for, as MissingWheelError names them."""
    uv_platform, pip_platform = _PLATFORMS[spec.architecture]
    platform = uv_platform if command[0].endswith("uv") else pip_platform
    return f"{platform}/cp{spec.python_version.replace('.', '')}"


def _platform_args(spec: BundleSpec, command: list[str], target: Path) -> list[str]:
    """What makes an install land in `target` for the Lambda platform: the target's platform tag and Python,
    wheels only, no bytecode (bytecode.py writes its own, reproducibly)."""
    uv_platform, pip_platform = _PLATFORMS[spec.architecture]
    if command[0].endswith("uv"):
        return [
            *("--target", str(target), "--python-platform", uv_platform),
            *("--python-version", spec.python_version, "--only-binary", ":all:", "--no-compile"),
        ]
    return [
        *("--target", str(target), "--platform", pip_platform, "--implementation", "cp"),
        *("--python-version", spec.python_version, "--only-binary=:all:", "--no-compile"),
    ]


def _install_command(
    spec: BundleSpec,
    command: list[str],
    target: Path,
    cache: Path,
    find_links: Path | None,
    dry_run: bool,
    offline: bool = False,
) -> tuple[list[str], dict[str, str]]:
    # Absolute: uv runs in the backend's folder (--directory), where a relative path would mean another.
    req, target, cache = requirements_file(spec).absolute(), target.absolute(), cache.absolute()
    find_links = find_links.absolute() if find_links else None
    hashes = ["--require-hashes"] if req.name == "requirements.lock" else []
    # Locally built pure-Python wheels (stacks/bundling/sdist.py), found beside the index.
    extra = [
        *(["--find-links", str(find_links)] if find_links else []),
        *(["--dry-run"] if dry_run else []),
        *(["--offline"] if offline else []),
    ]
    if command[0].endswith("uv"):
        args = [
            *command,
            # Run as in the backend's folder: its uv.toml / pyproject.toml [tool.uv] index settings apply
            # (indexes.py says why configuration is safe to read).
            "--directory",
            str(req.parent),
            "pip",
            "install",
            *_platform_args(spec, command, target),
            # Hard links into uv's cache: no 100 MB copy. Nothing edits installed files in place (strip writes
            # a new file), so the cache is never modified through a link.
            "--link-mode",
            "hardlink",
            "--no-progress",
            "--quiet",
            # A lock pins every distribution: resolving its dependencies again would only fetch each one's
            # metadata from the index (seconds, on a slow one). check_lock_complete makes up for it.
            *(["--no-deps"] if hashes else []),
            *extra,
            *hashes,
            "-r",
            str(req),
        ]
        env = installer_environment("uv", uv_cache=cache / "uv")
    else:
        args = [
            *command,
            "install",
            *_platform_args(spec, command, target),
            "--no-deps" if hashes else "--upgrade",
            "--quiet",
            *extra,
            *hashes,
            "-r",
            str(req),
        ]
        env = installer_environment("pip")
    return args, env


def prepare_wheelhouse(
    spec: BundleSpec, tool: str, command: list[str], *, log: Callable[[str], None] = lambda _m: None
) -> Wheelhouse:
    """Pure-Python wheels built from the sdists the requirements need (usually none): cached, see sdist.py."""
    req = requirements_file(spec)

    def dry_run(find_links: Path | None) -> tuple[bool, str]:
        with tempfile.TemporaryDirectory(prefix="credmate-dry-") as target:
            proc = _run_cache_first(
                req,
                command,
                lambda offline: _install_command(
                    spec, command, Path(target), spec.cache_dir, find_links, dry_run=True, offline=offline
                ),
            )
        output = redact(proc.stdout + proc.stderr)
        refused = auth_refused(output, f"resolving {req} for {spec.runtime}/{spec.architecture}")
        if proc.returncode != 0 and refused:
            raise refused
        return proc.returncode == 0, output

    uv = command[0] if command[0].endswith("uv") else None
    try:
        return sdist.prepare_wheelhouse(spec, req, tool, dry_run, uv=uv, log=log)
    except sdist.SdistError as exc:
        refused = auth_refused(exc.detail, f"downloading the source distribution of {exc.package}")
        if refused:
            raise refused from None
        raise MissingWheelError(exc.package, _wheel_target(spec, command), exc.detail) from None


def _run_cache_first(
    req: Path,
    command: list[str],
    build: Callable[[bool], tuple[list[str], dict[str, str]]],
) -> subprocess.CompletedProcess[str]:
    """Run an install command built by `build(offline)`: from uv's cache alone first when `req` (the file
    installed, requirements_file's choice) is a lock, then (when the cache lacks something) with the index.

    A lock pins every distribution with the hashes of its files, so the index can change nothing about
    what gets installed; asking it anyway costs a round trip per package (seconds on a slow network) on
    every dependency change. An unlocked requirements.txt always goes to the index.
    """
    if req.name == "requirements.lock" and command[0].endswith("uv"):
        args, env = build(True)
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
        if proc.returncode == 0:
            return proc
    args, env = build(False)
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False)


def install_dependencies(
    spec: BundleSpec, command: list[str], target: Path, cache: Path, find_links: Path | None = None
) -> None:
    req = requirements_file(spec)

    def build(offline: bool) -> tuple[list[str], dict[str, str]]:
        # Each attempt starts on an empty target: a failed one may have left part of the tree.
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        return _install_command(spec, command, target, cache, find_links, dry_run=False, offline=offline)

    proc = _run_cache_first(req, command, build)
    if proc.returncode != 0:
        output = redact(proc.stdout + proc.stderr)
        what = f"installing {req} for {spec.runtime}/{spec.architecture}"
        refused = auth_refused(output, what)
        if refused:
            raise refused
        package = _no_wheel_package(output)
        if package:
            raise MissingWheelError(package, _wheel_target(spec, command), output[-2000:])
        raise BundlingError(f"{what} failed:\n{output[-3000:]}")
    _install_local_packages(spec, command, target)
    if req.name == "requirements.lock":
        check_lock_complete(target, spec, req)


def _install_local_packages(spec: BundleSpec, command: list[str], target: Path) -> None:
    """Install the wheels of the manifest's local packages (manifest.py) into `target`, without dependencies
    (the pins hold them) and without any index: nothing but those wheels can be installed."""
    resolved = manifest.resolve(spec)
    if not resolved.local:
        return
    wheels = [str(p.wheel) for p in resolved.local]
    if command[0].endswith("uv"):
        args = [*command, "pip", "install", *_platform_args(spec, command, target)]
        env = {**os.environ, "UV_NO_CONFIG": "1"}
    else:
        args = [*command, "install", *_platform_args(spec, command, target)]
        env = dict(os.environ)
    args += ["--no-deps", "--no-index", "--quiet", *wheels]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
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
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError:  # the synth venv pins packaging (requirements.txt); without it, no check
        return
    from email.parser import HeaderParser

    environment = manifest.target_environment(spec.python_version, spec.architecture)
    requires: dict[str, list[str]] = {}
    for metadata in sorted(target.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(metadata.read_text(errors="replace"))
        requires[canonicalize_name(headers.get("Name", metadata.parent.name))] = headers.get_all(
            "Requires-Dist", []
        )
    for name, lines in sorted(requires.items()):
        for line in lines:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            if canonicalize_name(requirement.name) not in requires:
                named = manifest.resolve(spec).manifest
                raise BundlingError(
                    f"{named.lock or lock} does not pin {requirement.name}, which {name} requires ({line}) "
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
