#!/usr/bin/env python3
"""Write `requirements.lock` beside each backend's `requirements.txt` (run by `make lock`).

    python -m scripts.bundle.lock                      # the default backend (apps/backend-api)
    python -m scripts.bundle.lock apps/other-backend   # a backend folder, or its requirements.txt
    python -m scripts.bundle.lock --check [PATHS]      # exit 1 when a lock is missing or stale

Resolved (`uv pip compile --generate-hashes --only-binary :all:`) for every Python runtime of cdk.json's
`environments.*.function.runtime`, on both Lambda architectures, each for its runtime's manylinux platform
as the bundler installs it; the header records the sha256 of the requirements.txt it came from, which
synth checks (stacks/bundling/lock.py). uv's wheel cache is the bundler's (.cache/uv), so a re-lock after a
small change is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

from stacks.bundling.lock import (  # noqa: E402
    LOCK_NAME,
    TARGET_PLATFORMS,
    compile_lock,
    recorded_sha256,
    requirements_sha256,
)

DEFAULT_BACKENDS = ("apps/backend-api",)
DEFAULT_RUNTIME = "python3.11"  # the default of `function.runtime` (stacks/config/environment.py)


def targets(cdk_json: Path) -> list[tuple[str, str]]:
    """(python version, architecture) pairs to resolve: every environment's runtime in cdk.json (the default
    when unset), each for both Lambda architectures, so that switching `function.architecture` (or the
    verification twin built for this host) never meets a lock that cannot install."""
    environments = json.loads(cdk_json.read_text()).get("context", {}).get("environments") or {}
    versions = set()
    for name, settings in environments.items():
        runtime = str(((settings or {}).get("function") or {}).get("runtime") or DEFAULT_RUNTIME)
        if not runtime.startswith("python"):
            raise SystemExit(
                f"{cdk_json}: environments.{name}.function.runtime={runtime!r} is not a python runtime"
            )
        versions.add(runtime.removeprefix("python"))
    versions = versions or {DEFAULT_RUNTIME.removeprefix("python")}
    return sorted((version, arch) for version in versions for arch in TARGET_PLATFORMS)


def requirements_path(raw: str) -> Path:
    path = Path(raw)
    path = path if path.is_absolute() else REPO_ROOT / path
    if path.is_dir():
        path = path / "requirements.txt"
    if not path.is_file():
        raise SystemExit(
            f"{path} does not exist: pass a backend folder holding requirements.txt, or the file"
        )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_BACKENDS), help="backend folders or files")
    parser.add_argument("--check", action="store_true", help="only check that every lock is current")
    parser.add_argument("--cdk-json", type=Path, default=REPO_ROOT / "cdk.json")
    args = parser.parse_args(argv)
    stale = []
    for raw in args.paths:
        requirements = requirements_path(raw)
        lock = requirements.with_name(LOCK_NAME)
        if args.check:
            if not lock.is_file() or recorded_sha256(lock) != requirements_sha256(requirements):
                stale.append(lock)
            continue
        wanted = targets(args.cdk_json)
        compile_lock(requirements, wanted, cache_dir=REPO_ROOT / ".cache" / "uv")
        described = ", ".join(f"python{v}/{a}" for v, a in wanted)
        print(f"[lock] {lock}: resolved for {described}")
    for lock in stale:
        print(f"[lock] {lock} is missing or stale: run `make lock`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
