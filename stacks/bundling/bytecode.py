"""Which modules get precompiled bytecode, and writing it: a function of the inputs, cheap after an edit.

Bytecode shortens a cold start for what init imports only; compiling every installed module (boto3's,
tests', unused extras') nearly doubles the zip for no start-up gain. "What init imports" comes in two
parts, so that a source-only change never runs the handlers:

* the bundle's own modules (source and extra files such as the probe wrapper): the static init closure of
  the bytecode modules (module-level imports outside TYPE_CHECKING, followed through the bundle's
  modules), compiled here from source;
* dependency modules: what that closure's dependency imports, and the functions' lazy ones (run on the
  first request that needs them and by every verification and probe), load in a fresh `-I -S`
  interpreter against the dependency layer alone (compile_imported.py). Without bytecode, every cold
  start compiles them (botocore alone takes about a second; Lambda's /var/task is read-only). That set
  depends on the layer, the import names and the Python only, so the layer records it under a digest of
  the three, and its .pyc in its tree (where verification and the local API use them too): a source edit
  importing the same dependencies starts no interpreter.

A clean build and a layered one go through the same steps, so they give the same bytes. Not seen: modules
first imported while the handlers' module-level code runs (an app constructor importing an optional extra)
or by `importlib.import_module` with a computed name. Those compile once per sandbox at cold start, as
without precompiled bytecode: a cost in start-up time, never a failure.
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

from stacks.bundling import import_closure, layers, zipwrite
from stacks.bundling.compile_imported import IMPORTING, pyc_data, write_atomic
from stacks.bundling.import_reader import ModuleInfo

# Bump when the rules for which modules get bytecode change (part of the cached import sets' digest).
BYTECODE_FORMAT = "3"
COMPILE_SCRIPT = Path(__file__).resolve().with_name("compile_imported.py")
COMPILE_TIMEOUT_SECONDS = 300

# (module, names): `from module import names`, or `import module` when names is empty.
DependencyImport = tuple[str, tuple[str, ...]]


class BytecodeError(Exception):
    pass


def init_imports(
    modules: Mapping[str, ModuleInfo], roots: Iterable[str], stdlib: frozenset[str]
) -> tuple[list[str], list[DependencyImport]]:
    """The static init closure of `roots` (module names) over the bundle's `modules`, walked as the import
    check walks a handler's (import_closure.Resolver.reach): the bundle-relative files it runs and the
    dependency imports they make at module level (optional ones too: they run, and may succeed), both
    sorted."""
    # No file listing: it only adds namespace folders, and the modules' names already give every top-level
    # name of the bundle. No installed set: whatever is neither the bundle's nor the standard library's is
    # a dependency here.
    resolver = import_closure.Resolver(modules, (), stdlib, None)
    files: set[str] = set().union(*(resolver.reach(root, lazy=False) for root in roots))
    dependencies = {
        (site.module, ("*",) if site.star else site.names)
        for file in files
        for site in resolver.by_file[file].sites
        if site.module
        and not (site.lazy or site.type_checking)
        and resolver.kind(site.module) == "dependency"
    }
    return sorted(files), sorted(dependencies)


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


def prefetch(
    layer: layers.DependencyLayer,
    modules: Mapping[str, ModuleInfo],
    roots: Iterable[str],
    stdlib: frozenset[str],
    lazy_dependencies: Iterable[DependencyImport] = (),
) -> tuple[list[str], str, list[str]]:
    """(init's own files, then dependency_modules' digest and loaded files for init's dependency imports
    and the lazy ones): write_bytecode's first step, which a build also runs ahead, while a new layer
    deflates (layers.py)."""
    files, init = init_imports(modules, roots, stdlib)
    return files, *dependency_modules(layer, sorted({*init, *lazy_dependencies}))


def dependency_modules(
    layer: layers.DependencyLayer, dependencies: Sequence[DependencyImport]
) -> tuple[str, list[str]]:
    """(digest, tree-relative module files) of what `dependencies` load, each with its .pyc in the layer's
    tree: from the layer's record of this import set, or found (and recorded) by running the imports now.
    A record whose .pyc went missing (a partly cleared cache) is made again.

    One interpreter runs init's imports and the lazy ones together. Two side by side (one per group) start
    and load the standard library twice, and measured no faster on a cold build, where this runs while the
    layer's entries deflate on the same cores; after an edit the .pyc already in the tree are loaded, not
    compiled."""
    digest = imports_digest(layer.key, dependencies)
    if not dependencies:
        return digest, []
    record = layer.records / f"{digest}.json"
    if record.is_file():
        loaded: list[str] = json.loads(record.read_text())["loaded"]
        if all((layer.tree / importlib.util.cache_from_source(r)).is_file() for r in loaded):
            return digest, loaded
    loaded = _compile(layer.tree, dependencies)
    imports = [[module, list(names)] for module, names in dependencies]
    # Recorded with the failures too: they are a property of the layer, and verification reports them.
    write_atomic(str(record), json.dumps({"loaded": loaded, "imports": imports}).encode())
    return digest, loaded


def _compile(tree: Path, dependencies: Sequence[DependencyImport]) -> list[str]:
    """The tree-relative module files `dependencies` load, in a fresh interpreter that imports them and
    compiles what they load into `tree` (compile_imported.py)."""
    shown = ", ".join(dict.fromkeys(module for module, _names in dependencies))
    imports = json.dumps([[module, list(names)] for module, names in dependencies])
    try:
        process = subprocess.run(
            [sys.executable, "-I", "-S", "-B", str(COMPILE_SCRIPT), str(tree), imports],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=tree,
            env={
                "PATH": os.environ.get("PATH", ""),
                "PYTHONHASHSEED": "0",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
            timeout=COMPILE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed the interpreter
        raise BytecodeError(
            f"importing the dependencies {shown} to compile their bytecode took over "
            f"{COMPILE_TIMEOUT_SECONDS} s{_in_import(exc.stderr)}: an import that waits on the network or a "
            "lock?"
        ) from exc
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if not lines:
        said = "\n".join(line for line in process.stderr.splitlines() if not line.startswith(IMPORTING))
        raise BytecodeError(
            f"importing the dependencies {shown} to compile their bytecode crashed the interpreter "
            f"(exit {process.returncode}){_in_import(process.stderr)}: {said[-1500:]}"
        )
    loaded: list[str] = json.loads(lines[-1])["loaded"]
    return loaded


def _in_import(stderr: str | bytes | None) -> str:
    """ ", in `module`" for the import the interpreter was in (its last IMPORTING line), or ""."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr or ""
    started = [line.removeprefix(IMPORTING) for line in text.splitlines() if line.startswith(IMPORTING)]
    return f", in `{started[-1]}`" if started else ""


