"""Builds a Python Lambda's bundle straight from its source folder, without Docker, and proves it imports.

Why not `PythonFunction` or SAM: both reuse build caches keyed on less than every input, and both need
Docker to target the Lambda platform. This module is the orchestration only; each step has its own module:

* spec.py: the specification, result and errors every step shares, and which source files a bundle takes;
* input_hash.py: the input hash (cache key and CDK asset hash) and the dependency layer's key;
* install.py: the dependencies, from manylinux wheels for the target (uv, or pip), so the host OS does not
  matter; sdist.py turns pure-Python sdists into wheels first;
* layers.py and zipwrite.py: the installed dependencies cached as a layer, and the zip written with sorted
  entries, fixed timestamps and permissions, so two clean builds are byte identical (CDK uploads a .zip
  asset as is); source_cache.py: the source layer, what the last build computed per source file (its
  parse, .pyc and zip entry), so an edit redoes the edited files only;
* import_closure.py and bytecode.py: the static import check of the source, and bytecode for what init
  imports;
* verification.py: every handler imported from the built bundle in an isolated interpreter, as on Lambda
  (run by stacks/constructs/lambda_bundle.py, the only bundler module that touches CDK); verify_cache.py:
  which earlier passes still prove a new bundle, by the files each check read.

`build_bundle` returns the cached bundle when one exists for the input hash, and otherwise builds it beside
its final place and renames it there in one step, so an interrupted build never looks complete.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stacks.bundling import bundle_cache, import_closure, install, layers, strip
from stacks.bundling import bytecode as init_bytecode
from stacks.bundling.input_hash import dependency_key, host_can_compile, input_hash, installer_identity
from stacks.bundling.sdist import Wheelhouse
from stacks.bundling.source_cache import FileResults
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError, source_files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
    spec: BundleSpec,
    bundle: Path,
    layer: layers.DependencyLayer,
    closure: import_closure.Closure,
    results: FileResults | None = None,
    own_files: Collection[str] = (),
    prelinked: str | None = None,
) -> init_bytecode.Written:
    """Unchecked-hash .pyc for what `spec.bytecode_modules` import at init (see stacks/bundling/bytecode.py):
    the bundle's own modules (source and extra files) by their static init closure, dependency modules by
    what their dependency imports load, the functions' lazy dependency imports included. `own_files`: what
    the build wrote into the bundle; `prelinked`: as take_spare returned it."""
    modules, lazy = _bytecode_inputs(spec, bundle, closure, results)
    try:
        done = init_bytecode.write_bytecode(
            bundle,
            layer,
            modules,
            spec.bytecode_modules,
            import_closure.stdlib_names(spec.python_version),
            lazy_dependencies=lazy,
            results=results,
            own_files=own_files,
            prelinked=prelinked,
        )
    except init_bytecode.BytecodeError as exc:
        raise BundlingError(str(exc)) from exc
    return done


def _bytecode_inputs(
    spec: BundleSpec, bundle: Path, closure: import_closure.Closure, results: FileResults | None
) -> tuple[dict[str, import_closure.ModuleInfo], list[init_bytecode.DependencyImport]]:
    """The bundle's own modules (source and extra files) and the functions' lazy dependency imports."""
    extra = [(name, path) for name, path in spec.extra_files if name.endswith(".py")]
    modules = {**closure.modules, **import_closure.read_source(bundle, extra, results=results)}
    lazy = {(d.module, d.names) for deps in closure.lazy_dependencies.values() for d in deps}
    return modules, sorted(lazy)


def prefetch_bytecode(
    spec: BundleSpec,
    files: Sequence[tuple[str, Path]],
    contents: Mapping[str, bytes],
    results: FileResults | None,
    errors: list[init_bytecode.BytecodeError],
) -> Callable[[layers.DependencyLayer], None]:
    """For a new layer, while its entries are deflated: find and compile what the bundle's dependency
    imports load (the slowest step of a build after the install), so compile_init_bytecode finds it done.

    The closure is taken against the layer's tree, which lacks only the extra files: a source importing one
    of those at init makes this fail, and the build then does it in turn. An import that crashed or hung
    is put in `errors`, to be reported as it is rather than waited for twice."""

    def run(pending: layers.DependencyLayer) -> None:
        closure = check_import_closure(spec, pending.tree, files, contents, results)
        modules, lazy = _bytecode_inputs(spec, pending.tree, closure, results)
        stdlib = import_closure.stdlib_names(spec.python_version)
        try:
            init_bytecode.prefetch(pending, modules, spec.bytecode_modules, stdlib, lazy)
        except init_bytecode.BytecodeError as exc:
            errors.append(exc)

    return run


def check_import_closure(
    spec: BundleSpec,
    bundle: Path,
    files: Sequence[tuple[str, Path]] | None = None,
    contents: Mapping[str, bytes] | None = None,
    results: FileResults | None = None,
) -> import_closure.Closure:
    """The static import closure of the source, resolved against the installed bundle; raises BundlingError
    naming file:line, module or name, and the functions reaching the file (see import_closure.py).
    `files`, `contents`, `results`: the source listing and bytes when already read, and the parses kept from
    the last build."""
    if files is None:
        files = source_files(spec.source_dir, spec.excludes)
    tops = {rel.split("/")[0].removesuffix(".py") for rel, _p in files}
    closure = import_closure.analyze(
        spec.source_dir,
        files,
        spec.handlers,
        installed=import_closure.installed_top_levels(bundle, tops),
        python_version=spec.python_version,
        requirements=spec.requirements,
        contents=contents,
        results=results,
    )
    if closure.problems:
        raise BundlingError(import_closure.closure_error(closure.problems))
    return closure


def dependency_layer(
    spec: BundleSpec,
    tool: str,
    command: list[str],
    wheelhouse: Wheelhouse,
    meanwhile: Callable[[layers.DependencyLayer], None] | None = None,
    link: Path | None = None,
) -> layers.DependencyLayer:
    """The installed, pruned, stripped dependencies for `spec`, from the layer cache or built now
    (`meanwhile`, `link`: see layers.dependency_layer)."""

    def build(tree: Path) -> list[str]:
        install.install_dependencies(
            spec, command, tree, spec.cache_dir, wheelhouse.directory if wheelhouse.wheels else None
        )
        install.prune_installed(tree, spec.dependency_excludes)
        return strip.strip_native_libraries(tree, spec.architecture) if spec.strip_native else []

    key = dependency_key(spec, tool, wheelhouse.wheels)
    return layers.dependency_layer(spec.cache_dir, key, build, meanwhile, link)


def build_bundle(spec: BundleSpec, *, log: Callable[[str], None] = lambda _m: None) -> BundleResult:
    """Return the bundle for `spec`, building it only when no complete bundle exists for its input hash."""
    started = time.monotonic()
    tool, command = installer_identity(spec)
    wheelhouse = install.prepare_wheelhouse(spec, tool, command, log=log)
    # Each source file is read once: the hash, the copy, the closure and the zip all see the same bytes.
    files = source_files(spec.source_dir, spec.excludes)
    contents = {relative: path.read_bytes() for relative, path in files}
    asset_hash = input_hash(spec, tool, wheelhouse.wheels, contents)
    final = spec.cache_dir / "bundles" / asset_hash
    meta_path = final / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        bundle_cache.mark_used(final)
        return _result(final, asset_hash, tool, meta, cache_hit=True, started=started)

    notices: list[str] = []
    final.parent.mkdir(parents=True, exist_ok=True)
    results = FileResults.for_source(spec.cache_dir, spec.source_dir)
    # Informational (three git calls), so asked on the side while the bundle is built.
    background = ThreadPoolExecutor(max_workers=1)
    provenance = background.submit(git_commit, [spec.source_dir, spec.requirements])
    background.shutdown(wait=False)
    # Built beside its final place and renamed in one step: an interrupted build never looks complete.
    work = Path(tempfile.mkdtemp(prefix=f".{asset_hash[:12]}-", dir=final.parent))
    try:
        bundle = work / "bundle"
        compiles = spec.compile_bytecode and host_can_compile(spec) and bool(spec.bytecode_modules)
        failed: list[init_bytecode.BytecodeError] = []
        ahead = prefetch_bytecode(spec, files, contents, results, failed) if compiles else None
        layer = dependency_layer(spec, tool, command, wheelhouse, ahead, link=bundle)
        if failed:
            raise BundlingError(str(failed[0]))
        notices.extend(layer.notices)
        # A new layer was linked into the bundle while it was made; else a tree linked ahead (layers.py) is
        # taken, or one is linked now.
        prelinked = "" if layer.built else layer.take_spare(bundle)
        if prelinked is None:
            bundle.mkdir()
            layer.link_into(bundle)
        # Files from the layer are hard links: anything this build writes over one is unlinked first, so
        # the layer (and uv's cache behind it) is never written through.
        own: dict[str, Path] = {}
        made: set[Path] = set()
        for relative, path in [*files, *spec.extra_files]:
            dest = bundle / relative
            if dest.parent not in made:
                dest.parent.mkdir(parents=True, exist_ok=True)
                made.add(dest.parent)
            dest.unlink(missing_ok=True)
            if relative in contents and relative not in own:
                dest.write_bytes(contents[relative])
            else:  # an extra file (which may also replace a source file of the same name)
                shutil.copyfile(path, dest)
            own[relative] = dest
        closure = check_import_closure(spec, bundle, files, contents, results)
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
        commit, dirty = provenance.result()
        req = install.requirements_file(spec)
        info = {
            "code_version": asset_hash[:12],
            "bundle_hash": asset_hash,
            "source_hash": _sha256(
                b"".join(rel.encode() + b"\0" + _sha256(data).encode() for rel, data in contents.items())
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
        # Every file this build wrote besides the layer's links, when known: the zip then need not list the
        # whole bundle folder to find them (thousands of files, on every source edit).
        written: list[str] | None = [*own, "build_info.json"]
        pyc_set: layers.PycSet | None = None
        replaced = [*own, "build_info.json"]
        if prelinked and not (bytecode and spec.bytecode_modules):
            init_bytecode.unlink_foreign_pyc(bundle, layer, own)  # a spare's .pyc this build does not ship
        if bytecode and spec.bytecode_modules:
            compiled = compile_init_bytecode(spec, bundle, layer, closure, results, own, prelinked)
            bytecode_files = len(compiled.files)
            pyc_set = compiled.pyc_set
            written = [
                *own,
                "build_info.json",
                *(importlib.util.cache_from_source(rel) for rel in compiled.own),
            ]
            replaced += compiled.shadowed
        elif bytecode:
            compile_bytecode(bundle)
            bytecode_files = sum(1 for _ in bundle.rglob("*.pyc"))
            written = None
        if spec.compile_bytecode and not bytecode:
            notices.append(
                f"no precompiled bytecode: host Python is {sys.version_info.major}."
                f"{sys.version_info.minor}, target is {spec.python_version}"
            )
        zipped, unzipped = layer.write_zip(
            work / "bundle.zip", bundle, replaced=replaced, written=written, results=results, pyc_set=pyc_set
        )
        meta = {
            "unzipped_bytes": unzipped,
            "zipped_bytes": zipped,
            "bytecode": bytecode,
            "bytecode_files": bytecode_files,
            "tool": tool,
            "dependencies_reused": not layer.built,
            "pyc_set": pyc_set.digest if pyc_set is not None else "",
        }
        (work / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        if final.exists():  # a concurrent synth finished first; its bundle has the same inputs
            shutil.rmtree(work)
        else:
            os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    results.save()
    for notice in notices:
        log(f"[bundle] notice: {notice}")
    # The next source edit on this layer then finds its dependency tree already linked.
    layer.make_spare_in_background(meta.get("pyc_set", ""), prune=spec.cache_dir)
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
