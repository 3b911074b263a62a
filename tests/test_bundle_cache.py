"""Pruning the bundle cache (stacks/bundling/bundle_cache.py): the most recently used entries stay, and so
does anything a concurrent synth may still be reading; a pruned bundle is simply built again."""

from __future__ import annotations

import os
import time
from pathlib import Path

from stacks.bundling import bundle_cache, layers
from stacks.bundling.build import build_bundle
from tests.test_bundling import spec_for
from tests.test_layers import _cache_sharing_wheels, _ready_spare


def _entry(folder: Path, name: str, used: float, complete: bool = True) -> Path:
    path = folder / name
    (path / "bundle").mkdir(parents=True)
    (path / "bundle" / "handler.py").write_text("x = 1\n")
    if complete:
        (path / "meta.json").write_text("{}")
        os.utime(path / "meta.json", (used, used))
    os.utime(path, (used, used))
    return path


def test_prune_keeps_the_most_recently_used_and_the_recent() -> None:
    import tempfile

    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hour = 3600.0
        # GIVEN five complete entries used 1 to 5 hours ago, one used a minute ago, and two that are not
        # complete entries: a build's work folder from a minute ago, and one abandoned two days ago
        old = [_entry(folder, f"b{i}", now - i * hour) for i in range(1, 6)]
        fresh = _entry(folder, "fresh", now - 60)
        working = _entry(folder, ".abc-running", now - 60, complete=False)
        abandoned = _entry(folder, ".abc-died", now - 48 * hour, complete=False)
        # WHEN pruned to two
        deleted = bundle_cache.prune(folder, 2, now=now)
        # THEN the two most recently used stay (the fresh one and b1), the rest and the abandoned folder go
        assert fresh.is_dir() and old[0].is_dir()
        assert not any(p.exists() for p in old[1:]) and not abandoned.exists()
        assert sorted(p.name for p in deleted) == sorted([*(p.name for p in old[1:]), ".abc-died"])
        # AND a running build's folder is left alone, and nothing half-deleted is left in the folder
        assert working.is_dir()
        assert sorted(p.name for p in folder.iterdir()) == sorted([".abc-running", "b1", "fresh"])


def test_entries_used_recently_stay_however_many_there_are(tmp_path: Path) -> None:
    now = time.time()
    entries = [_entry(tmp_path, f"b{i}", now - i) for i in range(6)]
    assert bundle_cache.prune(tmp_path, 1, now=now) == []
    assert all(p.is_dir() for p in entries)


def test_a_cache_hit_marks_the_bundle_used_and_a_pruned_bundle_is_built_again(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "cache", shared_cache)
    spec = spec_for(mini_backend, cache)
    first = build_bundle(spec)
    meta = first.directory.parent / "meta.json"
    os.utime(meta, (1, 1))
    # WHEN the same inputs are a cache hit, THEN the bundle is marked used
    assert build_bundle(spec).cache_hit
    assert meta.stat().st_mtime > time.time() - 60
    # AND a pruned bundle is built again, the same bytes
    zip_bytes = first.zip_path.read_bytes()
    layer_dir = next((cache / "layers").glob("deps-*"))
    _ready_spare(layer_dir)
    os.utime(meta, (1, 1))
    assert bundle_cache.prune(cache / "bundles", 0) == [first.directory.parent]
    again = build_bundle(spec)
    assert not again.cache_hit and again.zip_path.read_bytes() == zip_bytes


def test_a_build_prunes_the_cache_in_the_background(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "cache", shared_cache)
    # GIVEN a cache holding more old bundles than it keeps
    stale = [_entry(cache / "bundles", f"{i:064x}", 1000.0 + i) for i in range(bundle_cache.KEEP_BUNDLES + 3)]
    # WHEN a bundle is built
    built = build_bundle(spec_for(mini_backend, cache))
    # THEN the process that links the next tree ahead also prunes: the oldest go, the new bundle stays
    layer_dir = next((cache / "layers").glob("deps-*"))
    _ready_spare(layer_dir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stale[0].exists():
        time.sleep(0.1)
    assert not stale[0].exists() and built.directory.is_dir()
    remaining = [p for p in (cache / "bundles").iterdir() if not p.name.startswith(".")]
    assert len(remaining) <= bundle_cache.KEEP_BUNDLES
    assert layers.ready_spares(layer_dir)
