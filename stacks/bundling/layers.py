"""The dependency layer: installed, pruned, stripped dependencies and their zip entries, built once per key.

A source edit is the common change, and it leaves the dependencies as they were. So the bundle is built in
two layers: this one, keyed by everything that shapes the installed tree (the lock or requirements content,
runtime, architecture, installer, strip tool, dependency excludes, layer format), and the source on top. A
layer holds:

* `tree/`: the installed tree (files are hard-linked into each bundle: no 100 MB copy);
* `entries.bin` + `index.json`: every file's zip entry, deflated once (zipwrite); a bundle's zip copies them
  as they are;
* `pyc/`: per compiling Python, the unchecked-hash .pyc of dependency modules that some build's init
  imports load, and `imports/<digest>.json`: which modules one set of dependency imports loads (see
  bytecode.py). A dependency file never changes inside a layer and its .pyc depends on its bytes, path and
  the compiling Python only, so it is written once and hard-linked into every bundle that needs it.
  `sets/<digest>/`: the zip entries of one such set's .pyc, deflated once (a `PycSet`), which a bundle's
  zip copies as they are, like the layer's own.

A layer is written in a work folder and renamed into place in one step, so an interrupted build never
leaves a layer that looks complete; concurrent builds of one key keep whichever finished first.

* `spares/`: complete copies of `tree/` as hard links, made in the background (a process of its own)
  after a build, each taken by
  the next bundle on this layer with one rename. Linking a tree is thousands of `mkdir` and `link` calls,
  the largest part of a source-only rebuild (and much slower while the file system is busy); made ahead,
  it leaves the edit loop. A spare is renamed into `spares/` only once complete, and a bundle takes it by
  renaming it away, so a spare is never shared, never half-made, and never written into before it is taken.
  A spare made after a build that used a `PycSet` has that set's .pyc linked in too, and its name ends in
  the set's digest: the next build, which most likely imports the same dependencies, links none.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stacks.bundling import bundle_cache, zipwrite
from stacks.bundling.source_cache import FileResults

# Bump when the layer's layout or content rules change.
LAYER_FORMAT = "1"
SPARE_PREFIX = "ready-"
# A half-made spare older than this belongs to a process that ended while linking it.
STALE_SPARE_SECONDS = 3600


@dataclass(frozen=True)
class PycSet:
    """The dependency .pyc one set of imports loads (bytecode.py), with their zip entries deflated once."""

    digest: str
    path: Path
    store: zipwrite.Store

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.store.entries]


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
    def blob_path(self) -> Path:
        return self.path / "entries.bin"

    @functools.cached_property  # asked for each of hundreds of .pyc in a build
    def pyc_cache(self) -> Path:
        # The compiling interpreter's exact version: bytecode may differ between patch releases.
        version = ".".join(str(v) for v in sys.version_info[:3])
        return self.path / "pyc" / f"{version}-{importlib.util.MAGIC_NUMBER.hex()}"

    def link_into(self, bundle: Path) -> None:
        """Hard-link every file of the layer into `bundle` (copy where links are impossible)."""
        _link_tree(self.tree, (entry.name for entry in self.entries), bundle)

    @property
    def spares(self) -> Path:
        return self.path / "spares"

    def take_spare(self, dest: Path) -> str | None:
        """Move a ready linked tree to `dest` (which must not exist). Returns the digest of the PycSet linked
        into it ("" for none), or None when there is no spare to take."""
        for spare in ready_spares(self.path):
            try:
                os.rename(spare, dest)  # atomic: a concurrent build cannot take the same one
            except OSError:
                continue
            return spare_pyc_set(spare)
        return None

    def pyc_set_folder(self, digest: str) -> Path:
        return self.pyc_cache / "sets" / digest

    def stored_pyc_set(self, digest: str) -> PycSet | None:
        """The PycSet of `digest` when a build made it, else None."""
        folder = self.pyc_set_folder(digest)
        try:
            entries = tuple(zipwrite.load_index(folder / "index.json"))
        except FileNotFoundError:
            return None
        return PycSet(digest, folder, zipwrite.Store(entries, folder / "entries.bin"))

    def pyc_set(self, digest: str, relatives: Sequence[str]) -> PycSet:
        """The PycSet of `digest` (bytecode.imports_digest) for the layer-relative `relatives`, whose .pyc
        are in `pyc_cache`; its entries are deflated now when no build made them before."""
        folder = self.pyc_set_folder(digest)
        if not (folder / "index.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=folder.parent))
            try:
                pycs = sorted(importlib.util.cache_from_source(r) for r in relatives)
                zipwrite.store_entries(
                    [(name, self.pyc_cache / name) for name in pycs],
                    work / "entries.bin",
                    work / "index.json",
                )
                if not (folder / "index.json").is_file():
                    shutil.rmtree(folder, ignore_errors=True)  # leftovers of a deleted set
                    with contextlib.suppress(OSError):  # lost to a concurrent build's: the same bytes
                        os.replace(work, folder)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        made = self.stored_pyc_set(digest)
        if made is None:
            raise FileNotFoundError(f"{folder / 'index.json'} went away while it was being read")
        return made

    def link_pyc_set(self, pyc_set: PycSet, bundle: Path) -> None:
        """Hard-link the set's .pyc into `bundle` (over any file of the same name). FileNotFoundError: the
        cache lost one of them (a partly cleared cache)."""
        made: set[str] = set()
        cache = str(self.pyc_cache)
        target = str(bundle)
        for name in pyc_set.names:
            parent = name.rpartition("/")[0]
            if parent not in made:
                os.makedirs(os.path.join(target, parent), exist_ok=True)
                made.add(parent)
            dest = os.path.join(target, name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dest)
            try:
                os.link(os.path.join(cache, name), dest)
            except OSError:
                shutil.copyfile(os.path.join(cache, name), dest)

    def make_spare(self, pyc_set: str = "") -> None:
        """Link one spare tree (with the .pyc of the PycSet of digest `pyc_set`, when it exists), unless one
        is ready; stale half-made ones (a process that ended while linking) are removed."""
        making = self.spares / f".making-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            if not (self.path / "meta.json").is_file():
                return  # the layer was deleted (a cache cleared): nothing to link, nothing to recreate
            self.spares.mkdir(exist_ok=True)
            now = time.time()
            for entry in self.spares.iterdir():
                if entry.name.startswith(SPARE_PREFIX):
                    return
                if entry.name.startswith(".making-") and now - entry.stat().st_mtime > STALE_SPARE_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
            making.mkdir()
            self.link_into(making)
            name = f"{SPARE_PREFIX}{uuid.uuid4().hex}"
            stored = self.stored_pyc_set(pyc_set) if pyc_set else None
            if stored is not None:
                self.link_pyc_set(stored, making)
                name += f".{pyc_set}"
            os.rename(making, self.spares / name)
        except OSError:  # the layer went away meanwhile, or the disk is full: the next build links itself
            shutil.rmtree(making, ignore_errors=True)

    def make_spare_in_background(
        self, pyc_set: str = "", prune: Path | None = None
    ) -> subprocess.Popen[bytes] | None:
        """make_spare in a process of its own, at idle priority: thousands of link calls would otherwise
        hold this process's GIL while synth builds its stacks. Nothing waits for it; if it is killed, a
        later make_spare removes its half-made folder. `prune`: a bundle cache folder the same process then
        prunes (bundle_cache.py), off the edit loop too."""
        command = [sys.executable, "-S", "-c", _SPARE_SCRIPT, str(_REPO_ROOT), str(self.path), pyc_set]
        command.append(str(prune) if prune is not None else "")
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            return None  # the next build links its tree itself
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(proc.pid, os.SCHED_IDLE, os.sched_param(0))
        return proc

    def write_zip(
        self,
        zip_path: Path,
        bundle: Path,
        *,
        replaced: Sequence[str],
        written: Sequence[str] | None = None,
        results: FileResults | None = None,
        pyc_set: PycSet | None = None,
    ) -> tuple[int, int]:
        """The bundle's zip: the layer's entries as stored, merged with the files this build wrote.

        `bundle` holds the layer's files (linked) plus the build's own: every file not in the layer, and
        the layer names in `replaced`, is deflated now. `written`: every bundle-relative file the build
        wrote, when the caller knows them (then the folder is not walked); None: walk it. `results`: zip
        entries kept from the last build (source_cache.py). `pyc_set`: dependency .pyc linked into the
        bundle, whose stored entries are copied like the layer's. Returns (zip size, unzipped size).
        """
        stores = [zipwrite.Store(self.entries, self.blob_path)]
        if pyc_set is not None:
            stores.append(pyc_set.store)
        stored = {e.name for store in stores for e in store.entries}
        again = set(replaced)
        if written is None:
            files = relative_files(bundle)
            missing = stored - {name for name, _p in files}
            if missing:
                raise FileNotFoundError(f"{bundle} lost files of its dependency layer: {sorted(missing)[:5]}")
        else:
            top = str(bundle)
            files = [(name, os.path.join(top, name)) for name in sorted(set(written))]
        new = zipwrite.NewEntries()
        own = [(name, Path(path)) for name, path in files if name not in stored or name in again]
        new.add_files(own, results)
        zipped = zipwrite.write_merged(zip_path, stores, new, replaced=again)
        sizes = {e.name: e.size for store in stores for e in store.entries if e.name not in again}
        sizes.update({e.name: e.size for e in new.entries})
        return zipped, sum(sizes.values())


_REPO_ROOT = Path(__file__).resolve().parents[2]
# Run as `python -S -c _SPARE_SCRIPT REPO_ROOT LAYER_PATH PYC_SET_DIGEST CACHE_DIR_TO_PRUNE`.
_SPARE_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from stacks.bundling.bundle_cache import prune_cache
from stacks.bundling.layers import DependencyLayer
from stacks.bundling.zipwrite import load_index
path = Path(sys.argv[2])
try:
    entries = tuple(load_index(path / "index.json"))
except OSError:
    entries = None
if entries is not None:
    DependencyLayer(path, path.name, entries, (), built=False).make_spare(sys.argv[3])
if sys.argv[4]:
    prune_cache(Path(sys.argv[4]))
"""


