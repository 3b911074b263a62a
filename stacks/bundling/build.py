"""Builds a Python Lambda's bundle straight from its source folder, without Docker, and proves it imports.

Why not `PythonFunction` or SAM: both reuse build caches keyed on less than every input, and both need
Docker to target the Lambda platform. This module is the orchestration only: each step has its own module
(the package's docstring lists them).

`build_bundle` returns the cached bundle when one exists for the input hash, and otherwise builds it under
its lock and publishes it complete (bundle_cache.publish). A bundle's folder holds only its own files
(source, extra files, build_info.json and their bytecode); `BundleResult.paths` puts the dependency layer's
tree after it, which is how verification, `make local-invoke` and the local API run it. When the two share
a top-level name, the layer's files are linked into the bundle's folder instead, and the folder alone is
the bundle.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from stacks.bundling import (
    bundle_cache,
    import_closure,
    import_reader,
    install,
    layers,
    manifest,
    strip,
    zipwrite,
)
from stacks.bundling import bytecode as init_bytecode
from stacks.bundling.input_hash import dependency_key, host_can_compile, input_hash, installer_identity
from stacks.bundling.sdist import Wheelhouse
from stacks.bundling.spec import (
    BundleResult,
    BundleSpec,
    BundlingError,
    bytecode_modules_for,
    source_files,
    source_root,
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_head(source_dir: Path, migrations_dir: str | None) -> str | None:
    """The Alembic head revision from the migration scripts, read as text (nothing is imported)."""
    folder = source_dir / migrations_dir if migrations_dir else None
    if folder is None or not folder.is_dir():
        return None
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted(folder.glob("*.py")):
        text = script.read_text()
        rev = re.search(r"^revision(?:\s*:\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        down = re.search(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(.+)$", text, re.M)
        if rev:
            revisions.add(rev.group(1))
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)) if down else ())
    heads = sorted(revisions - parents)
    if len(heads) > 1:
        raise BundlingError(
            f"{folder} has several Alembic heads {heads}: merge them (alembic merge) before deploying"
        )
    return heads[0] if heads else None


def git_commit(paths: Sequence[Path]) -> tuple[str | None, bool]:
    """The last commit that touched the inputs, and whether they have uncommitted changes.

    Informational only (build_info.json), never part of the hash: a new commit that leaves the inputs as they
    were must not produce a new Lambda version.
    """

    def git(*args: str) -> str:
        names = [str(p.absolute()) for p in paths]
        run = subprocess.run(
            ["git", *args, "--", *names], cwd=paths[0], capture_output=True, text=True, check=True
        )
        return run.stdout.strip()

    try:
        return git("log", "-1", "--format=%H") or None, bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return None, False


def check_import_closure(
    spec: BundleSpec,
    paths: Sequence[Path],
    files: Sequence[tuple[str, Path]] | None = None,
    contents: Mapping[str, bytes] | None = None,
) -> import_closure.Closure:
    """The static import closure of the source, resolved against the bundle (`paths`: its folders, as on
    sys.path); raises BundlingError naming file:line, module or name, and the functions reaching the file
    (see import_closure.py). `files`, `contents`: the source listing and bytes when already read."""
    if files is None:
        files = source_files(spec.source_dir, spec.excludes)
    tops = {rel.split("/")[0].removesuffix(".py") for rel, _p in files}
    # Read once: the source's analysis and each local package's take it less their own top-level names.
    installed: set[str] = set().union(*(import_closure.installed_top_levels(p) for p in paths))
    closure = import_closure.analyze(
        spec.source_dir,
        files,
        spec.handlers,
        installed=installed - tops,
        python_version=spec.python_version,
        requirements=spec.requirements,
        contents=contents,
    )
    problems = [*closure.problems, *local_package_problems(spec, installed)]
    if problems:
        raise BundlingError(import_closure.closure_error(problems))
    return closure


def local_package_problems(spec: BundleSpec, installed: set[str]) -> list[import_closure.ImportProblem]:
    """The team's own local packages (manifest.py) install like any dependency, so the source's closure
    stops at them; their imports inside functions are checked here as the source's are, each problem named
    by the package's file. Their module-level imports run when a handler imports them: verification."""
    try:
        local = manifest.resolve(spec).local
    except BundlingError:
        return []  # the install reports it
    problems = []
    for package in local:
        base = source_root(package.source)
        files = [(rel, path) for rel, path in source_files(base, spec.excludes) if rel.endswith(".py")]
        tops = {rel.split("/")[0].removesuffix(".py") for rel, _p in files}
        pyproject = package.source / "pyproject.toml"
        found = import_closure.analyze(
            base,
            files,
            (),
            installed=installed - tops,
            python_version=spec.python_version,
            requirements=pyproject if pyproject.is_file() else None,
        )
        shown = os.path.relpath(base, spec.source_dir.parent)
        problems += [
            replace(p, site=replace(p.site, file=f"{shown}/{p.site.file}"), functions=())
            for p in found.problems
        ]
    return problems


