"""Runs INSIDE the target interpreter: `python3.X -I -S -B compile_imported.py TREE IMPORTS_JSON`.

Runs the dependency imports of the bundle's own modules (IMPORTS_JSON: `[[module, [names]], ...]`, each as
`from module import names` / `import module`) against TREE, the dependency layer's installed tree alone (a
fresh `-I -S` interpreter, as on Lambda), and for every module file of TREE they load writes beside it the
unchecked-hash `.pyc` Lambda would use on its read-only /var/task; one already there is loaded, not
compiled again (see `pyc_data`). Importing the dependencies rather than the handlers makes the result a
function of the layer and the import names alone, which a source edit does not change (bytecode.py). An
import that fails is not an error here: synth-time verification reports it with the function and a hint.
Prints one JSON line: the TREE-relative paths of the module files loaded. Standard library only (the
bundler imports `pyc_data` from here too).
"""

import contextlib
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

# The line written to stderr before each import (bytecode.py names the import a crash or hang was in).
IMPORTING = "credmate-compile: importing "

_HASH_BASED_UNCHECKED = (1).to_bytes(4, "little")  # PEP 552 flags: hash-based, do not check the source
# marshal marks interned strings as such, and the empty and one-character (Latin-1) strings are shared
# singletons, interned or not depending on what the process did before: `"?"` in a constant would get a
# different mark in a fresh interpreter and in one that imported a module using it as a name. Interning
# them all once, here, makes the mark the same in every process (cheaper than walking each code object for
# the ones it holds); everything else marshal writes is the code's own (its back-references depend only on
# the code, interned strings always being referenced; sets are written sorted since 3.11, the oldest runtime
# the config accepts). The bytes are then a function of the source, the path and the Python alone (a
# test compiles them in a fresh and in a busy interpreter).
for _char in ("", *map(chr, range(256))):
    sys.intern(_char)


def pyc_data(source: bytes, relative: str) -> bytes:
    """The unchecked-hash .pyc of `source` at /var/task/`relative`, as `compileall -s BUNDLE -p /var/task
    --invalidation-mode unchecked-hash` would write it (with the reference marks above).
    Raises SyntaxError/ValueError for a file that does not compile."""
    code = compile(source, "/var/task/" + relative, "exec", dont_inherit=True, optimize=0)
    return (
        importlib.util.MAGIC_NUMBER
        + _HASH_BASED_UNCHECKED
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def write_atomic(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"  # unique: concurrent builds may fill the same shared cache
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


class _CachingLoader(importlib.machinery.SourceFileLoader):
    tree = ""
    loaded: list[str] = []

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        relative = os.path.relpath(path, self.tree).replace(os.sep, "/")
        cached = importlib.util.cache_from_source(path)
        if os.path.isfile(cached):
            with open(cached, "rb") as handle:
                data = handle.read()
        else:
            data = pyc_data(self.get_data(path), relative)
            write_atomic(cached, data)
        self.loaded.append(relative)
        code: types.CodeType = marshal.loads(data[16:])
        return code


def _tree_hook(tree: str) -> Callable[[str], importlib.abc.PathEntryFinder]:
    """A path hook for folders inside the tree only; the standard library keeps its own finders."""
    make_finder = importlib.machinery.FileFinder.path_hook(
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (_CachingLoader, importlib.machinery.SOURCE_SUFFIXES),
    )

    def hook(path: str) -> importlib.abc.PathEntryFinder:
        if os.path.abspath(path) == tree or os.path.abspath(path).startswith(tree + os.sep):
            return make_finder(path)
        raise ImportError("not in the tree")

    return hook


def main() -> None:
    tree = os.path.abspath(sys.argv[1])
    _CachingLoader.tree = tree
    imports = json.loads(sys.argv[2])
    sys.dont_write_bytecode = True  # only our unchecked-hash files, never the import system's own
    sys.path_hooks.insert(0, _tree_hook(tree))
    sys.path.insert(0, tree)
    sys.path_importer_cache.clear()
    for module, names in imports:
        # Said first, so a crash or a hang names the import it happened in (bytecode.py reads the last one).
        sys.stderr.write(f"{IMPORTING}{module}\n")
        sys.stderr.flush()
        # Exactly `from module import names` (or `import module`); a module may raise anything at import.
        with contextlib.suppress(BaseException):
            __import__(module, fromlist=names)
    sys.stdout.write("\n" + json.dumps({"loaded": sorted(set(_CachingLoader.loaded))}) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: atexit hooks of imported modules are not ours to run


if __name__ == "__main__":
    main()
