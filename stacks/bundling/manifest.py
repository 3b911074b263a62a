"""Which file says a backend's dependencies, and what installing it for Lambda means.

A backend root is read in this order (the first that is there wins):

1. `pyproject.toml` + `uv.lock`: a uv project or workspace (the backend may be a member: the workspace's
   uv.lock is then in a folder above). `uv export --locked` writes the pins (hashes included) of the
   non-dev dependencies; it fails when the lock no longer matches the pyproject files, which stops synth
   naming `uv lock`.
2. `pyproject.toml` + `poetry.lock`: the lock is read as TOML (Poetry is not needed at synth): the packages
   of the main group whose markers hold on Lambda's Linux, pinned with every file hash the lock records.
   Stale when its `content-hash` is not the one Poetry computes from pyproject.toml (`poetry lock`).
3. `requirements.txt` with the `requirements.lock` `make lock` writes beside it (lock.py judges its
   freshness).
4. `requirements.txt` alone: installed with dependency resolution, unpinned transitives.

Local packages (`-e ./libs/common`, a Poetry path dependency, a uv workspace member) never reach the
installer as paths: their path is resolved against the folder of the file naming it (never the cwd), each
is built into a wheel once per content of its source (`local-wheels/` in the bundle cache) and installed
from that wheel without dependencies, as a regular package. Their dependencies come from the lock, or, with
a plain requirements.txt, from the wheel's metadata, added to what the installer resolves. Their source
digests are part of the input hash and the dependency layer's key (`Resolved.identity`).

What the installer reads (`Resolved.pins`) is the registry pins only; when it differs from the manifest's own
file it is written under the bundle cache, named by its content, as `requirements.lock` when every pin
carries hashes (install.py then requires them) and `requirements.txt` otherwise. It never holds a path of
this machine, so the input hash is the same on a laptop and in CI.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from stacks.bundling import bundle_cache
from stacks.bundling import lock as requirements_lock
from stacks.bundling.indexes import find_uv, installer_environment, redact, run_bounded, uv_to_resolve
from stacks.bundling.spec import DEFAULT_EXCLUDES, BundleSpec, BundlingError, source_files, source_root

if TYPE_CHECKING:
    from packaging.requirements import Requirement

UV = "pyproject.toml + uv.lock"
POETRY = "pyproject.toml + poetry.lock"
REQUIREMENTS_LOCK = "requirements.txt + requirements.lock"
REQUIREMENTS = "requirements.txt"

# What a local package's digest ignores: what its own build or tools leave beside the source.
_LOCAL_EXCLUDES = (*DEFAULT_EXCLUDES, "build", "dist", "*.egg-info")


@dataclass(frozen=True)
class Manifest:
    label: str  # which one it is, as the build log says it (one of the constants above)
    primary: Path  # the file naming the dependencies: pyproject.toml or requirements.txt
    lock: Path | None  # the lock beside it, if any

    @property
    def refresh(self) -> str:
        """The command that makes the lock again, with where to run it."""
        if self.label == UV and self.lock is not None:
            return f"`uv lock` in {self.lock.parent}"
        if self.label == POETRY:
            return f"`poetry lock` in {self.primary.parent}"
        return f"`make lock` (or `python -m scripts.bundle.lock {self.primary.parent}`)"


@dataclass(frozen=True)
class LocalPackage:
    source: Path  # its folder (absolute)
    digest: str  # sha256 of its source files (relative paths and contents)
    wheel: Path  # the wheel built from it, in the bundle cache


@dataclass(frozen=True)
class Resolved:
    manifest: Manifest
    pins: Path  # what the installer reads: registry requirements only
    local: tuple[LocalPackage, ...]

    def identity(self) -> list[tuple[str, str]]:
        """What the input hash and the layer key take besides the pins' content: no absolute path."""
        return [
            ("manifest", self.manifest.label),
            *(("local-package", f"{p.wheel.name}:{p.digest}") for p in self.local),
        ]