def _bytecode_inputs(
    spec: BundleSpec, paths: Sequence[Path], closure: import_closure.Closure
) -> tuple[
    dict[str, import_reader.ModuleInfo],
    tuple[str, ...],
    frozenset[str],
    list[init_bytecode.DependencyImport],
]:
    """What bytecode.prefetch and write_bytecode take after the layer: the bundle's own modules (source and
    extra files), the modules whose init imports get bytecode (the handlers' when the spec names none), the
    standard library's names and the functions' lazy dependency imports."""
    extra = [(name, path) for name, path in spec.extra_files if name.endswith(".py")]
    modules = {**closure.modules, **import_reader.read_source(paths[0], extra)}
    lazy = {(d.module, d.names) for deps in closure.lazy_dependencies.values() for d in deps}
    roots = spec.bytecode_modules or bytecode_modules_for(h for _fn, h in spec.handlers) or tuple(modules)
    return modules, roots, import_closure.stdlib_names(spec.python_version), sorted(lazy)


def prefetch_bytecode(
    spec: BundleSpec,
    files: Sequence[tuple[str, Path]],
    contents: Mapping[str, bytes],
    errors: list[init_bytecode.BytecodeError],
) -> Callable[[layers.DependencyLayer], None]:
    """For a new layer, while its entries are deflated: find and compile what the bundle's dependency
    imports load (the slowest step of a build after the install), so the build finds it done.

    The closure is taken against the layer's tree, which lacks only the extra files: a source importing one
    of those at init makes this fail, and the build then does it in turn. An import that crashed or hung
    is put in `errors`, to be reported as it is rather than waited for twice."""

    def run(pending: layers.DependencyLayer) -> None:
        closure = check_import_closure(spec, [pending.tree], files, contents)
        try:
            init_bytecode.prefetch(pending, *_bytecode_inputs(spec, [pending.tree], closure))
        except init_bytecode.BytecodeError as exc:
            errors.append(exc)

    return run


def dependency_layer(
    spec: BundleSpec,
    tool: str,
    command: list[str],
    wheelhouse: Wheelhouse,
    meanwhile: Callable[[layers.DependencyLayer], None] | None = None,
) -> layers.DependencyLayer:
    """The installed, pruned, stripped dependencies for `spec`, from the layer cache or built now."""

    def build(tree: Path) -> list[str]:
        install.install_dependencies(spec, command, tree, spec.cache_dir, wheelhouse)
        install.prune_installed(tree, spec.dependency_excludes)
        if command[0].endswith("uv"):  # only a new layer adds to uv's cache
            bundle_cache.bound_uv_cache(command[0], spec.cache_dir / "uv")
        return strip.strip_native_libraries(tree, spec.architecture) if spec.strip_native else []

    key = dependency_key(spec, tool, wheelhouse.wheels)
    return layers.dependency_layer(spec.cache_dir, key, build, meanwhile)


