"""Harness fixtures, used as a pytest plugin (`pytest_plugins = ["harness_fixtures"]`).

The backend bundle from the real bundler (built once per session) and the emulator binary.
PYTEST_DONT_REWRITE: the test module imports this before pytest loads it as a plugin; it asserts nothing.

The bundle is `stacks.bundling.build.build_bundle` on apps/backend-api (the same spec as the stack, for
this host's architecture), so the tests run what would be deployed. CREDMATE_HARNESS_BACKEND may point at
another backend folder (src/ and its dependency manifest) while developing.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest

from scripts.local.backend import FUNCTION_HANDLERS, build_backend_bundle
from scripts.local.emulator import fetch_rie_script, runtime_path
from stacks.bundling import zipwrite

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT / "tests" / "hooks") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests" / "hooks"))

# The hook fakes also put the hook asset on sys.path; re-exported so harness tests import in any order.
from hook_fakes import (  # noqa: E402
    DEPLOYMENT_ID,
    EXECUTION_ID,
    HOOK_EVENT,
    FakeContext,
    appspec_yaml,
    hook_calls,
    log_lines,
    make_client,
    pre_traffic,
)

__all__ = [
    "DEPLOYMENT_ID",
    "EXECUTION_ID",
    "HOOK_EVENT",
    "REPO_ROOT",
    "FakeContext",
    "appspec_yaml",
    "backend_bundle",
    "hook_calls",
    "log_lines",
    "make_client",
    "pre_traffic",
    "rie_binary",
]
BACKEND_ROOT = Path(os.environ.get("CREDMATE_HARNESS_BACKEND") or REPO_ROOT / "apps" / "backend-api")
HOST_ARCH = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"


@pytest.fixture(scope="session")
def rie_binary() -> Path:
    return Path(fetch_rie_script.fetch_rie())


@pytest.fixture(scope="session")
def backend_bundle(rie_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unzipped backend bundle (read-only: copy it before changing anything)."""
    modules = [handler.rpartition(".")[0].replace(".", "/") + ".py" for handler in FUNCTION_HANDLERS.values()]
    missing = [m for m in modules if not (BACKEND_ROOT / "src" / m).is_file()]
    if missing:
        pytest.fail(
            f"{BACKEND_ROOT / 'src'} has no {', '.join(missing)}: the harness runs the real backend's "
            "handlers (CREDMATE_HARNESS_BACKEND=<folder with src/ and its manifest> to use another)"
        )
    cache = REPO_ROOT / ".cache"
    cache.mkdir(exist_ok=True)
    runtime_path()
    built = build_backend_bundle(BACKEND_ROOT, cache, HOST_ARCH)
    return zipwrite.extract(built.zip_path, tmp_path_factory.mktemp("bundle") / "task")