@dataclass(frozen=True)
class Written:
    """What write_bytecode wrote into a bundle."""

    own: tuple[str, ...]  # bundle-relative .py files of the bundle's own modules compiled into it
    pyc_store: zipwrite.Store | None  # the dependency .pyc the bundle's zip takes from the layer

    @property
    def files(self) -> list[str]:
        return sorted({*self.own, *(e.name for e in (self.pyc_store.entries if self.pyc_store else ()))})


def write_bytecode(
    bundle: Path,
    layer: layers.DependencyLayer,
    modules: Mapping[str, ModuleInfo],
    roots: Iterable[str],
    stdlib: frozenset[str],
    lazy_dependencies: Iterable[DependencyImport] = (),
) -> Written:
    """Write the unchecked-hash .pyc of the bundle's own modules that `roots` import at init into `bundle`,
    and find (compiling into the layer's tree when new) those of the dependency modules they, and
    `lazy_dependencies`, load: the Store of their zip entries."""
    files, digest, loaded = prefetch(layer, modules, roots, stdlib, lazy_dependencies)
    pyc_store = layer.pyc_store(digest, loaded) if loaded else None
    own: list[str] = []
    for relative in files:
        try:
            data = pyc_data((bundle / relative).read_bytes(), relative)
        except (OSError, SyntaxError, ValueError):
            continue  # a module that does not compile: verification names it and its function
        write_atomic(str(bundle / importlib.util.cache_from_source(relative)), data)  # replaces a link
        own.append(relative)
    return Written(tuple(own), pyc_store)