def build_bundle(spec: BundleSpec, *, log: Callable[[str], None] = lambda _m: None) -> BundleResult:
    """Return the bundle for `spec`, building it only when no complete bundle exists for its input hash.
    The bundle and its layer are held for this process (bundle_cache.use): no pruner deletes them."""
    started = time.monotonic()
    tool, command = installer_identity(spec)
    wheelhouse = install.prepare_wheelhouse(spec, tool, command, log=log)
    # Each source file is read once: the hash, the copy, the closure and the zip all see the same bytes.
    files = source_files(spec.source_dir, spec.excludes)
    contents = {relative: path.read_bytes() for relative, path in files}
    asset_hash = input_hash(spec, tool, wheelhouse.wheels, contents)
    final = spec.cache_dir / "bundles" / asset_hash

    def usable() -> bool:  # a complete bundle whose zip was damaged or whose layer is gone is built again
        layer = json.loads((final / "meta.json").read_text())["layer"]
        held = not layer or bundle_cache.use(spec.cache_dir / "layers" / layer)
        return held and zipwrite.intact(final / "bundle.zip")

    def make(work: Path) -> None:
        # Informational (two git calls), so asked on the side while the bundle is built.
        with ThreadPoolExecutor(max_workers=1) as side:
            provenance = side.submit(git_commit, _provenance_paths(spec))
            _build_in(spec, tool, command, wheelhouse, files, contents, asset_hash, work, provenance)

    built = bundle_cache.publish(final, make, usable=usable)
    meta = json.loads((final / "meta.json").read_text())  # the result's fields a cache hit reads back
    if built:
        for notice in meta["notices"]:
            log(f"[bundle] notice: {notice}")
        bundle_cache.prune(spec.cache_dir)
    layer = meta.pop("layer")
    meta["notices"] = tuple(meta["notices"]) if built else ()  # a hit's were shown when it was built
    return BundleResult(
        directory=final / "bundle",
        zip_path=final / "bundle.zip",
        asset_hash=asset_hash,
        cache_hit=not built,
        seconds=time.monotonic() - started,
        layer=spec.cache_dir / "layers" / layer / "tree" if layer else None,
        zip_sha256=zipwrite.sealed(final / "bundle.zip"),
        **meta,
    )


def _provenance_paths(spec: BundleSpec) -> list[Path]:
    """What git_commit asks about: the source, the manifest and its lock, and the local packages."""
    resolved = manifest.resolve(spec)
    lock = [resolved.manifest.lock] if resolved.manifest.lock else []
    return [spec.source_dir, resolved.manifest.primary, *lock, *(p.source for p in resolved.local)]


