"""The bundle cache's entries (bundles, dependency layers, their bytecode sets, sdist wheelhouses): who may
build, use and delete them, and how it stays bounded.

Every entry folder `NAME` has a lock file `NAME.lock` beside it (`flock`, released by the kernel when its
process ends, however it ends):

* using a complete entry holds a shared lock for as long as the process keeps it (`use`): a synth until it
  exits, `make local-api` while it serves that bundle;
* building one holds the exclusive lock (`building`, `publish`): a second build of the same inputs waits,
  then finds the first one's entry complete, so two builds never race to rename into one place;
* pruning takes each candidate's exclusive lock without waiting, so it skips whatever anything uses, and
  re-checks under the lock that the entry is still old before it deletes it.

An entry is published by renaming a finished work folder into place, so it is complete when its marker
file (MARKERS) is there, and the marker's mtime says when it was last used.

Pruning, at the end of a build and in the building process (nothing outlives the command), keeps each
folder's most recently used entries (the KEEP_* bounds; bytecode sets per layer and interpreter), every
layer a kept bundle is built on, and anything used in the last RECENT_SECONDS. uv's own cache is bounded by
size when a build has just added to it (bound_uv_cache).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Container, Iterator
from pathlib import Path

KEEP_BUNDLES = 12
KEEP_LAYERS = 3
KEEP_RECORDS = 256
KEEP_PYC_SETS = 8
KEEP_WHEELHOUSES = 16
KEEP_LOCAL_WHEELS = 16  # one per content of a local package: a few edits of a few packages
KEEP_PINS = 16
UV_CACHE_LIMIT_BYTES = 4 << 30  # about ten backends' worth of wheels for both architectures
# What a complete entry holds, written before its folder was renamed into place: a bundle or layer's
# meta.json, a bytecode set's index.json, a wheelhouse's manifest.json.
MARKERS = ("meta.json", "index.json", "manifest.json")
# The cache's folders of entries: what prune bounds, work folders of dead builds included.
_ENTRY_FOLDERS = ("bundles", "layers", "wheelhouse", "local-wheels", "manifests")
RECENT_SECONDS = 15 * 60  # about to be used again by a synth of the same inputs
ABANDONED_SECONDS = 24 * 3600  # work folders of builds that died

_held: dict[Path, int] = {}  # entry -> the descriptor holding its shared lock, for this process


def _lock_file(entry: Path) -> Path:
    return entry.with_name(entry.name + ".lock")


def _locked(entry: Path, mode: int) -> int:
    """A descriptor of `entry`'s lock file holding `mode`; the file may be deleted by a pruner between open
    and lock, so the lock counts only on the file still at that path."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(_lock_file(entry), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
        except OSError:
            os.close(fd)
            raise
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(_lock_file(entry)).st_ino:
                return fd
        os.close(fd)


def _marker(entry: Path) -> Path | None:
    return next((entry / name for name in MARKERS if (entry / name).is_file()), None)


def complete(entry: Path) -> bool:
    return _marker(entry) is not None


def use(entry: Path) -> bool:
    """Hold `entry` for this process, so no pruner deletes it, and mark it used now; False (holding
    nothing) when it is not a complete entry."""
    if entry not in _held:
        fd = _locked(entry, fcntl.LOCK_SH)
        if not complete(entry):
            os.close(fd)
            return False
        _held[entry] = fd
    marker = _marker(entry)
    if marker is not None:
        with contextlib.suppress(OSError):
            os.utime(marker)
    return marker is not None


