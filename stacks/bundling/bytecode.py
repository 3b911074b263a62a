"""Which modules get precompiled bytecode, and writing it: a function of the inputs, cheap after an edit.

The bytecode that shortens a cold start is that of what init imports; compiling every installed module
(boto3's, tests', unused extras') nearly doubles the zip for no start-up gain. "What init imports" is taken
in two parts, so that a source-only change never has to run the handlers:

* the bundle's own modules (source and extra files such as the probe wrapper): the static init closure of
  the bytecode modules, i.e. their module-level imports (outside functions and TYPE_CHECKING), followed
  through the bundle's modules. They are compiled here, from source, in this process;
* dependency modules: what the dependency imports of that closure load when run in a fresh `-I -S`
  interpreter against the dependency layer alone (compile_imported.py), together with the dependencies the
  functions import lazily (inside functions, recorded by the import closure). Those run on the first
  request that needs them and in every synth-time verification and probe; without bytecode each of those
  compiles them from source (botocore alone takes about a second), on every cold start, since Lambda's
  /var/task is read-only. That set depends on the layer, the
  import names and the Python only, so it is cached in the layer under a digest of the three: a source
  edit that imports the same dependencies is a cache hit and starts no interpreter.

A clean build and a layered one go through the same steps, so they give the same bytes. What this does not
see: dependency modules first imported while the handlers' module-level code runs (an app constructor that
imports an optional extra) or through `importlib.import_module` with a computed name. Those are compiled
once per sandbox at cold start, as without precompiled bytecode: a cost in start-up time, never a failure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stacks.bundling import layers
from stacks.bundling.compile_imported import pyc_data, write_atomic
from stacks.bundling.import_closure import ModuleInfo

# Bump when the rules for which modules get bytecode change (part of the cached import sets' digest).
BYTECODE_FORMAT = "2"
COMPILE_SCRIPT = Path(__file__).resolve().with_name("compile_imported.py")
COMPILE_TIMEOUT_SECONDS = 300

# (module, names): `from module import names`, or `import module` when names is empty.
DependencyImport = tuple[str, tuple[str, ...]]


class BytecodeError(Exception):
    pass


@dataclass(frozen=True)
class InitImports:
    files: tuple[str, ...]  # bundle-relative .py files of the bundle's own modules that init imports
    dependencies: tuple[DependencyImport, ...]  # their module-level dependency imports, sorted


def _files_for(modules: Mapping[str, ModuleInfo], module: str, names: Sequence[str] = ()) -> list[str]:
    """The files an import executes: every package __init__ along the path, the module, and for
    `from M import N` the submodule M.N when N is one."""
    parts = module.split(".")
    paths = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
    files = [modules[path].file for path in paths if path in modules]
    files.extend(modules[f"{module}.{name}"].file for name in names if f"{module}.{name}" in modules)
    return files


def init_imports(
    modules: Mapping[str, ModuleInfo], roots: Iterable[str], stdlib: frozenset[str]
) -> InitImports:
    """The static init closure of `roots` (module names) over the bundle's `modules`: the files it runs and
    the dependency imports they make at module level (optional ones too: they run, and may succeed)."""
    own_tops = {name.split(".")[0] for name in modules}
    files: set[str] = set()
    dependencies: set[DependencyImport] = set()
    todo = [file for root in roots for file in _files_for(modules, root)]
    by_file = {info.file: info for info in modules.values()}
    while todo:
        file = todo.pop()
        if file in files:
            continue
        files.add(file)
        for site in by_file[file].sites:
            if site.lazy or site.type_checking or not site.module:
                continue
            top = site.module.split(".")[0]
            if top in own_tops:
                todo.extend(_files_for(modules, site.module, site.names))
            elif top not in stdlib:
                dependencies.add((site.module, ("*",) if site.star else site.names))
    return InitImports(tuple(sorted(files)), tuple(sorted(dependencies)))


def imports_digest(layer_key: str, dependencies: Sequence[DependencyImport]) -> str:
    data = json.dumps(
        {
            "format": BYTECODE_FORMAT,
            "layer": layer_key,
            "python": sys.version,
            "magic": importlib.util.MAGIC_NUMBER.hex(),
            "imports": [[module, list(names)] for module, names in dependencies],
        },
        sort_keys=True,
    )
    return hashlib.sha256(data.encode()).hexdigest()


def dependency_modules(layer: layers.DependencyLayer, dependencies: Sequence[DependencyImport]) -> list[str]:
    """The layer-relative module files `dependencies` load, each with its .pyc in `layer.pyc_cache`: from the
    layer's record of this import set, or found (and recorded) by running the imports now."""
    if not dependencies:
        return []
    record = layer.pyc_cache / "imports" / f"{imports_digest(layer.key, dependencies)}.json"
    if record.is_file():
        loaded: list[str] = json.loads(record.read_text())["loaded"]
        if all((layer.pyc_cache / importlib.util.cache_from_source(r)).is_file() for r in loaded):
            return loaded
    imports = json.dumps([[module, list(names)] for module, names in dependencies])
    command = [sys.executable, "-I", "-S", "-B", str(COMPILE_SCRIPT), str(layer.tree), str(layer.pyc_cache)]
    proc = subprocess.run(
        [*command, imports],
        capture_output=True,
        text=True,
        cwd=layer.tree,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONHASHSEED": "0",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        timeout=COMPILE_TIMEOUT_SECONDS,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        names = ", ".join(module for module, _names in dependencies)
        raise BytecodeError(
            f"importing the dependencies {names} to compile their bytecode crashed the interpreter "
            f"(exit {proc.returncode}): {proc.stderr[-1500:]}"
        )
    loaded = json.loads(lines[-1])["loaded"]
    # Recorded with the failures too: they are a property of the layer, and verification reports them.
    write_atomic(str(record), json.dumps({"loaded": loaded, "imports": json.loads(imports)}).encode())
    return loaded


def _link(source: Path, dest: Path, made: set[Path]) -> None:
    if dest.parent not in made:
        dest.parent.mkdir(parents=True, exist_ok=True)
        made.add(dest.parent)
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        dest.write_bytes(source.read_bytes())


def write_bytecode(
    bundle: Path,
    layer: layers.DependencyLayer,
    modules: Mapping[str, ModuleInfo],
    roots: Iterable[str],
    stdlib: frozenset[str],
    lazy_dependencies: Iterable[DependencyImport] = (),
) -> list[str]:
    """Write the unchecked-hash .pyc of what `roots` import at init, and of what `lazy_dependencies` load,
    into `bundle`; returns the bundle-relative .py files that got one. Dependency .pyc are hard links to the
    layer's cache (the zip writer then uses their pre-deflated entries); a file the build wrote over a layer
    file is not taken from the cache."""
    wanted = init_imports(modules, roots, stdlib)
    dependencies = tuple(sorted({*wanted.dependencies, *lazy_dependencies}))
    done: list[str] = []
    for relative in wanted.files:
        source = bundle / relative
        try:
            data = pyc_data(source.read_bytes(), relative)
        except (OSError, SyntaxError, ValueError):
            continue  # a module that does not compile: verification names it and its function
        target = bundle / importlib.util.cache_from_source(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # never written through a link
        target.write_bytes(data)
        done.append(relative)
    own = set(wanted.files)
    made: set[Path] = set()
    for relative in dependency_modules(layer, dependencies):
        if relative in own:
            continue
        try:
            if not os.path.samefile(bundle / relative, layer.tree / relative):
                continue
        except OSError:
            continue
        pyc = importlib.util.cache_from_source(relative)
        _link(layer.pyc_cache / pyc, bundle / pyc, made)
        done.append(relative)
    return sorted(done)