def find_manifest(root: Path) -> Manifest:
    """The manifest of backend folder `root`, in the module docstring's order; BundlingError names what is
    missing when there is none."""
    primary = primary_file(root)
    if primary.is_file() or (root / "pyproject.toml").is_file():  # without a lock, manifest_for says so
        return manifest_for(primary if primary.is_file() else root / "pyproject.toml")
    raise BundlingError(
        f"{root} has no dependency manifest: expected pyproject.toml with uv.lock or poetry.lock, or "
        "requirements.txt (with the requirements.lock `make lock` writes)"
    )


def primary_file(root: Path) -> Path:
    """The file a backend's BundleSpec names: pyproject.toml when a lock is beside it (or above it, for a
    workspace member), else requirements.txt (whose absence find_manifest and requirements_file report)."""
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and (uv_lock_for(pyproject) or (root / "poetry.lock").is_file()):
        return pyproject
    return root / "requirements.txt"


def manifest_for(primary: Path) -> Manifest:
    """The manifest a BundleSpec's `requirements` file stands for: a pyproject.toml with its lock, or a
    requirements file with or without requirements.lock."""
    if primary.name == "pyproject.toml":
        uv_lock = uv_lock_for(primary)
        if uv_lock is not None:
            return Manifest(UV, primary, uv_lock)
        if (primary.parent / "poetry.lock").is_file():
            return Manifest(POETRY, primary, primary.parent / "poetry.lock")
        raise BundlingError(
            f"{primary} has no uv.lock or poetry.lock beside it: the bundle installs locked versions only. "
            f"Run `uv lock` (or `poetry lock`) in {primary.parent} and commit the lock"
        )
    lock = primary.with_name(requirements_lock.LOCK_NAME)
    if lock.is_file():
        return Manifest(REQUIREMENTS_LOCK, primary, lock)
    return Manifest(REQUIREMENTS, primary, None)


def uv_lock_for(pyproject: Path) -> Path | None:
    """uv.lock beside `pyproject`, else that of the workspace it is a member of: the nearest folder above
    whose pyproject.toml declares `[tool.uv.workspace]` (as uv finds it), when that folder holds uv.lock."""
    if (pyproject.parent / "uv.lock").is_file():
        return pyproject.parent / "uv.lock"
    for folder in pyproject.parent.resolve().parents:
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            declares = "workspace" in tomllib.loads(candidate.read_text()).get("tool", {}).get("uv", {})
        except (tomllib.TOMLDecodeError, OSError):
            continue
        if declares:
            return folder / "uv.lock" if (folder / "uv.lock").is_file() else None
    return None


def target_environment(python_version: str, architecture: str) -> dict[str, str]:
    """PEP 508 marker values on Lambda for the target Python and architecture."""
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "platform_machine": requirements_lock.TARGET_PLATFORMS[architecture],
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


# ---------------------------------------------------------------------------------------------------------
# Registry pins and local paths, per kind of manifest. Each returns (requirement lines, local folders).

_LOCAL_LINE = re.compile(
    r"^(?:-e|--editable)\s+(\S.*)$|^((?:\.{1,2}/|/|file:)\S*)$|^[A-Za-z0-9._-]+\s*@\s*(file:\S+)"
)


def split_local(text: str, base: Path) -> tuple[str, list[Path]]:
    """`text` of a requirements file without its local-path lines, and those paths resolved against `base`
    (the folder of the file naming them: pip and uv resolve them against the cwd, which is why
    `-e ./libs/common` failed from the app's folder). A local line's continuation and comments go too."""
    kept: list[str] = []
    local: list[Path] = []
    dropping = False
    for line in text.splitlines():
        stripped = line.strip()
        if dropping and (line.startswith((" ", "\t")) or not stripped):
            dropping = stripped.endswith("\\")
            continue
        dropping = False
        match = _LOCAL_LINE.match(stripped.rstrip("\\").strip().split(" ;")[0].strip())
        raw = next((g for g in match.groups() if g), "") if match else ""
        if raw and ("://" not in raw or raw.startswith("file:")):  # `-e git+https://...` is not a folder
            if raw.startswith("file:"):
                raw = unquote(urlparse(raw).path)
            local.append((base / raw).resolve())
            dropping = stripped.endswith("\\")
            continue
        kept.append(line)
    return "".join(f"{line}\n" for line in kept), local


