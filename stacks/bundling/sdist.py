"""Pure-Python source distributions, built into wheels locally, without Docker.

The bundler installs wheels only (`--only-binary :all:`): a source build on this host could produce native
code for the wrong platform. But many real requirement sets hold a package published only as an sdist that
is pure Python (`docopt==0.6.2`, pulled in by notifications-python-client); `sam build` bundles those by
building them locally. Here: ask the installer (a dry run, fast) whether every requirement has a wheel for
the target; for each package it reports without one, download its sdist (`pip download --no-binary :all:
--no-deps`), build a wheel (`uv build`, or `pip wheel`; build isolation, so its build backend comes from
the index), and keep it in a wheelhouse only when its tag is `py3-none-any` (or `py2.py3-none-any`):
installable on any platform. Then the dry run is repeated with `--find-links` to the wheelhouse, until it
passes. An sdist whose build gives a platform-specific wheel, or that does not build, stops with
`MissingWheelError` naming the package, which stops synth.

A hashed lock (uv.lock and poetry.lock pin an sdist-only package by its sdist's hash) keeps its guarantee:
the downloaded sdist must have one of the hashes the lock gives its package, and the wheel built from it
is then added to that package's hashes in a copy of the pins kept with the wheelhouse (`Wheelhouse.pins`),
which the install reads instead.

The wheelhouse is cached under the bundle cache by the requirements content, runtime, architecture,
installer and the bundler's own code: a synth with unchanged requirements reads its manifest and does
nothing else. Only a complete wheelhouse is cached, never a failure: the next synth downloads and builds
again. The built wheels' names and sha256 are part of the bundle's input hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from stacks.bundling import bundle_cache
from stacks.bundling.indexes import installer_environment, run_bounded
from stacks.bundling.manifest import BUILD_TIMEOUT_SECONDS, PURE_TAGS, build_wheel
from stacks.bundling.spec import BUNDLER_DIR, BundleSpec, bundler_code

_MAX_ROUNDS = 20

# The installer saying it found no wheel for a package: (name, version specifier or "").
_NAME, _SPECIFIER = r"`?([A-Za-z0-9][A-Za-z0-9_.-]*)`?", r"((?:[=<>!~]=?=?)[^\s,;`]+)?"
_NO_WHEEL = (
    # uv: "Because docopt==0.6.2 has no usable wheels", "docopt==0.6.2 can't be installed because it
    # doesn't have a wheel", "Wheels are required for `docopt`", "only source distributions ... for docopt"
    re.compile(rf"Because {_NAME}{_SPECIFIER} has no (?:usable |compatible )?wheels", re.I),
    re.compile(rf"{_NAME}{_SPECIFIER} .*?can't be installed because it doesn't have a wheel", re.I),
    re.compile(rf"Wheels are required for {_NAME}()", re.I),
    re.compile(rf"(?:only|no) (?:source distribution|wheels?)[^\n]*?for {_NAME}{_SPECIFIER}", re.I),
    # pip: "No matching distribution found for docopt==0.6.2"
    re.compile(rf"No matching distribution found for {_NAME}{_SPECIFIER}", re.I),
)


class _Unresolved(Exception):
    """The dry run failed for another reason than a missing wheel, or never passed."""


class SdistError(Exception):
    """`package` has no wheel for the target and its sdist gives none that runs everywhere."""

    def __init__(self, package: str, detail: str, *, native: bool = False) -> None:
        self.package = package
        self.detail = detail
        self.native = native  # it built, into native code: the same sdist on this host always will
        super().__init__(f"{package}: {detail}")


@dataclass(frozen=True)
class Wheelhouse:
    directory: Path
    wheels: tuple[tuple[str, str], ...]  # (wheel file name, sha256)
    pins: Path | None = None  # the hashed pins with the built wheels' hashes added (None: install the pins)


_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def _blocks(text: str) -> list[tuple[str, list[int]]]:
    """(canonical name, line numbers) of each requirement of a pins file, continuation lines included."""
    blocks: list[tuple[str, list[int]]] = []
    continued = False
    for number, line in enumerate(text.splitlines()):
        name = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if continued and blocks:
            blocks[-1][1].append(number)
        elif name:
            blocks.append((canonicalize_name(name.group(1)), [number]))
        continued = line.rstrip().endswith("\\")
    return blocks


def locked_hashes(requirements: Path, package: str) -> set[str]:
    """The sha256 hashes a hashed pins file allows for `package` (empty: not hashed there)."""
    lines = requirements.read_text().splitlines()
    wanted = canonicalize_name(package)
    return {
        h
        for name, numbers in _blocks("\n".join(lines))
        if name == wanted
        for n in numbers
        for h in _HASH.findall(lines[n])
    }


def with_wheel_hashes(text: str, built: dict[str, str]) -> str:
    """`text` (hashed pins) with each built package's wheel hash added to its requirement: {name: sha256}."""
    lines = text.splitlines()
    for name, numbers in _blocks(text):
        if name in built:
            first = lines[numbers[0]].rstrip()
            option = f"--hash=sha256:{built[name]}"
            # Options follow the requirement and its marker: before the continuation, or at the end.
            cut = first.endswith("\\")
            lines[numbers[0]] = f"{first[:-1].rstrip()} {option} \\" if cut else f"{first} {option}"
    return "\n".join(lines) + "\n"


