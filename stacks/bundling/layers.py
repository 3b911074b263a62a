"""The dependency layer: installed, pruned, stripped dependencies and their zip entries, built once per key.

A source edit is the common change, and it leaves the dependencies as they were. So a bundle is two
layers: this one, keyed by everything that shapes the installed tree (input_hash.dependency_key), and the
bundle's own files (source, extra files, build_info.json, their bytecode) in a folder of their own. Run
with the bundle folder first on sys.path and this layer's tree second, the pair is what Lambda's /var/task
holds when the two share no top-level name (build.py links the tree into the bundle folder when they do).
A layer holds, each part built once under its lock (bundle_cache.publish):

* `tree/`: the installed tree. Dependency `.pyc` are written into its `__pycache__` folders (bytecode.py):
  a dependency file never changes inside a layer, and its `.pyc` depends only on its bytes, its path and
  the compiling Python, so verification and the local API run them too;
* `entries.bin` + `index.json`: every installed file's zip entry, deflated once (zipwrite);
* `pyc/<python>/<digest>.json` and `pyc/<python>/<digest>/`: which dependency modules one set of dependency
  imports loads, and their `.pyc`'s zip entries deflated once (`DependencyLayer.pyc_store`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stacks.bundling import bundle_cache, zipwrite


@dataclass(frozen=True)
class DependencyLayer:
    path: Path
    key: str
    entries: tuple[zipwrite.Entry, ...]
    notices: tuple[str, ...]
    built: bool  # False: reused from an earlier build (nothing installed, stripped or deflated)

    @property
    def tree(self) -> Path:
        return self.path / "tree"

    @property
    def store(self) -> zipwrite.Store:
        return zipwrite.Store(self.entries, self.path / "entries.bin")

    @property
    def records(self) -> Path:
        """Where the import sets of the compiling interpreter (its exact version) are recorded."""
        version = ".".join(str(v) for v in sys.version_info[:3])
        return self.path / "pyc" / f"{version}-{importlib.util.MAGIC_NUMBER.hex()}"

    def link_into(self, bundle: Path) -> None:
        """Hard-link every installed file of the layer into `bundle` (copy where links are impossible)."""
        for parent in sorted({entry.name.rpartition("/")[0] for entry in self.entries} - {""}):
            os.makedirs(bundle / parent, exist_ok=True)
        for entry in self.entries:
            try:
                os.link(self.tree / entry.name, bundle / entry.name)
            except OSError:
                shutil.copy2(self.tree / entry.name, bundle / entry.name)

    def pyc_store(self, digest: str, relatives: Sequence[str]) -> zipwrite.Store:
        """The zip entries of the .pyc of the tree-relative `relatives` (in the tree), the import set
        `digest` (bytecode.imports_digest) loads: deflated now when no build made them before."""
        folder = self.records / digest
        pycs = [(name, self.tree / name) for name in sorted(map(importlib.util.cache_from_source, relatives))]
        # Held like a bundle, so a pruner never deletes it while a zip is written from it.
        bundle_cache.publish(
            folder,
            lambda w: zipwrite.store_entries(pycs, w / "entries.bin", w / "index.json"),
            usable=lambda: zipwrite.intact(folder / "entries.bin"),
        )
        entries = zipwrite.load_index(folder / "index.json")
        return zipwrite.Store(entries, folder / "entries.bin")


def layer_key(parts: Sequence[tuple[str, str | bytes]]) -> str:
    digest = hashlib.sha256()
    for label, value in parts:
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)
    return digest.hexdigest()


def relative_files(directory: Path) -> list[tuple[str, str]]:
    """Every file under `directory` as (relative POSIX path, path), sorted (plain strings: thousands)."""
    found = []
    top = str(directory)
    cut = len(top) + 1
    for root, _dirs, files in os.walk(top):
        prefix = root[cut:].replace(os.sep, "/")
        for name in files:
            found.append((f"{prefix}/{name}" if prefix else name, os.path.join(root, name)))
    return sorted(found)


def dependency_layer(
    cache_dir: Path,
    key_parts: Sequence[tuple[str, str | bytes]],
    build_tree: Callable[[Path], list[str]],
    meanwhile: Callable[[DependencyLayer], None] | None = None,
) -> DependencyLayer:
    """The layer for `key_parts` (held for this process), built with `build_tree(folder) -> notices` only
    when none exists.

    `meanwhile(layer)` runs while the new layer's entries are deflated, on the layer in its work folder
    (its tree complete): what it writes there moves with the layer. Deflating takes the cores in short bursts
    that release the GIL, and compiling the dependencies' bytecode is a process of its own, so the two
    overlap. It is an optimisation: what it raises is ignored."""
    key = layer_key(key_parts)
    final = cache_dir / "layers" / f"deps-{key}"

    def make(work: Path) -> None:
        (work / "tree").mkdir()
        notices = build_tree(work / "tree")
        files = [(name, Path(path)) for name, path in relative_files(work / "tree")]
        with ThreadPoolExecutor(max_workers=1) as side:
            if meanwhile is not None:
                side.submit(meanwhile, DependencyLayer(work, key, (), tuple(notices), built=True))
            zipwrite.store_entries(files, work / "entries.bin", work / "index.json")
        (work / "meta.json").write_text(json.dumps({"notices": notices, "files": len(files)}))

    built = bundle_cache.publish(final, make, usable=lambda: zipwrite.intact(final / "entries.bin"))
    notices = json.loads((final / "meta.json").read_text())["notices"]
    entries = zipwrite.load_index(final / "index.json")
    return DependencyLayer(final, key, tuple(entries), tuple(notices), built)


def top_level(names: Iterable[str]) -> set[str]:
    """The top-level import names (and root files) of bundle-relative paths, `__pycache__` aside."""
    return {name.split("/")[0] for name in names} - {"__pycache__"}
