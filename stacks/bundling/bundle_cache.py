"""Keeping the bundle cache bounded: built bundles and dependency layers nobody has used for a while go.

Every source edit builds a new bundle (a ~40 MB zip; its tree is hard links), and every lock change a new
dependency layer (~140 MB), so without pruning the cache grows by gigabytes a week. Each complete entry is
marked used when built and on every cache hit (its `meta.json` is touched); pruning keeps the most
recently used ones and anything used within the last minutes, which a concurrent synth may still be
reading. An entry is renamed away before it is deleted, so a half-deleted one never looks complete, and a
deleted one is simply built again when its inputs come back. Work folders left by builds that died
(`.name-…`, never complete) go once they are a day old.

CDK copies each asset into the cloud assembly at synth, so nothing outside this cache points into it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

KEEP_BUNDLES = 12
KEEP_LAYERS = 6
RECENT_SECONDS = 15 * 60  # in use by a concurrent synth, or about to be again
ABANDONED_SECONDS = 24 * 3600


def mark_used(entry: Path) -> None:
    """Record that the complete cache entry `entry` (a bundle or layer folder) was just used."""
    with contextlib.suppress(OSError):
        os.utime(entry / "meta.json")


def prune(folder: Path, keep: int, *, now: float | None = None) -> list[Path]:
    """Delete the complete entries of `folder` beyond the `keep` most recently used, except those used in
    the last RECENT_SECONDS, and abandoned work folders; returns what was deleted."""
    now = time.time() if now is None else now
    complete: list[tuple[float, Path]] = []
    doomed: list[Path] = []
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    for child in children:
        try:
            if child.name.startswith("."):
                if child.is_dir() and now - child.stat().st_mtime > ABANDONED_SECONDS:
                    doomed.append(child)
                continue
            complete.append(((child / "meta.json").stat().st_mtime, child))
        except OSError:
            continue  # not a complete entry (or gone meanwhile): never ours to judge
    complete.sort(reverse=True)
    doomed += [path for used, path in complete[keep:] if now - used > RECENT_SECONDS]
    deleted = []
    for path in doomed:
        aside = folder / f".pruned-{uuid.uuid4().hex}"
        try:
            os.rename(path, aside)  # one step: a build looking for it now simply builds it again
        except OSError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
        deleted.append(path)
    return deleted


def prune_cache(cache_dir: Path) -> None:
    """Prune the bundles and the dependency layers of a bundle cache folder."""
    prune(cache_dir / "bundles", KEEP_BUNDLES)
    prune(cache_dir / "layers", KEEP_LAYERS)