def uv_pins(manifest: Manifest) -> tuple[str, list[Path]]:
    """`uv export` of the project (a workspace member's, when the backend is one): its non-dev dependencies
    with hashes, members as paths (relative to the workspace root, where uv.lock is)."""
    assert manifest.lock is not None
    root = manifest.primary.parent
    uv = uv_to_resolve(manifest.lock)
    # --locked fails, instead of writing a new lock, when pyproject.toml changed; the app's own code is
    # src/, bundled as source; uv's message goes into synth's.
    args = [uv, "export", "--locked", "--no-dev", "--no-emit-project", "--no-editable", "--color", "never"]
    args += ["--format", "requirements-txt", "--no-header", "--no-annotate", "--quiet"]
    env = {**installer_environment("uv"), "UV_PYTHON_DOWNLOADS": "never"}
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        detail = redact(proc.stderr.strip()[-1500:])
        if "--locked" in detail or "needs to be updated" in detail:
            raise BundlingError(
                f"{manifest.lock} is stale: {manifest.primary} (or a workspace member's pyproject.toml) "
                f"changed since it was locked. Run {manifest.refresh} and commit uv.lock"
            )
        if "No interpreter found" in detail:
            # uv checks a lock against the project with an interpreter its requires-python accepts.
            raise BundlingError(
                f"`uv export` of {manifest.lock} needs a Python that {manifest.primary}'s requires-python "
                "accepts, to check the lock is current, and this machine has none: install it (the "
                f"runtime's Python also verifies the bundle).\n{detail}"
            )
        raise BundlingError(f"`uv export` of {manifest.lock} failed (fix it, then run `uv lock`):\n{detail}")
    return split_local(proc.stdout, manifest.lock.parent)