def wheelhouse_key(spec: BundleSpec, requirements: Path, tool: str) -> str:
    """A change to how wheels are built (the bundler's code) makes new ones, with no constant to bump."""
    digest = hashlib.sha256()
    for part in (bundler_code(BUNDLER_DIR), tool, spec.runtime, spec.architecture, requirements.name):
        digest.update(part.encode() + b"\0")
    digest.update(requirements.read_bytes())
    return digest.hexdigest()


def no_wheel_requirement(output: str) -> tuple[str, str] | None:
    """(package, version specifier or "") of the first package the installer found no wheel for."""
    for pattern in _NO_WHEEL:
        match = pattern.search(output)
        if match:
            return match.group(1), match.group(2) or ""
    return None


def _pinned(requirements: Path, package: str) -> str:
    """The specifier the requirements file gives `package` ("==1.2" ...), or ""."""
    wanted = canonicalize_name(package)
    for line in requirements.read_text().splitlines():
        match = re.match(
            r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*((?:[=<>!~]=?=?)\s*[^\s;#\\]+)?", line
        )
        if match and canonicalize_name(match.group(1)) == wanted and match.group(2):
            return match.group(2).replace(" ", "")
    return ""


# The sdists that built into native code in this process: one synth builds the bundles of both environments
# from the same requirements, and a native sdist (asyncpg's: a minute of compiling) need not be built for
# each. In memory only, and never another failure (a download or a build may fail for a moment): the next
# synth, or the next rebuild of a long-running local API, tries those again.
_NATIVE: dict[tuple[str, str, frozenset[str]], SdistError] = {}


def build_pure_wheel(
    package: str,
    specifier: str,
    out: Path,
    *,
    use_uv: str | None,
    uv_cache: Path | None = None,
    project: Path | None = None,
    hashes: set[str] | frozenset[str] = frozenset(),
) -> Path:
    """Download `package specifier` as an sdist and build it into a wheel in `out`; return the wheel.
    `project`: the backend's folder, whose uv configuration (its indexes) the build reads. `hashes`: what a
    lock allows for the sdist (empty: no lock to check against).

    Raises SdistError when the sdist cannot be had, is not the locked file, does not build, or builds a
    platform-specific wheel."""
    key = (canonicalize_name(package), specifier, frozenset(hashes))
    if key in _NATIVE:
        raise _NATIVE[key]
    try:
        return _build_pure_wheel(package, specifier, out, use_uv, uv_cache, project, frozenset(hashes))
    except SdistError as exc:
        if exc.native:
            _NATIVE[key] = exc
        raise


def _build_pure_wheel(
    package: str,
    specifier: str,
    out: Path,
    use_uv: str | None,
    uv_cache: Path | None,
    project: Path | None,
    hashes: frozenset[str],
) -> Path:
    with tempfile.TemporaryDirectory(prefix="credmate-sdist-") as tmp:
        work = Path(tmp)
        args = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet"]
        args += ["--disable-pip-version-check", "-d", str(work / "sdist"), f"{package}{specifier}"]
        env = installer_environment("pip")
        status, output = run_bounded(args, env, BUILD_TIMEOUT_SECONDS)
        sdists = sorted((work / "sdist").glob("*")) if (work / "sdist").is_dir() else []
        if status != 0 or not sdists:
            raise SdistError(
                package,
                f"no source distribution of {package}{specifier} could be downloaded either:\n"
                f"{output[-1500:]}",
            )
        digest = hashlib.sha256(sdists[0].read_bytes()).hexdigest()
        if hashes and digest not in hashes:
            raise SdistError(
                package,
                f"the downloaded source distribution {sdists[0].name} has sha256 {digest}, which the lock "
                "does not list for it: the index serves another file than the one locked",
            )
        wheel, output = build_wheel(sdists[0], work / "wheel", uv=use_uv, uv_cache=uv_cache, project=project)
        if wheel is None:
            raise SdistError(
                package,
                f"its source distribution {sdists[0].name} did not build into a wheel:\n{output[-1500:]}",
            )
        if not wheel.name.endswith(PURE_TAGS):
            raise SdistError(
                package,
                f"its source distribution {sdists[0].name} builds {wheel.name}, native code for this host, "
                "not a pure-Python (py3-none-any) wheel",
                native=True,
            )
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copyfile(wheel, out / wheel.name))


def prepare_wheelhouse(
    spec: BundleSpec,
    requirements: Path,
    tool: str,
    dry_run: Callable[[Path | None, Path | None], tuple[bool, str]],
    *,
    uv: str | None,
    log: Callable[[str], None] = lambda _m: None,
) -> Wheelhouse:
    """The wheelhouse of locally built pure wheels these requirements need (often none), cached.

    Raises SdistError naming the package when a needed sdist gives no pure wheel.
    `dry_run(find_links, pins)` asks the installer whether the requirements (`pins` when not None) resolve
    with wheels only; it returns (ok, output)."""
    directory = spec.cache_dir / "wheelhouse" / wheelhouse_key(spec, requirements, tool)
    hashed = bool(_HASH.search(requirements.read_text()))

    def fill(work: Path) -> None:
        built: dict[str, Path] = {}
        for _round in range(_MAX_ROUNDS):
            pins = work / "requirements.lock" if built and hashed else None
            if pins:
                digests = {
                    name: hashlib.sha256(wheel.read_bytes()).hexdigest() for name, wheel in built.items()
                }
                pins.write_text(with_wheel_hashes(requirements.read_text(), digests))
            ok, output = dry_run(work / "wheels" if built else None, pins)
            if ok:
                break
            found = no_wheel_requirement(output)
            if found is None or canonicalize_name(found[0]) in built:
                # Another failure (the index unreachable, a credential refused, a conflict): the install
                # reports it with its own message. Nothing is cached: an empty wheelhouse kept now would
                # hide, once the index answers, the sdists these requirements need.
                raise _Unresolved
            package, specifier = found
            specifier = _pinned(requirements, package) or specifier
            log(f"[bundle] {package}{specifier} has no wheel: building its source distribution")
            # An SdistError leaves nothing in the cache: a failure is never cached, the next synth tries
            # again. Downloads and builds fail for reasons the key does not cover (the index was down or
            # refused the credentials, the build backend fetched from it was broken, a compiler was missing
            # or present), and a cached verdict would stop every synth until someone deleted it.
            built[canonicalize_name(package)] = build_pure_wheel(
                package,
                specifier,
                work / "wheels",
                use_uv=uv,
                uv_cache=spec.cache_dir / "uv",
                project=requirements.parent,
                hashes=locked_hashes(requirements, package),
            )
        else:
            raise _Unresolved  # never resolved: nothing cached either
        wheels = [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(built.values())]
        (work / "manifest.json").write_text(json.dumps({"wheels": wheels}))

    try:
        bundle_cache.publish(directory, fill)  # held: no pruner deletes it while the install reads its wheels
    except _Unresolved:
        return Wheelhouse(directory / "wheels", ())
    data = json.loads((directory / "manifest.json").read_text())
    pins = directory / "requirements.lock"
    wheels = tuple((str(n), str(h)) for n, h in data["wheels"])
    return Wheelhouse(directory / "wheels", wheels, pins if pins.is_file() else None)
