"""Fetch AWS's Lambda Runtime Interface Emulator (aws-lambda-rie) without Docker.

The emulator binary ships inside the `aws-sam-cli` wheel on PyPI (samcli/local/rapid/aws-lambda-rie-<arch>).
This downloads that one wheel without its dependencies into the cache folder, extracts only the binary for
the requested architecture and makes it executable. Idempotent: an existing binary is returned untouched.

    python -m scripts.local.fetch_rie [--arch x86_64|arm64] [--cache-dir DIR]   # prints the binary's path

Never run the binary without `--runtime-interface-emulator-address 127.0.0.1:PORT`: with no address flag
(even with --help) it listens on every interface at 8080. scripts/local/emulator.py always passes one.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SAM_CLI_VERSION = "1.170.0"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "rie"
_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class RieFetchError(RuntimeError):
    """The emulator could not be fetched; the message says what to fix."""


def host_arch() -> str:
    machine = platform.machine().lower()
    if machine not in _ARCHES:
        raise RieFetchError(
            f"no aws-lambda-rie build for host architecture {machine!r} (x86_64 or arm64 only)"
        )
    return _ARCHES[machine]


def rie_path(arch: str | None = None, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Where the binary lives once fetched (it may not exist yet)."""
    return cache_dir / SAM_CLI_VERSION / f"aws-lambda-rie-{arch or host_arch()}"


def _download_wheel(cache_dir: Path) -> Path:
    wheels = cache_dir / "wheels"
    existing = sorted(wheels.glob(f"aws_sam_cli-{SAM_CLI_VERSION}-*.whl"))
    if existing:
        return existing[0]
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(wheels),
            f"aws-sam-cli=={SAM_CLI_VERSION}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = sorted(wheels.glob(f"aws_sam_cli-{SAM_CLI_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        raise RieFetchError(
            f"pip download aws-sam-cli=={SAM_CLI_VERSION} failed (is PyPI reachable?):\n"
            f"{(proc.stdout + proc.stderr)[-2000:]}"
        )
    return found[0]


def fetch_rie(arch: str | None = None, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Return the path of an executable aws-lambda-rie for `arch` (default: this host), fetching it once."""
    arch = _ARCHES.get((arch or host_arch()).lower())
    if arch is None:
        raise RieFetchError("architecture must be x86_64 or arm64")
    target = rie_path(arch, cache_dir)
    if target.is_file() and os.access(target, os.X_OK):
        return target
    wheel = _download_wheel(cache_dir)
    member = f"samcli/local/rapid/aws-lambda-rie-{arch}"
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise RieFetchError(
                f"{wheel.name} has no {member}: the wheel layout changed; pin another "
                f"SAM_CLI_VERSION in {Path(__file__).name}"
            )
        data = archive.read(member)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside its final name and renamed: a concurrent or interrupted fetch never leaves half a binary.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".rie-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", choices=sorted(set(_ARCHES.values())), default=None)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        print(fetch_rie(args.arch, args.cache_dir))
    except RieFetchError as exc:
        print(f"fetch_rie: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