def poetry_content_hash(pyproject: Mapping[str, Any], *, with_dependency_groups: bool = True) -> str:
    """The `[metadata] content-hash` Poetry writes for `pyproject` (its Locker's rule): sha256 of the sorted
    JSON of the sections that decide the lock. Poetry 2.3 added `[dependency-groups]` to it."""
    legacy = ("dependencies", "source", "extras", "dev-dependencies")
    project = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {}) if with_dependency_groups else {}
    poetry = pyproject.get("tool", {}).get("poetry", {})
    relevant_project = {
        key: project[key]
        for key in ("requires-python", "dependencies", "optional-dependencies")
        if project.get(key) is not None
    }
    relevant_poetry = {}
    for key in (*legacy, "group"):
        value = poetry.get(key)
        # Absent legacy keys are written as null, unless [project] or [dependency-groups] say something.
        if value is None and (key not in legacy or relevant_project or groups):
            continue
        relevant_poetry[key] = value
    content = {k: v for k, v in {"project": relevant_project, "dependency-groups": groups}.items() if v}
    content = {**content, "tool": {"poetry": relevant_poetry}} if content else relevant_poetry
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def poetry_pins(manifest: Manifest, environment: Mapping[str, str]) -> tuple[str, list[Path]]:
    """The main group's packages of poetry.lock that install on the target, each pinned with its hashes."""
    from packaging.markers import Marker
    from packaging.utils import canonicalize_name as canonical

    assert manifest.lock is not None
    root = manifest.primary.parent
    fix = f"Run `poetry lock` in {root} and commit poetry.lock"
    try:
        pyproject = tomllib.loads(manifest.primary.read_text())
        locked = tomllib.loads(manifest.lock.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BundlingError(
            f"{manifest.primary} or {manifest.lock} is not valid TOML ({exc}). {fix}"
        ) from None
    recorded = locked.get("metadata", {}).get("content-hash")
    # A lock written before Poetry 2.3 hashed no [dependency-groups]; Poetry accepts either, so do we.
    current = {poetry_content_hash(pyproject), poetry_content_hash(pyproject, with_dependency_groups=False)}
    if recorded not in current:
        raise BundlingError(
            f"{manifest.lock} is stale: {manifest.primary} changed since it was locked (content-hash "
            f"{str(recorded)[:12]}, now {poetry_content_hash(pyproject)[:12]}). {fix}"
        )
    lines: list[str] = []
    local: list[Path] = []
    # Locks before lock-version 2.0 (Poetry 1.x) list each package's files under [metadata.files].
    old_files = {canonical(k): v for k, v in locked.get("metadata", {}).get("files", {}).items()}
    for package in locked.get("package", []):
        name, version = package["name"], package["version"]
        # lock-version 2.1 lists groups; older locks a category.
        groups = package.get("groups") or [package.get("category", "main")]
        if "main" not in groups or package.get("optional", False):
            continue
        markers = package.get("markers")
        marker = markers.get("main") if isinstance(markers, dict) else markers
        if marker and not Marker(marker).evaluate(dict(environment)):
            continue
        source = package.get("source", {})
        kind = source.get("type")
        if kind == "directory":
            local.append((root / source["url"]).resolve())
            continue
        if kind in ("git", "url", "file"):
            raise BundlingError(
                f"{manifest.lock} takes {name} from a {kind} source ({source.get('url')}): the bundle "
                "installs registry packages and local folders only. Publish it, or depend on its folder"
            )
        files = package.get("files") or old_files.get(canonical(name), [])
        hashes = [f["hash"] for f in files if f.get("hash")]
        if not hashes:
            raise BundlingError(f"{manifest.lock} records no file hash for {name} {version}. {fix}")
        lines.append(" \\\n".join([f"{name}=={version}", *(f"    --hash={h}" for h in sorted(hashes))]))
    return "".join(f"{line}\n" for line in lines), local


_INCLUDE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)\s*$")


def read_requirements(
    path: Path, seen: frozenset[Path] = frozenset(), read: list[Path] | None = None
) -> tuple[str, list[Path]]:
    """split_local of a requirements file, with the files it includes (`-r`) inlined, each one's local paths
    resolved against its own folder. A constraints file (`-c`) keeps its place, by absolute path (only in a
    file that is rewritten because it names a local package: then its pins are no longer beside it).
    `read`, when given, is added every file read."""
    if path in seen:
        raise BundlingError(f"{path} includes itself (through -r): remove the cycle")
    if read is not None:
        read.append(path)
    kept, local = split_local(path.read_text(), path.parent)
    out = []
    for line in kept.splitlines():
        include = _INCLUDE.match(line)
        if include is None:
            out.append(f"{line}\n")
            continue
        flag, name = include.groups()
        target = (path.parent / name).resolve()
        if not target.is_file():
            raise BundlingError(f"{path} includes {name} ({target}), which does not exist: fix the path")
        if flag in ("-c", "--constraint"):
            out.append(f"{flag} {target}\n")
            continue
        text, more = read_requirements(target, seen | {path}, read)
        out.append(text)
        local += more
    return "".join(out), local


# ---------------------------------------------------------------------------------------------------------
# Wheels built here (local packages; sdists for sdist.py), in bundle cache entries.

PURE_TAGS = ("-py3-none-any.whl", "-py2.py3-none-any.whl")
BUILD_TIMEOUT_SECONDS = 600