def _write(dest: Path, data: bytes) -> None:
    """Write a file of the bundle's folder; a link into the layer at its place is replaced, never written
    through."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    dest.write_bytes(data)


def _build_in(
    spec: BundleSpec,
    tool: str,
    command: list[str],
    wheelhouse: Wheelhouse,
    files: Sequence[tuple[str, Path]],
    contents: Mapping[str, bytes],
    asset_hash: str,
    work: Path,
    provenance: Future[tuple[str | None, bool]],
) -> None:
    """Build the bundle into `work`: bundle/ (its own files, build_info.json and their bytecode), bundle.zip,
    closure.json (the lazy dependency imports, with file:line, for verification) and meta.json."""
    bytecode = spec.compile_bytecode and host_can_compile(spec)
    failed: list[init_bytecode.BytecodeError] = []
    ahead = prefetch_bytecode(spec, files, contents, failed) if bytecode else None
    layer = dependency_layer(spec, tool, command, wheelhouse, ahead)
    if failed:
        raise BundlingError(str(failed[0]))
    bundle = work / "bundle"
    bundle.mkdir()
    own = [rel for rel, _p in files] + [name for name, _p in spec.extra_files]
    # A source file or package of the same top-level name as an installed one would hide or split it on
    # a second sys.path entry: then the bundle's folder is the whole bundle, as on Lambda.
    merged = bool(layers.top_level(own) & layers.top_level(e.name for e in layer.entries))
    if merged:
        layer.link_into(bundle)
    for relative, _path in files:
        _write(bundle / relative, contents[relative])
    for name, path in spec.extra_files:  # an extra file may replace a source file
        _write(bundle / name, path.read_bytes())
    paths = [bundle] if merged else [bundle, layer.tree]
    closure = check_import_closure(spec, paths, files, contents)
    lazy = {fn: [d.as_json() for d in deps] for fn, deps in sorted(closure.lazy_dependencies.items())}
    (work / "closure.json").write_text(json.dumps(lazy, sort_keys=True))
    info = _build_info(spec, tool, wheelhouse, contents, asset_hash, closure, *provenance.result())
    _write(bundle / "build_info.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    own.append("build_info.json")
    notices = list(layer.notices)
    written = init_bytecode.Written((), None)
    if bytecode:
        try:
            written = init_bytecode.write_bytecode(bundle, layer, *_bytecode_inputs(spec, paths, closure))
        except init_bytecode.BytecodeError as exc:
            raise BundlingError(str(exc)) from exc
    elif spec.compile_bytecode:
        notices.append(
            f"no precompiled bytecode: host Python is {sys.version_info.major}."
            f"{sys.version_info.minor}, target is {spec.python_version}"
        )
    own_pyc = [importlib.util.cache_from_source(rel) for rel in written.own]
    new = zipwrite.NewEntries()
    new.add_files([(name, bundle / name) for name in sorted({*own, *own_pyc})])
    stores = [layer.store, *([written.pyc_store] if written.pyc_store else [])]
    # A bundle file over a layer file replaces it, and its bytecode the layer file's.
    replaced = {*own, *(importlib.util.cache_from_source(r) for r in own if r.endswith(".py"))}
    zipped = zipwrite.write_merged(work / "bundle.zip", stores, new, replaced=replaced)
    zipwrite.seal(work / "bundle.zip")
    sizes = {e.name: e.size for store in stores for e in store.entries if e.name not in replaced}
    sizes.update({e.name: e.size for e in new.entries})
    meta = {
        "unzipped_bytes": sum(sizes.values()),
        "zipped_bytes": zipped,
        "bytecode": bytecode,
        "bytecode_files": len(written.files),
        "tool": tool,
        "dependencies_reused": not layer.built,
        "layer": "" if merged else layer.path.name,
        "notices": notices,
        "manifest": manifest.manifest_for(spec.requirements).label,
    }
    (work / "meta.json").write_text(json.dumps(meta, sort_keys=True))


def _build_info(
    spec: BundleSpec,
    tool: str,
    wheelhouse: Wheelhouse,
    contents: Mapping[str, bytes],
    asset_hash: str,
    closure: import_closure.Closure,
    commit: str | None,
    dirty: bool,
) -> dict[str, Any]:
    """build_info.json: what the bundle is and where it came from (read by the probe, `make diff` and the
    migrations step)."""
    return {
        "code_version": asset_hash[:12],
        "bundle_hash": asset_hash,
        "source_hash": _sha256(
            b"".join(rel.encode() + b"\0" + _sha256(data).encode() for rel, data in contents.items())
        )[:12],
        # The pins, and the local packages' sources when there are any (`make diff` tells a dependency change
        # from a source change by this).
        "requirements_hash": _sha256(
            install.requirements_file(spec).read_bytes()
            + "".join(f"\0{p.wheel.name}:{p.digest}" for p in manifest.resolve(spec).local).encode()
        )[:12],
        "schema_head": schema_head(spec.source_dir, spec.migrations_dir),
        "git_commit": commit,
        "git_dirty": dirty,
        "runtime": spec.runtime,
        "architecture": spec.architecture,
        "installer": tool,
        # What each function imports lazily from its dependencies: the probe imports exactly these.
        "lazy_imports": closure.lazy_imports(),
        # Source files each function imports at init / reaches lazily (what a change to a file impacts).
        "closure": {
            fn: {"init": closure.init_files[fn], "lazy": closure.lazy_files[fn]} for fn in closure.init_files
        },
        "built_wheels": [name for name, _sha in wheelhouse.wheels],
    }