def release(entry: Path) -> None:
    """Stop holding `entry` (a local API that serves another bundle now)."""
    fd = _held.pop(entry, None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def building(entry: Path) -> Iterator[bool]:
    """Exclusive while the body builds `entry`; yields whether it is already complete (someone built it
    meanwhile). Afterwards the entry is held (`use`) when complete."""
    fd = _locked(entry, fcntl.LOCK_EX)
    try:
        yield complete(entry)
    finally:
        if not complete(entry):  # a failed build leaves nothing (a waiting build finds the lock renewed)
            _lock_file(entry).unlink(missing_ok=True)
        os.close(fd)
    use(entry)


def publish(entry: Path, make: Callable[[Path], object], usable: Callable[[], bool] = lambda: True) -> bool:
    """Hold the complete `entry`, built first when it is missing or not `usable()` (which may hold what the
    entry needs): under its exclusive lock, `make(work)` fills a work folder beside it, renamed into place
    in one step (with an empty meta.json when `make` wrote none of MARKERS: a pins file, a local package's
    wheel). Returns whether it was built now."""
    if use(entry):
        if usable():
            return False
        release(entry)  # under the exclusive lock below, nothing else may hold it
    with building(entry) as done:
        if done and usable():
            return False
        shutil.rmtree(entry, ignore_errors=True)  # leftovers of an entry deleted half-way
        work = Path(tempfile.mkdtemp(prefix=f".{entry.name[:12]}-", dir=entry.parent))
        try:
            make(work)
            if not complete(work):
                (work / "meta.json").write_text("{}\n")
            os.replace(work, entry)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return True


def _children(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def _entries(folder: Path) -> list[tuple[float, Path]]:
    """The complete entries of `folder`, most recently used first."""
    found = []
    for child in _children(folder):
        with contextlib.suppress(OSError):
            marker = _marker(child) if child.is_dir() and not child.name.startswith(".") else None
            if marker is not None:
                found.append((marker.stat().st_mtime, child))
    return sorted(found, reverse=True)


def _delete(entry: Path, now: float) -> bool:
    """Delete `entry` unless something holds it or it was used since the caller looked."""
    try:
        fd = _locked(entry, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # in use by a build, a synth or a local API
    try:
        marker = _marker(entry)
        used = marker.stat().st_mtime if marker is not None else 0.0
        if now - used < RECENT_SECONDS:
            return False
        aside = entry.with_name(f".pruned-{uuid.uuid4().hex}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry, aside)  # one step: a build looking for it now finds nothing, builds it again
        _lock_file(entry).unlink()
    except OSError:
        return False
    finally:
        os.close(fd)
    shutil.rmtree(aside, ignore_errors=True)
    return True


def prune(cache_dir: Path, *, now: float | None = None) -> list[Path]:
    """Bound the cache (see the module's docstring); returns what was deleted. One pruner at a time: another
    one running already does the work."""
    now = time.time() if now is None else now
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".prune.lock", "w") as guard:
        try:
            fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        deleted = prune_least_used(cache_dir / "bundles", KEEP_BUNDLES, now)
        kept_layers = set()
        for _used, bundle in _entries(cache_dir / "bundles"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                kept_layers.add(json.loads((bundle / "meta.json").read_text())["layer"])
        deleted += prune_least_used(cache_dir / "layers", KEEP_LAYERS, now, spare=kept_layers)
        deleted += prune_least_used(cache_dir / "wheelhouse", KEEP_WHEELHOUSES, now)
        deleted += prune_least_used(cache_dir / "local-wheels", KEEP_LOCAL_WHEELS, now)
        deleted += prune_least_used(cache_dir / "manifests", KEEP_PINS, now)
        for interpreter in (cache_dir / "layers").glob("deps-*/pyc/*"):
            for pyc_set in prune_least_used(interpreter, KEEP_PYC_SETS, now):
                # Which modules the set loads: recomputed, with the set, when those imports come back.
                pyc_set.with_suffix(".json").unlink(missing_ok=True)
                deleted.append(pyc_set)
        for child in [c for name in _ENTRY_FOLDERS for c in _children(cache_dir / name)]:
            with contextlib.suppress(OSError):
                if child.name.startswith(".") and now - child.lstat().st_mtime > ABANDONED_SECONDS:
                    shutil.rmtree(child)
                    deleted.append(child)
        records = sorted((cache_dir / "verified").glob("*.json"), key=os.path.getmtime, reverse=True)
        for record in records[KEEP_RECORDS:]:
            record.unlink(missing_ok=True)
            deleted.append(record)
        legacy = cache_dir / "source-results"  # an earlier bundler's per-file results: never read now
        if legacy.is_dir():
            shutil.rmtree(legacy, ignore_errors=True)
            deleted.append(legacy)
        return deleted


def prune_least_used(folder: Path, keep: int, now: float, *, spare: Container[str] = ()) -> list[Path]:
    """Delete the complete entries of `folder` beyond the `keep` most recently used, each only when nothing
    holds it and it was not used since it was listed (_delete); entries named in `spare` neither count nor
    go. Returns what was deleted. Every bounded cache folder of the bundler and the local runtime uses it."""
    candidates = [path for _used, path in _entries(folder) if path.name not in spare]
    return [path for path in candidates[keep:] if _delete(path, now)]


def _size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def bound_uv_cache(uv: str, uv_cache: Path, limit: int = UV_CACHE_LIMIT_BYTES) -> bool:
    """Keep uv's cache under `limit` bytes: `uv cache prune` (what no lock still points at), and when that
    is not enough, `uv cache clean`. uv takes its own cache lock, so a concurrent install is waited for,
    never broken; installed layers keep their hard links to the files. Returns whether it had to act."""
    if not uv_cache.is_dir() or _size(uv_cache) <= limit:
        return False
    env = {**os.environ, "UV_CACHE_DIR": str(uv_cache)}
    for action in ("prune", "clean"):
        subprocess.run([uv, "cache", action], env=env, capture_output=True, check=False)
        if _size(uv_cache) <= limit:
            break
    return True
