"""requirements.lock: synth refuses a stale lock, the lock (not requirements.txt) feeds the input hash,
`make lock` writes a hashed lock the bundler installs with hashes required."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from stacks.bundling import lock
from stacks.bundling.build import build_bundle
from stacks.bundling.input_hash import input_hash
from stacks.bundling.install import requirements_file
from stacks.bundling.spec import BundlingError
from tests.test_bundling import TOOL, spec_for

REPO_ROOT = Path(__file__).resolve().parents[1]


def _header(requirements: Path) -> str:
    return f"{lock.HASH_LINE}{hashlib.sha256(requirements.read_bytes()).hexdigest()}\n"


def test_stale_lock_stops_synth_naming_lock_requirements_and_make_lock(
    mini_backend: Path, tmp_path: Path
) -> None:
    requirements = mini_backend / "requirements.txt"
    lock_path = mini_backend / "requirements.lock"
    lock_path.write_text(_header(requirements) + "mangum==0.19.0 --hash=sha256:00\n")
    assert requirements_file(spec_for(mini_backend, tmp_path)) == lock_path
    # WHEN requirements.txt changes after the lock was made
    requirements.write_text(requirements.read_text() + "httpx==0.28.1\n")
    # THEN synth stops, naming the lock, the requirements file and the command that fixes it
    for call in (
        lambda: input_hash(spec_for(mini_backend, tmp_path), TOOL),
        lambda: build_bundle(spec_for(mini_backend, tmp_path)),
    ):
        with pytest.raises(BundlingError) as caught:
            call()
        message = str(caught.value)
        assert f"{lock_path} is stale" in message and str(requirements) in message and "make lock" in message


def test_lock_without_recorded_hash_stops_synth(mini_backend: Path, tmp_path: Path) -> None:
    (mini_backend / "requirements.lock").write_text("mangum==0.19.0 --hash=sha256:00\n")
    with pytest.raises(BundlingError, match=r"requirements\.lock does not record .*make lock"):
        input_hash(spec_for(mini_backend, tmp_path), TOOL)


def test_the_lock_not_requirements_feeds_the_input_hash(mini_backend: Path, tmp_path: Path) -> None:
    requirements = mini_backend / "requirements.txt"
    lock_path = mini_backend / "requirements.lock"
    lock_path.write_text(_header(requirements) + "mangum==0.19.0 --hash=sha256:00\n")
    first = input_hash(spec_for(mini_backend, tmp_path), TOOL)
    # A transitive pin moves while requirements.txt stays: a new asset
    lock_path.write_text(
        _header(requirements) + "mangum==0.19.0 --hash=sha256:00\nanyio==4.0.0 --hash=sha256:01\n"
    )
    assert input_hash(spec_for(mini_backend, tmp_path), TOOL) != first


def test_make_lock_writes_a_hashed_lock_the_bundler_installs(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    import subprocess

    # GIVEN a cdk.json whose environments run python3.11 (one on arm64)
    cdk_json = tmp_path / "cdk.json"
    cdk_json.write_text(
        json.dumps(
            {
                "context": {
                    "environments": {"a": {"function": {"runtime": "python3.11"}}, "b": {"function": None}}
                }
            }
        )
    )
    # WHEN `make lock`'s script runs for this backend
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.bundle.lock",
            str(mini_backend),
            "--cdk-json",
            str(cdk_json),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lock_path = mini_backend / "requirements.lock"
    text = lock_path.read_text()
    # THEN the lock records its requirements' hash, pins every package with hashes, and names no local path
    assert lock.recorded_sha256(lock_path) == lock.requirements_sha256(mini_backend / "requirements.txt")
    assert "python3.11/arm64" in text and "python3.11/x86_64" in text
    pins = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert any(p.startswith("pydantic-core==") for p in pins), "transitive dependencies are pinned"
    assert all("==" in p for p in pins) and text.count("--hash=sha256:") >= len(pins)
    assert str(tmp_path) not in text and str(REPO_ROOT) not in text
    check = [sys.executable, "-m", "scripts.bundle.lock", "--check", str(mini_backend)]
    assert subprocess.run(check, capture_output=True, check=False, cwd=REPO_ROOT).returncode == 0
    # AND the bundler installs from it with hashes required: a tampered hash fails the install
    result = build_bundle(spec_for(mini_backend, shared_cache))
    assert result.layer is not None and (result.layer / "mangum").is_dir()
    assert (
        json.loads((result.directory / "build_info.json").read_text())["requirements_hash"]
        == (hashlib.sha256(text.encode()).hexdigest()[:12])
    )
    import re

    start = text.index("\nmangum==")
    end = text.index("\n", text.index("# via", start))
    tampered = (
        text[:start] + re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, text[start:end]) + text[end:]
    )
    lock_path.write_text(tampered)
    with pytest.raises(BundlingError, match=r"(?i)hash"):
        build_bundle(spec_for(mini_backend, shared_cache))
    (mini_backend / "requirements.txt").write_text("mangum==0.19.0\n")
    assert subprocess.run(check, capture_output=True, check=False, cwd=REPO_ROOT).returncode == 1


def test_merge_keeps_agreeing_pins_plain_and_marks_the_rest() -> None:
    x86 = "a==1 \\\n    --hash=sha256:aa\n    # via -r requirements.txt\nb==2 \\\n    --hash=sha256:b2\n"
    arm = "a==1 \\\n    --hash=sha256:aa\n    # via -r requirements.txt\nb==3 \\\n    --hash=sha256:b3\n"
    merged = lock.merge_resolutions([("m == 'x'", x86), ("m == 'y'", arm)])
    assert merged.startswith("a==1 \\\n    --hash=sha256:aa\n    # via -r requirements.txt\n")
    assert "b==2 ; (m == 'x') \\\n    --hash=sha256:b2\n" in merged
    assert "b==3 ; (m == 'y') \\\n    --hash=sha256:b3\n" in merged


def test_sample_backend_lock_is_current() -> None:
    backend = REPO_ROOT / "apps" / "backend-api"
    lock.check_fresh(backend / "requirements.lock", backend / "requirements.txt")


def _recording_run(monkeypatch: pytest.MonkeyPatch, fail_offline: bool) -> list[list[str]]:
    import subprocess

    calls: list[list[str]] = []

    def run(args: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        calls.append([str(a) for a in args])
        target = Path(args[args.index("--target") + 1])
        if "--offline" in args and fail_offline:
            (target / "partial.py").write_text("")  # what a failed attempt may leave
            return subprocess.CompletedProcess(args, 2, "", "error: not in the cache (--offline)")
        assert not (target / "partial.py").exists(), "an attempt started on a dirty target"
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    return calls


@pytest.mark.parametrize("cached", [True, False])
def test_a_locked_install_asks_the_index_only_when_the_cache_lacks_a_wheel(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    from stacks.bundling.install import install_dependencies

    requirements = mini_backend / "requirements.txt"
    (mini_backend / "requirements.lock").write_text(
        _header(requirements) + "mangum==0.19.0 --hash=sha256:00\n"
    )
    calls = _recording_run(monkeypatch, fail_offline=not cached)
    target = tmp_path / "tree"
    target.mkdir()
    install_dependencies(spec_for(mini_backend, tmp_path), ["/x/uv"], target, tmp_path)
    # THEN the cache is tried first (the lock's pins and hashes leave the index nothing to decide) ...
    assert "--offline" in calls[0] and "--require-hashes" in calls[0]
    # ... without resolving again what the lock pins (no metadata fetched from the index)
    assert all("--no-deps" in call for call in calls)
    # ... and the index only when that failed, on a clean target
    assert len(calls) == (1 if cached else 2)
    if not cached:
        assert "--offline" not in calls[1]


def test_an_unlocked_install_always_asks_the_index(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacks.bundling.install import install_dependencies

    calls = _recording_run(monkeypatch, fail_offline=False)
    target = tmp_path / "tree"
    target.mkdir()
    install_dependencies(spec_for(mini_backend, tmp_path), ["/x/uv"], target, tmp_path)
    assert len(calls) == 1 and "--offline" not in calls[0]


def _dist(target: Path, name: str, *requires: str) -> None:
    info = target / f"{name.lower()}-1.0.dist-info"
    info.mkdir(parents=True)
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        "Version: 1.0",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    (info / "METADATA").write_text("\n".join(lines) + "\n\nLong description.\n")


def test_a_lock_missing_a_dependency_stops_the_build_naming_it(mini_backend: Path, tmp_path: Path) -> None:
    from stacks.bundling.install import check_lock_complete

    lock = mini_backend / "requirements.lock"
    spec = spec_for(mini_backend, tmp_path)
    # GIVEN an installed tree whose requirements hold on the target (extras, other machines and other
    # Pythons do not count)
    target = tmp_path / "tree"
    _dist(
        target,
        "Alpha",
        "beta_pkg>=1",
        'gamma; extra == "fast"',
        'delta; platform_machine == "aarch64"',
        'epsilon; python_version < "3.10"',
    )
    _dist(target, "Beta.Pkg")
    check_lock_complete(target, spec, lock)
    # WHEN the target is arm64, THEN delta is missing, and the message says what to run
    with pytest.raises(BundlingError, match=r"does not pin delta, which alpha requires.*arm64.*make lock"):
        check_lock_complete(target, replace(spec, architecture="arm64"), lock)
    # AND a pin lost from the lock is named too
    shutil.rmtree(target / "beta.pkg-1.0.dist-info")
    with pytest.raises(BundlingError, match=r"requirements.lock does not pin beta_pkg, which alpha requires"):
        check_lock_complete(target, spec, lock)


def test_without_uv_make_lock_names_the_lock_it_cannot_write(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stacks.bundling.indexes.find_uv", lambda: None)
    with pytest.raises(BundlingError, match=r"requirements\.lock: uv is needed to resolve the lock"):
        lock.compile_lock(mini_backend / "requirements.txt", [("3.11", "x86_64")], cache_dir=tmp_path / "uv")
