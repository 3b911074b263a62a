"""Shared fixtures. Expensive things (bundles, full-app synths) are built once per session."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MINI_BACKEND = REPO_ROOT / "tests" / "fixtures" / "mini_backend"
from scripts.local.postgres import LocalPostgres, scratch_folder  # noqa: E402

# jsii spawns `node` from PATH: the one pinned in package.json, as under make, even when pytest runs alone.
os.environ["PATH"] = os.pathsep.join([str(REPO_ROOT / "node_modules" / ".bin"), os.environ.get("PATH", "")])


def process_ended(pid_file: Path, within: float = 10.0) -> bool:
    """Whether the process whose pid `pid_file` holds ends within `within` seconds (a SIGKILL takes effect
    when the process is next scheduled): gone, or a zombie (a killed process whose parent was killed with
    it belongs to the sandbox's init, which may reap it late)."""
    stat = Path(f"/proc/{pid_file.read_text().strip()}/stat")
    deadline = time.monotonic() + within
    while True:
        try:
            if stat.read_text().split(") ")[1].startswith("Z"):
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """The repo's bundle cache: uv's wheel cache in it makes repeated test runs fast (CI starts empty)."""
    path = REPO_ROOT / ".cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """One real PostgreSQL server per test session (per xdist worker), on a free loopback port with a
    throw-away data folder; stopped, and the folder removed, when the session ends. Never skipped: a server
    that cannot start fails the tests that need it, with the reason."""
    # Not under pytest's tmp folder: as root the server runs as `nobody`, who cannot enter that 0700 folder.
    folder = scratch_folder("credmate-pg-test-")
    try:
        with LocalPostgres.start(folder / "data", fast=True) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_databases = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> str:
    """The URL of a new, empty database of the session's server, for this test alone."""
    return postgres_server.create_database(f"test_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def mini_backend(tmp_path: Path) -> Path:
    """A writable copy of a small backend (src/ + requirements.txt) that a test may break."""
    dest = tmp_path / "backend"
    shutil.copytree(MINI_BACKEND, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The full app with the committed cdk.json, synthesized once per test session (cdk-nag included)."""
    import json

    import aws_cdk as cdk

    from app import build_app, write_policies

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    outdir = tmp_path_factory.mktemp("cdk-out")
    app = cdk.App(context=context, outdir=str(outdir))
    stacks, policies = build_app(app)
    app.synth()  # raises when cdk-nag finds anything unacknowledged
    write_policies(outdir, policies)
    return {"outdir": outdir, "stacks": stacks, "policies": policies}
