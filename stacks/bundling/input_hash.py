"""What decides a bundle's identity: the input hash (the bundle cache's key and the asset hash CDK deploys)
and the dependency layer's key.

The input hash covers every input that can change the bundle, including what builds it (the bundler's own
source, so there is no version constant to bump): any change gives a new asset (a new Lambda version and a
canary) and no change gives the same one, with no rebuild. It is computed before the bundle is built, which
is what lets an unchanged synth stop at a cache hit. The dependency layer's key is the subset that decides
the installed dependencies, so a source-only change reuses them; the input hash is that key plus the rest,
so no input of the layer can miss the bundle's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections.abc import Mapping, Sequence

from stacks.bundling import manifest, strip
from stacks.bundling.indexes import find_uv
from stacks.bundling.install import requirements_file
from stacks.bundling.layers import layer_key
from stacks.bundling.spec import BUNDLER_DIR, BundleSpec, BundlingError, bundler_code, source_files

PACKAGE_DIR = BUNDLER_DIR  # the bundler code both keys hash (a test points it at a changed copy)


def installer_identity(spec: BundleSpec) -> tuple[str, list[str]]:
    """(name and version, command prefix) of the tool that installs dependencies."""
    if spec.installer in ("auto", "uv"):
        uv = find_uv()
        if uv is not None:
            version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True).stdout
            # The host triple in "(x86_64-unknown-linux-gnu)" must not reach the hash: a laptop and CI agree.
            return version.split(" (")[0].strip(), [uv]
        if spec.installer == "uv":
            raise BundlingError("installer 'uv' requested but uv is not installed (pip install uv)")
    version = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout.split(" from ")[0]
    return version.strip(), [sys.executable, "-m", "pip"]


def host_can_compile(spec: BundleSpec) -> bool:
    """Bytecode is only written when the host Python is the target's: whether it is, is an input."""
    return f"{sys.version_info.major}.{sys.version_info.minor}" == spec.python_version


def input_hash(
    spec: BundleSpec,
    tool: str,
    wheels: Sequence[tuple[str, str]] = (),
    sources: Mapping[str, bytes] | None = None,
) -> str:
    """One digest of every input that can change the bundle: the dependency layer's key and what the bundle
    adds to it (`wheels`: locally built (name, sha256); `sources`: the source files' bytes by relative
    path, in source_files order, when already read)."""
    parts = [
        *dependency_key(spec, tool, wheels),
        ("excludes", json.dumps(sorted(spec.excludes))),
        ("bytecode", str(spec.compile_bytecode and host_can_compile(spec))),
        ("bytecode-modules", json.dumps(list(spec.bytecode_modules))),
        ("migrations", spec.migrations_dir or ""),
        ("handlers", json.dumps([list(h) for h in spec.handlers])),
    ]
    if sources is None:
        sources = {rel: path.read_bytes() for rel, path in source_files(spec.source_dir, spec.excludes)}
    for relative, data in sources.items():
        parts += [("file", relative), ("content", data)]
    for name, path in sorted(spec.extra_files):
        if not path.is_file():
            raise BundlingError(f"extra bundle file {path} (for {name}) does not exist")
        parts += [("extra", name), ("content", path.read_bytes())]
    return layer_key(parts)


def dependency_key(
    spec: BundleSpec, tool: str, wheels: Sequence[tuple[str, str]]
) -> list[tuple[str, str | bytes]]:
    """The labelled parts that key the dependency layer (layers.layer_key hashes them): the inputs of the
    install, prune and strip steps, and nothing from the source folder."""
    req = requirements_file(spec)
    return [
        # What makes the output bytes besides the inputs: the bundler's code, the exact Python (its marshal
        # and compiler write the .pyc) and zlib (its deflate writes the zip).
        ("bundler", bundler_code(PACKAGE_DIR)),
        ("python", sys.version),
        ("zlib", zlib.ZLIB_RUNTIME_VERSION),
        ("tool", tool),
        ("runtime", spec.runtime),
        ("architecture", spec.architecture),
        ("dependency-excludes", json.dumps(sorted(spec.dependency_excludes))),
        ("strip", strip.strip_identity() if spec.strip_native else "off"),
        ("requirements-name", req.name),
        ("requirements", req.read_bytes()),
        # Which manifest, and the local packages' wheels by their source content.
        *manifest.resolve(spec).identity(),
        # Wheels built here from pure-Python sdists: part of what gets installed.
        ("built-wheels", json.dumps(sorted(list(w) for w in wheels))),
    ]
