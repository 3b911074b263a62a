"""The bundle cache under concurrency (stacks/bundling/bundle_cache.py): pruning keeps the most recently
used entries and never deletes one that a build, a synth or a local API holds; two builds of the same
inputs at once both succeed; every cache folder is bounded; no process a build starts outlives it."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stacks.bundling import bundle_cache
from stacks.bundling.build import build_bundle
from tests.conftest import MINI_BACKEND, REPO_ROOT
from tests.test_bundling import spec_for
from tests.test_layers import _cache_sharing_wheels

HOUR = 3600.0


def _entry(folder: Path, name: str, used: float, complete: bool = True, layer: str = "") -> Path:
    path = folder / name
    (path / "bundle").mkdir(parents=True)
    (path / "bundle" / "handler.py").write_text("x = 1\n")
    if complete:
        (path / "meta.json").write_text(json.dumps({"layer": layer}))
        os.utime(path / "meta.json", (used, used))
    os.utime(path, (used, used))
    return path


def test_prune_keeps_the_most_recently_used_the_recent_and_the_layers_of_kept_bundles(tmp_path: Path) -> None:
    now = time.time()
    bundles, layers = tmp_path / "bundles", tmp_path / "layers"
    keep = bundle_cache.KEEP_BUNDLES
    # GIVEN more old bundles than the cache keeps, the newest on layer L0; old layers; a fresh bundle; a
    # build's work folder from a minute ago and one abandoned two days ago
    old = [
        _entry(bundles, f"b{i:02}", now - (i + 1) * HOUR, layer="deps-L0" if i == 0 else "")
        for i in range(keep + 3)
    ]
    fresh = _entry(bundles, "fresh", now - 60)
    working = _entry(bundles, ".abc-running", now - 60, complete=False)
    abandoned = _entry(bundles, ".abc-died", now - 48 * HOUR, complete=False)
    old_layers = [
        _entry(layers, f"deps-L{i}", now - (i + 10) * HOUR) for i in range(bundle_cache.KEEP_LAYERS + 3)
    ]
    # WHEN pruned
    deleted = set(bundle_cache.prune(tmp_path, now=now))
    # THEN the most recently used bundles stay, the oldest and the abandoned folder go
    assert fresh.is_dir() and all(p.is_dir() for p in old[: keep - 1])
    assert not any(p.exists() for p in old[keep - 1 :]) and not abandoned.exists()
    assert set(old[keep - 1 :]) | {abandoned} <= deleted
    # AND the layer a kept bundle is built on stays, however old, plus the most recently used others
    assert old_layers[0].is_dir()
    assert [p.exists() for p in old_layers[1:]] == [True] * bundle_cache.KEEP_LAYERS + [False] * 2
    # AND a running build's folder is left alone, and nothing half-deleted is left
    assert working.is_dir() and not list(bundles.glob(".pruned-*"))


def test_entries_used_recently_stay_however_many_there_are(tmp_path: Path) -> None:
    now = time.time()
    entries = [
        _entry(tmp_path / "bundles", f"b{i:02}", now - i) for i in range(bundle_cache.KEEP_BUNDLES + 4)
    ]
    assert bundle_cache.prune(tmp_path, now=now) == []
    assert all(p.is_dir() for p in entries)


def _holder(entry: Path) -> subprocess.Popen[str]:
    """Another process (as `make local-api` serving a bundle) holding `entry` until its stdin closes."""
    code = (
        "import sys; from pathlib import Path; from stacks.bundling import bundle_cache; "
        "print(bundle_cache.use(Path(sys.argv[1])), flush=True); sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(entry)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "True"
    return proc


def test_pruning_never_deletes_a_bundle_another_process_serves(tmp_path: Path) -> None:
    now = time.time()
    bundles = tmp_path / "bundles"
    # GIVEN old bundles beyond what the cache keeps, the oldest of them served by a local API
    old = [_entry(bundles, f"b{i:02}", now - (i + 1) * HOUR) for i in range(bundle_cache.KEEP_BUNDLES + 2)]
    served = old[-1]
    holder = _holder(served)
    try:
        # WHEN the cache is pruned, THEN the served bundle stays (and the other old one goes)
        bundle_cache.prune(tmp_path, now=now + HOUR)
        assert served.is_dir() and (served / "meta.json").is_file()
        assert not old[-2].exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    # AND once nothing serves it, it can be pruned like any other
    assert bundle_cache._delete(served, now + 2 * HOUR) and not served.exists()


def test_pruning_rechecks_an_entry_used_since_it_was_listed(tmp_path: Path, monkeypatch: object) -> None:
    now = time.time()
    entry = _entry(tmp_path / "bundles", "b", now - 2 * HOUR)
    os.utime(entry / "meta.json")  # a cache hit between the listing and the deletion
    assert not bundle_cache._delete(entry, now)
    assert entry.is_dir()


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
    # AND a pruned bundle (once this process no longer holds it) is built again, the same bytes
    zip_bytes = first.zip_path.read_bytes()
    bundle_cache.release(first.directory.parent)
    os.utime(meta, (1, 1))
    assert bundle_cache._delete(first.directory.parent, time.time())
    again = build_bundle(spec)
    assert not again.cache_hit and again.zip_path.read_bytes() == zip_bytes


def test_a_bundle_whose_layer_went_away_is_built_again(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    import shutil
    import threading

    cache = _cache_sharing_wheels(tmp_path / "cache", shared_cache)
    spec = spec_for(mini_backend, cache)
    first = build_bundle(spec)
    zip_bytes = first.zip_path.read_bytes()
    # GIVEN the bundle complete but its dependency layer deleted by hand (this process no longer holds them)
    assert first.layer is not None
    bundle_cache.release(first.directory.parent)
    bundle_cache.release(first.layer.parent)
    shutil.rmtree(first.layer.parent)
    # WHEN the same inputs are built, THEN the bundle is built again on a new layer, the same bytes (and the
    # build does not wait on its own lock)
    done: list[object] = []
    builder = threading.Thread(target=lambda: done.append(build_bundle(spec)), daemon=True)
    builder.start()
    builder.join(300)
    assert done, "the build never finished"
    again = done[0]
    assert isinstance(again, type(first)) and not again.cache_hit
    assert again.layer is not None and again.layer.is_dir() and again.zip_path.read_bytes() == zip_bytes


_BUILD = """
import json, sys
from pathlib import Path
from stacks.bundling.build import build_bundle
from tests.test_bundling import spec_for
result = build_bundle(spec_for(Path(sys.argv[1]), Path(sys.argv[2])))
print(json.dumps([str(result.zip_path), result.cache_hit]))
"""


def test_two_builds_of_the_same_inputs_at_once_both_succeed_with_the_same_bytes(
    shared_cache: Path, tmp_path: Path
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "cache", shared_cache)
    # GIVEN an empty bundle cache (no layer, no bundle); WHEN two processes build the same bundle at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD, str(MINI_BACKEND), str(cache)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    # THEN both succeed (before: ENOTEMPTY when both renamed into place), one built and one waited for it
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _out, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _err in outputs]
    assert results[0][0] == results[1][0] and sorted(hit for _zip, hit in results) == [False, True]
    assert len(list((cache / "layers").glob("deps-*/meta.json"))) == 1


def test_the_caches_folders_are_bounded(tmp_path: Path) -> None:
    records = tmp_path / "verified"
    records.mkdir()
    for i in range(bundle_cache.KEEP_RECORDS + 5):
        (records / f"{i:04}.json").write_text("{}")
        os.utime(records / f"{i:04}.json", (i, i))
    (tmp_path / "source-results").mkdir()
    (tmp_path / "source-results" / "x.pickle").write_bytes(b"")
    bundle_cache.prune(tmp_path)
    assert len(list(records.iterdir())) == bundle_cache.KEEP_RECORDS
    assert not (records / "0000.json").exists() and not (tmp_path / "source-results").exists()


def test_wheelhouses_and_bytecode_sets_keep_the_most_recently_used(tmp_path: Path) -> None:
    now = time.time()
    # GIVEN more old sdist wheelhouses and more old bytecode sets of one layer than the cache keeps
    houses = []
    for i in range(bundle_cache.KEEP_WHEELHOUSES + 2):
        house = tmp_path / "wheelhouse" / f"w{i:02}"
        (house / "wheels").mkdir(parents=True)
        (house / "manifest.json").write_text('{"wheels": []}')
        os.utime(house / "manifest.json", (now - (i + 1) * HOUR,) * 2)
        houses.append(house)
    interpreter = tmp_path / "layers" / "deps-L0" / "pyc" / "3.11.7-a70d0d0a"
    sets = []
    for i in range(bundle_cache.KEEP_PYC_SETS + 2):
        pyc_set = interpreter / f"d{i:02}"
        pyc_set.mkdir(parents=True)
        (pyc_set / "index.json").write_text("[]")
        (interpreter / f"d{i:02}.json").write_text("{}")
        os.utime(pyc_set / "index.json", (now - (i + 1) * HOUR,) * 2)
        sets.append(pyc_set)
    # AND the oldest bytecode set is held by a process that has used it for hours (a local API serving it)
    held = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(sets[-1]), str(now - 50 * HOUR)],
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
        text=True,
    )
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "held"
        # WHEN pruned
        bundle_cache.prune(tmp_path, now=now)
    finally:
        held.kill()
        held.wait()
    # THEN the most recently used stay and the oldest go, each bytecode set with its record
    keep_w, keep_p = bundle_cache.KEEP_WHEELHOUSES, bundle_cache.KEEP_PYC_SETS
    assert [h.exists() for h in houses] == [True] * keep_w + [False] * 2
    assert [p.exists() for p in sets] == [True] * keep_p + [False, True]
    assert not (interpreter / f"d{keep_p:02}.json").exists() and (interpreter / "d00.json").exists()


@pytest.mark.parametrize(
    ("folder", "keep"),
    [("local-wheels", bundle_cache.KEEP_LOCAL_WHEELS), ("manifests", bundle_cache.KEEP_PINS)],
)
def test_local_package_wheels_and_pins_files_keep_the_most_recently_used(
    tmp_path: Path, folder: str, keep: int
) -> None:
    now = time.time()
    # GIVEN more old entries than the cache keeps (one per content of a local package, or of a pins file)
    entries = []
    for i in range(keep + 2):
        entry = tmp_path / folder / f"e{i:02}"
        entry.mkdir(parents=True)
        (entry / "payload").write_text("x")
        (entry / "meta.json").write_text("{}")
        os.utime(entry / "meta.json", (now - (i + 1) * HOUR,) * 2)
        entries.append(entry)
    # WHEN pruned, THEN the most recently used stay and the two oldest go
    bundle_cache.prune(tmp_path, now=now)
    assert [e.exists() for e in entries] == [True] * keep + [False] * 2


_HOLD = """
import os, sys, time
from pathlib import Path
from stacks.bundling import bundle_cache
assert bundle_cache.use(Path(sys.argv[1]))
os.utime(Path(sys.argv[1]) / "index.json", (float(sys.argv[2]),) * 2)
print("held", flush=True)
time.sleep(60)
"""


def test_uv_cache_is_bounded_by_size_with_uv_s_own_commands(tmp_path: Path) -> None:
    uv = str(Path(sys.executable).with_name("uv"))
    uv_cache = tmp_path / "uv"
    subprocess.run([uv, "cache", "prune"], env={**os.environ, "UV_CACHE_DIR": str(uv_cache)}, check=True)
    # GIVEN a uv cache holding 3 MB that no lock refers to, and a limit of 1 MB
    junk = uv_cache / "wheels-v5" / "pypi" / "gone"
    junk.mkdir(parents=True)
    (junk / "payload.bin").write_bytes(os.urandom(3 << 20))
    # WHEN bounded
    acted = bundle_cache.bound_uv_cache(uv, uv_cache, limit=1 << 20)
    # THEN uv removed it; under the limit, nothing is done
    assert acted and not junk.exists()
    assert not bundle_cache.bound_uv_cache(uv, uv_cache, limit=1 << 20)


_SYNTH = """
import sys
from pathlib import Path
from stacks.constructs import lambda_bundle
from tests.test_bundling import CHECKS, spec_for
spec = spec_for(Path(sys.argv[1]), Path(sys.argv[2]))
lambda_bundle.verified_bundle(spec, checks=CHECKS)
lambda_bundle.join_verifications()
"""


def test_no_process_a_synths_bundling_starts_is_alive_after_it_exits(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    # GIVEN this process adopts every orphan of its descendants (Linux: a child subreaper), so a process
    # started by the synth that outlives it, even in a session of its own, becomes this process's child
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    assert libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    try:
        before = _children()
        handler = mini_backend / "src" / "handler.py"
        handler.write_text(handler.read_text() + f"\n# {tmp_path.name}\n")  # a build, not a cache hit
        # WHEN a synth's bundling (build, verification, pruning) runs in a process of its own and exits
        subprocess.run(
            [sys.executable, "-c", _SYNTH, str(mini_backend), str(shared_cache)],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
            timeout=600,
        )
        # THEN none of the processes it started is left
        time.sleep(0.2)
        assert {pid: cmd for pid, cmd in _children().items() if pid not in before} == {}
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def _children() -> dict[int, str]:
    """Live processes whose parent is this one: pid -> command line."""
    mine = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            mine[int(stat.parent.name)] = (
                (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            )
    return mine