def build_wheel(
    source: Path, out: Path, *, uv: str | None, uv_cache: Path | None = None, project: Path | None = None
) -> tuple[Path | None, str]:
    """Build the wheel of `source` (a project folder or an sdist) into `out`, with `uv build` (run in
    `project`, whose uv configuration, its indexes, applies) or `pip wheel`: (the wheel or None, the
    installer's redacted output). Build isolation fetches the build backend from the index, with the same
    index settings as the install; the wheel's file times are fixed (SOURCE_DATE_EPOCH)."""
    if uv:
        directory = ["--directory", str(project)] if project else []
        # Not --quiet: uv then drops the build backend's own output, the reason a build failed.
        args = [uv, *directory, "build", "--wheel", "--out-dir", str(out), str(source)]
    else:
        args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
        args += ["-w", str(out), str(source)]
    env = installer_environment("uv" if uv else "pip", uv_cache=uv_cache)
    env["SOURCE_DATE_EPOCH"] = "315532800"
    status, output = run_bounded(args, env, BUILD_TIMEOUT_SECONDS)
    wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
    return (wheels[0] if status == 0 and len(wheels) == 1 else None), output


def source_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for relative, path in source_files(folder, _LOCAL_EXCLUDES):
        digest.update(f"{relative}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_local_wheel(folder: Path, cache_dir: Path) -> LocalPackage:
    """The pure-Python wheel of local package `folder`, built once per content of its source."""
    if not folder.is_dir():
        raise BundlingError(f"local package {folder} does not exist: fix the path in the manifest naming it")
    digest = source_digest(folder)

    def build(work: Path) -> None:
        # The build backend comes from the same indexes as every other install (private ones included).
        wheel, output = build_wheel(folder, work, uv=find_uv(), uv_cache=cache_dir / "uv")
        if wheel is None:
            raise BundlingError(
                f"building local package {folder} into a wheel failed: fix its pyproject.toml or build "
                f"backend\n{output[-2000:]}"
            )

    home = cache_dir / "local-wheels" / digest[:32]
    bundle_cache.publish(home, build)  # held: no pruner deletes it while the install reads the wheel
    wheel = next(home.glob("*.whl"), None)
    if wheel is None:  # emptied by hand; another build may hold it, so it is not deleted here
        raise BundlingError(f"{home} holds no wheel of local package {folder}: delete that folder")
    if not wheel.name.endswith(PURE_TAGS):
        raise BundlingError(
            f"local package {folder} builds {wheel.name}, not a pure-Python wheel: without Docker it "
            "cannot be built for Lambda. Move its native part into a published package with manylinux wheels"
        )
    return LocalPackage(folder, digest, wheel)


def requires_on_target(metadata: str, environment: Mapping[str, str]) -> tuple[str, list[Requirement]]:
    """The Name of a distribution's METADATA and its Requires-Dist that hold on the target (extras'
    requirements never do: the environment's `extra` is empty)."""
    from email.parser import HeaderParser

    from packaging.requirements import InvalidRequirement, Requirement

    headers = HeaderParser().parsestr(metadata)
    found = []
    for line in headers.get_all("Requires-Dist", []):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate(dict(environment)):
            found.append(requirement)
    return str(headers.get("Name", "")), found


def wheel_requirements(wheel: Path, environment: Mapping[str, str]) -> list[str]:
    """The Requires-Dist of `wheel` that hold on the target, without their markers."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        _name, requires = requires_on_target(archive.read(name).decode(), environment)
    for requirement in requires:
        requirement.marker = None
    return [str(r) for r in requires]


# ---------------------------------------------------------------------------------------------------------
# resolve: once per spec, again when a file it read changes.

# spec's (requirements file, Python, architecture, cache) -> (manifest, what was read, its stamp, result).
_RESOLVED: dict[
    tuple[Path, str, str, Path], tuple[Manifest, tuple[Path, ...], tuple[Any, ...], Resolved]
] = {}
# A file written this recently may change again within its timestamp's resolution, keeping size and time:
# what read it is not kept (as git's "racy" index entries are checked by content).
_RACY_NS = 2_000_000_000


def resolve(spec: BundleSpec) -> Resolved:
    """What installing `spec`'s manifest means: the pins file and the local packages (built).

    A build asks a dozen times (the install, the hashes, the checks): the answer is kept while the manifest
    is the same and no file it read (the manifest, its lock, included files, the local packages' sources)
    changed size or time, so a long-lived local API resolves again after an edit, and only then."""
    manifest = manifest_for(spec.requirements)
    key = (spec.requirements.absolute(), spec.python_version, spec.architecture, spec.cache_dir.absolute())
    kept = _RESOLVED.get(key)
    # The pins and wheels it names live in the cache: one deleted since (`make clean` under a running local
    # API) is made again.
    if (
        kept is not None
        and kept[0] == manifest
        and _stamp(kept[1]) == kept[2]
        and all(path.is_file() for path in (kept[3].pins, *(p.wheel for p in kept[3].local)))
    ):
        return kept[3]
    read: list[Path] = [manifest.primary, *([manifest.lock] if manifest.lock else [])]
    resolved = _resolve(spec, manifest, read)
    inputs = (*read, *(p.source for p in resolved.local))
    stamp = _stamp(inputs)
    if all(mtime < time.time_ns() - _RACY_NS for _path, _size, mtime in stamp):
        _RESOLVED[key] = (manifest, inputs, stamp, resolved)
    return resolved


def _resolve(spec: BundleSpec, manifest: Manifest, read: list[Path]) -> Resolved:
    """resolve, adding to `read` the files it reads besides the manifest, its lock and the local packages."""
    environment = target_environment(spec.python_version, spec.architecture)
    if manifest.label == UV:
        assert manifest.lock is not None
        read.append(manifest.lock.with_name("pyproject.toml"))  # the workspace's, when a member's is primary
        text, folders = uv_pins(manifest)
    elif manifest.label == POETRY:
        text, folders = poetry_pins(manifest, environment)
    elif not manifest.primary.is_file():
        return Resolved(manifest, manifest.primary, ())  # requirements_file reports it
    else:
        if manifest.lock is not None:
            requirements_lock.check_fresh(manifest.lock, manifest.primary)
        # requirements.txt (or its lock) without local paths, which are resolved against its folder.
        text, folders = read_requirements(manifest.lock or manifest.primary, read=read)
    local = tuple(build_local_wheel(folder, spec.cache_dir) for folder in sorted(set(folders)))
    if manifest.label in (REQUIREMENTS, REQUIREMENTS_LOCK) and not folders:
        return Resolved(manifest, manifest.lock or manifest.primary, local)  # installed as it is
    if manifest.label == REQUIREMENTS:
        # Resolved with the rest, the local packages' own dependencies (they are installed without).
        text += "".join(f"{r}\n" for p in local for r in wheel_requirements(p.wheel, environment))
    # Every pin carries hashes, but for a plain requirements.txt: install.py requires them in a lock.
    name = "requirements.txt" if manifest.label == REQUIREMENTS else "requirements.lock"
    folder = spec.cache_dir / "manifests" / hashlib.sha256(f"{name}\0{text}".encode()).hexdigest()[:32]
    bundle_cache.publish(folder, lambda work: (work / name).write_text(text))
    pins = folder / name
    return Resolved(manifest, pins, local)


def _stamp(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of each of `paths` (-1, -1: missing), a folder's by its source files."""
    stats = []
    for path in paths:
        files = [p for _r, p in source_files(path, _LOCAL_EXCLUDES)] if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
                stats.append((str(file), stat.st_size, stat.st_mtime_ns))
            except OSError:
                stats.append((str(file), -1, -1))
    return tuple(stats)


def local_module_path(spec: BundleSpec, module: str) -> Path | None:
    """Where a local package of `spec`'s manifest holds `module` (None: no local package does), for the
    hints that name the file to fix."""
    try:
        local = resolve(spec).local
    except BundlingError:
        return None
    top = module.split(".")[0]
    for package in local:
        base = source_root(package.source)
        if (base / top).is_dir() or (base / f"{top}.py").is_file():
            return base / module.replace(".", "/")
    return None
