"""Which verifications a new bundle does not need to repeat: proven by the files an earlier one read.

A handler check (verification.py) depends only on what it is given (the interpreter, the check with its
environment, the verifier script) and on what it finds in the bundle: the files it reads and which files
exist. The verifier reports every bundle file it read: the modules it loaded (source and the .pyc it ran)
and every file it opened (`sys.addaudithook`'s "open" events: data files, build_info.json, native
libraries). So when a new bundle has the same file names as the one a check passed on, and every file that
check read has the same bytes, the check would run the same way: its pass is carried over instead of
starting an interpreter, and a source edit re-verifies only the functions whose checks read the file.

What this relies on: a handler's import is deterministic given those inputs (a check that reads the clock
or a random number at import is no more reproducible in a fresh run). Files outside the bundle (the
standard library, /etc) are part of the interpreter and machine, as they are for any run. Only passes are
recorded; a failure is always run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from stacks.bundling import layers

RECORD_FORMAT = "1"


def _sha256_file(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def bundle_listing(bundle: Path, layer: Path | None = None) -> str:
    """A digest of every file name in `bundle` and of its dependency layer's identity (`layer`: its tree,
    whose files never change under its content-addressed name): an added or removed file (a new optional
    module, a new .pyc, a data file) can change what an import does without changing any file it read."""
    names = [name for name, _path in layers.relative_files(bundle)]
    names.append(f"layer:{layer.parent.name if layer else ''}")
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def check_key(
    interpreter: str, script: Path, request: Mapping[str, object], environment: Mapping[str, str]
) -> str:
    """Everything a check is given besides the bundle: interpreter (its real path, size and time), verifier
    script, request, variables."""
    real = os.path.realpath(interpreter)
    try:
        stat = os.stat(real)
        identity: list[object] = [real, stat.st_size, stat.st_mtime_ns]
    except OSError:
        identity = [real]
    data = json.dumps(
        {
            "format": RECORD_FORMAT,
            "interpreter": identity,
            "verifier": _sha256_file(str(script)),
            "request": request,
            "environment": dict(sorted(environment.items())),
        },
        sort_keys=True,
    )
    return hashlib.sha256(data.encode()).hexdigest()


def proven(records: Path, key: str, bundle: Path, listing: str) -> bool:
    """True when a check with `key` passed on a bundle with the same file names and, for every file it
    read, the same bytes as in `bundle`."""
    try:
        record = json.loads((records / f"{key}.json").read_text())
    except (OSError, ValueError):
        return False
    files = record.get("files") if isinstance(record, dict) and record.get("listing") == listing else None
    if not isinstance(files, dict) or not files:
        return False
    return all(_sha256_file(os.path.join(bundle, rel)) == digest for rel, digest in files.items())


def remember(records: Path, key: str, bundle: Path, listing: str, reads: Iterable[str]) -> None:
    """Record that the check `key` passed on `bundle`, having read `reads` (bundle-relative paths)."""
    files = {rel: _sha256_file(os.path.join(bundle, rel)) for rel in sorted(set(reads))}
    if not files or any(digest is None for digest in files.values()):
        return  # nothing (or a vanished file) to prove a later bundle by: it will simply run again
    records.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".record-", dir=records)
    with os.fdopen(handle, "w") as out:
        json.dump({"listing": listing, "files": files}, out, sort_keys=True)
    os.replace(tmp, records / f"{key}.json")
