"""scripts.local.assets: zip assets unzipped once, held while in use, and the folder bounded."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from scripts.local import assets
from stacks.bundling import bundle_cache

HOUR = 3600.0


def _zip(path: Path, text: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("app.py", text)
    return path


def _entry(folder: Path, key: str, used: float) -> Path:
    """A complete entry nobody holds, last used at `used` (what a finished command leaves)."""
    (folder / key / "code").mkdir(parents=True)
    meta = folder / key / "meta.json"
    meta.write_text(json.dumps({"asset": f"asset.{key}.zip"}))
    os.utime(meta, (used, used))
    return folder / key


def _held_elsewhere(entry: Path) -> bool:
    """Whether some open file description holds the entry's lock (tried from a fresh one, without waiting)."""
    fd = os.open(entry.with_name(entry.name + ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_an_asset_is_unzipped_once_and_held_while_this_process_runs(tmp_path: Path) -> None:
    folder = tmp_path / "assets"
    code = assets.unzipped(_zip(tmp_path / "a.zip", "x = 1\n"), folder, "aaaa")
    try:
        assert code == folder / "aaaa" / "code" and (code / "app.py").read_text() == "x = 1\n"
        assert _held_elsewhere(folder / "aaaa")
        # a second use (another function, a rebuilt deployment) neither unzips again nor loses the hold
        (code / "app.py").write_text("kept\n")
        assert assets.unzipped(tmp_path / "a.zip", folder, "aaaa") == code
        assert (code / "app.py").read_text() == "kept\n"
        # what the pruner would do to it: nothing, however old and however far beyond the bound
        os.utime(folder / "aaaa" / "meta.json", (0, 0))
        assert bundle_cache._delete(folder / "aaaa", time.time()) is False and code.is_dir()
    finally:
        bundle_cache.release(folder / "aaaa")


def test_pruning_keeps_the_most_recent_what_is_held_and_what_was_just_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assets, "KEEP_ASSETS", 2)
    folder, now = tmp_path / "assets", time.time()
    # the two most recent are kept by rank, the third because it was used minutes ago (a synth away)
    for minutes in (1, 2, 3):
        _entry(folder, f"recent{minutes}", now - 60 * minutes)
    old = [_entry(folder, f"old{i}", now - (10 + i) * HOUR) for i in range(3)]
    held = _entry(folder, "held", now - 50 * HOUR)  # the oldest, but a running local API serves it
    # another process holds it, as `make local-api` does while it serves that code
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_SH); print('held', flush=True); sys.stdin.read()",
            str(held.with_name("held.lock")),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        legacy = folder / "legacy"  # the earlier layout: code directly in the entry, no meta.json
        legacy.mkdir()
        (legacy / "app.py").write_text("x = 1\n")
        os.utime(legacy, (now - 48 * HOUR, now - 48 * HOUR))
        unzipping = folder / "unzipping"  # another command's unzip under way
        unzipping.mkdir()

        deleted = assets.prune(folder, now=now)

        assert sorted(p.name for p in deleted) == ["legacy", "old0", "old1", "old2"]
        survivors = sorted(p.name for p in folder.iterdir() if p.is_dir())
        assert survivors == ["held", "recent1", "recent2", "recent3", "unzipping"]
        assert not any(p.exists() or p.with_name(p.name + ".lock").exists() for p in old)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    # once its server stopped, the held entry is an old one like any other
    assert held in assets.prune(folder, now=now)


def test_a_new_unzip_prunes_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "KEEP_ASSETS", 1)
    folder, now = tmp_path / "assets", time.time()
    stale = _entry(folder, "stale", now - 5 * HOUR)
    code = assets.unzipped(_zip(tmp_path / "b.zip", "y = 2\n"), folder, "bbbb")
    try:
        assert (code / "app.py").is_file() and not stale.exists()
    finally:
        bundle_cache.release(folder / "bbbb")
