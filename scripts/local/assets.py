"""Zip assets the bundler did not build (CDK's own handlers, another backend's zip), unzipped once for every
local command into `.cache/local-api/assets/<asset hash>/code`, beside a meta.json that marks the entry
complete and records its last use (its mtime).

The folder stays bounded with the bundle cache's own locks (stacks/bundling/bundle_cache.py), so the two
cannot disagree about what is in use: a process running an asset's code holds the entry (a shared flock,
released by the kernel when the process ends), and pruning, after each new unzip, deletes only entries
nobody holds. It keeps the KEEP_ASSETS most recently used, anything used in the last
bundle_cache.RECENT_SECONDS, and incomplete folders (an unzip under way, the earlier layout without
meta.json) until they are bundle_cache.ABANDONED_SECONDS old.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from stacks.bundling import bundle_cache, zipwrite

KEEP_ASSETS = 32  # several environments' non-bundler functions (hooks, probes, custom resources) stay warm


def unzipped(asset: Path, folder: Path, key: str) -> Path:
    """The code of `asset` (a zip), unzipped under `folder`/`key` once and held for this process."""
    entry = folder / key
    if not bundle_cache.use(entry):
        # No exclusive lock while unzipping: extract is atomic and idempotent (a rename into place), and an
        # entry without meta.json is never a pruning candidate. A long-serving holder of an entry must not
        # make another command wait for one.
        zipwrite.extract(asset, entry / "code")
        meta = entry / f".meta-{os.getpid()}.json"
        meta.write_text(json.dumps({"asset": asset.name}) + "\n")
        os.replace(meta, entry / "meta.json")
        if not bundle_cache.use(entry):
            raise OSError(f"{entry}: unzipped, then deleted before it could be held")
        prune(folder)
    return entry / "code"


def prune(folder: Path, *, now: float | None = None) -> list[Path]:
    """Bound `folder` (see the module's docstring); returns what was deleted."""
    now = time.time() if now is None else now
    # The bundle cache's own pruning: one implementation of the protocol for both caches.
    deleted = bundle_cache.prune_least_used(folder, KEEP_ASSETS, now)
    for child in folder.iterdir() if folder.is_dir() else ():
        with contextlib.suppress(OSError):
            stale = now - child.lstat().st_mtime > bundle_cache.ABANDONED_SECONDS
            if child.is_dir() and not bundle_cache.complete(child) and stale:
                shutil.rmtree(child)
                child.with_name(child.name + ".lock").unlink(missing_ok=True)
                deleted.append(child)
    return deleted