def ready_spares(layer_dir: Path) -> list[Path]:
    """The complete spare trees of the layer in `layer_dir`, oldest name first ([] when none)."""
    try:
        return sorted(p for p in (layer_dir / "spares").iterdir() if p.name.startswith(SPARE_PREFIX))
    except OSError:
        return []


def spare_pyc_set(spare: Path) -> str:
    """The digest of the PycSet linked into a spare (its name's suffix), "" for none."""
    return spare.name.partition(".")[2]


def _link_tree(tree: Path, names: Iterable[str], bundle: Path) -> None:
    made: set[str] = set()
    source_root = str(tree)
    target = str(bundle)
    for name in names:
        parent, _, _name = name.rpartition("/")
        if parent and parent not in made:
            os.makedirs(os.path.join(target, parent), exist_ok=True)
            made.add(parent)
        source = os.path.join(source_root, name)
        dest = os.path.join(target, name)
        try:
            os.link(source, dest)
        except OSError:
            shutil.copy2(source, dest)


def layer_key(parts: Sequence[tuple[str, str | bytes]]) -> str:
    digest = hashlib.sha256()
    for label, value in (("layer-format", LAYER_FORMAT), *parts):
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
    link: Path | None = None,
) -> DependencyLayer:
    """The layer for `key_parts`, built with `build_tree(folder) -> notices` only when none exists.

    `meanwhile(layer)` runs while the new layer's entries are deflated, on the layer in its work folder
    (its tree complete, its `pyc/` cache empty): what it writes there moves with the layer. Deflating takes
    both cores in short bursts that release the GIL, and compiling the dependencies' bytecode is a process
    of its own, so the two overlap well. It is an optimisation: what it raises is ignored.
    `link`: a folder (that must not exist) to link a newly built layer's tree into, meanwhile too; a layer
    found in the cache links nothing (`built` tells which)."""
    key = layer_key(key_parts)
    final = cache_dir / "layers" / f"deps-{key}"
    meta_path = final / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        bundle_cache.mark_used(final)
        return DependencyLayer(
            final, key, tuple(zipwrite.load_index(final / "index.json")), tuple(meta["notices"]), built=False
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".deps-{key[:12]}-", dir=final.parent))
    try:
        tree = work / "tree"
        tree.mkdir()
        notices = build_tree(tree)
        files = [(name, Path(path)) for name, path in relative_files(tree)]
        with ThreadPoolExecutor(max_workers=2) as side:
            if meanwhile is not None:
                side.submit(meanwhile, DependencyLayer(work, key, (), tuple(notices), built=True))
            if link is not None:  # thousands of mkdir and link calls, mostly waiting on the file system
                link.mkdir()
                linked = side.submit(_link_tree, tree, [name for name, _path in files], link)
            entries = zipwrite.store_entries(files, work / "entries.bin", work / "index.json")
            if link is not None:
                linked.result()
        (work / "meta.json").write_text(json.dumps({"notices": notices, "files": len(files)}))
        if (final / "meta.json").is_file():  # a concurrent build finished first; same inputs
            shutil.rmtree(work)
            entries = zipwrite.load_index(final / "index.json")
        else:
            if final.exists():
                # No layer, only leftovers (a spare linked while the layer was being deleted): set aside.
                stale = final.with_name(f".stale-{uuid.uuid4().hex}")
                os.rename(final, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return DependencyLayer(final, key, tuple(entries), tuple(notices), built=True)
