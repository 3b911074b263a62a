"""Runs INSIDE the target interpreter: `python3.X -I -S -B compile_imported.py BUNDLE MODULE [MODULE ...]`.

Imports each MODULE from BUNDLE (a fresh `-I -S` interpreter, as on Lambda) and, for every module file of the
bundle that this import loads, writes the unchecked-hash `.pyc` Lambda would use on its read-only /var/task.
Why only those: the bytecode that shortens a cold start is the bytecode of what init imports; compiling every
installed module (boto3's, tests', unused extras') nearly doubles the zip for no start-up gain. What a request
imports later is compiled once per sandbox, in memory.

Each module is compiled exactly once, from its source, with `co_filename` set to its /var/task path, as
`compileall -s BUNDLE -p /var/task --invalidation-mode unchecked-hash` would. With CREDMATE_PYC_LAYER (the
dependency layer's tree) and CREDMATE_PYC_CACHE set, a module file that is still the layer's own (a hard
link to it) takes its .pyc from the cache when an earlier build compiled it, and leaves it there otherwise:
the .pyc of an unchanged file is the same bytes, so only the bundle's own modules are compiled again.
A module that fails to import is not an error here: synth-time verification reports it with the function
and a hint. Prints one JSON line: the relative paths compiled and the modules that failed. Standard library
only.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import marshal
import os
import sys
import types
from collections.abc import Callable

_HASH_BASED_UNCHECKED = (1).to_bytes(4, "little")  # PEP 552 flags: hash-based, do not check the source


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"  # unique: concurrent builds may fill the same shared cache
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


class _CompilingLoader(importlib.machinery.SourceFileLoader):
    bundle = ""
    layer = os.environ.get("CREDMATE_PYC_LAYER", "")
    pyc_cache = os.environ.get("CREDMATE_PYC_CACHE", "")
    compiled: list[str] = []

    def _shared(self, path: str, relative: str) -> bool:
        if not (self.layer and self.pyc_cache):
            return False
        try:
            return os.path.samefile(path, os.path.join(self.layer, relative))
        except OSError:
            return False

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        relative = os.path.relpath(path, self.bundle).replace(os.sep, "/")
        cache = importlib.util.cache_from_source(path)
        shared = self._shared(path, relative)
        cached = os.path.join(self.pyc_cache, os.path.relpath(cache, self.bundle)) if shared else ""
        if cached and os.path.isfile(cached):
            with open(cached, "rb") as handle:
                data = handle.read()
            # A hard link: no copy, and the zip writer sees the bundle's file is the cached one.
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            try:
                os.link(cached, cache)
            except OSError:
                _write(cache, data)
            self.compiled.append(relative)
            code: types.CodeType = marshal.loads(data[16:])
            return code
        source = self.get_data(path)
        code = compile(source, "/var/task/" + relative, "exec", dont_inherit=True)
        data = (
            importlib.util.MAGIC_NUMBER
            + _HASH_BASED_UNCHECKED
            + importlib.util.source_hash(source)
            + marshal.dumps(code)
        )
        _write(cache, data)
        if cached:
            _write(cached, data)
            try:  # the bundle's file becomes the cached one, as on later builds
                os.unlink(cache)
                os.link(cached, cache)
            except OSError:
                _write(cache, data)
        self.compiled.append(relative)
        return code


def _bundle_hook(bundle: str) -> Callable[[str], importlib.abc.PathEntryFinder]:
    """A path hook for folders inside the bundle only; the standard library keeps its own finders."""
    make_finder = importlib.machinery.FileFinder.path_hook(
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (_CompilingLoader, importlib.machinery.SOURCE_SUFFIXES),
    )

    def hook(path: str) -> importlib.abc.PathEntryFinder:
        if os.path.abspath(path) == bundle or os.path.abspath(path).startswith(bundle + os.sep):
            return make_finder(path)
        raise ImportError("not in the bundle")

    return hook


def main() -> None:
    bundle = os.path.abspath(sys.argv[1])
    _CompilingLoader.bundle = bundle
    sys.dont_write_bytecode = True  # only our unchecked-hash files, never the import system's own
    sys.path_hooks.insert(0, _bundle_hook(bundle))
    sys.path.insert(0, bundle)
    sys.path_importer_cache.clear()
    failed = {}
    for name in sys.argv[2:]:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a module may raise anything at import; verification reports it
            failed[name] = f"{type(exc).__name__}: {exc}"[:300]
    compiled = sorted(set(_CompilingLoader.compiled))
    sys.stdout.write("\n" + json.dumps({"compiled": compiled, "failed": failed}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: atexit hooks of imported modules are not ours to run


if __name__ == "__main__":
    main()
