"""The source layer: per-file results of one build of a source folder, kept for the next build of it.

A source edit changes a file or two. Parsing every module for the import closure, compiling the ones init
imports and deflating every file's zip entry again would be most of a rebuild, so each of those results is
kept, keyed by everything that decides it: the kind of result, the file's path in the bundle, its bytes, and
the Python that computes it. A hit is therefore exactly what computing it again would give, which is why a
layered build and a clean one give the same bytes (the tests compare them).

One file per source folder holds the results the last build used: it prunes itself, and a lost, stale or
unreadable file costs only the recomputation. It is a pickle of the bundler's own values in the bundler's own
cache folder, which is no more trusted than uv's cache next to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pickle
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# Bump when what a kind of result holds changes. The bundler's own code is part of the header too, so a change
# to how a result is computed (the closure's parser, the compiler's marshalling, the zip entry) never meets
# results of the code before it.
RESULTS_FORMAT = "1"


def _bundler_code() -> str:
    digest = hashlib.sha256()
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    return digest.hexdigest()


_HEADER = (RESULTS_FORMAT, sys.version, importlib.util.MAGIC_NUMBER, _bundler_code())

T = TypeVar("T")


class FileResults:
    """Results by (kind, bundle path, bytes); `get` computes what the last build did not keep."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._kept: dict[str, object] = self._load(path) if path is not None else {}
        self._used: dict[str, object] = {}
        self._computed = 0
        self._lock = threading.Lock()  # zip entries are deflated on several threads

    @staticmethod
    def _load(path: Path) -> dict[str, object]:
        try:
            with path.open("rb") as handle:
                header, results = pickle.load(handle)
        except FileNotFoundError:
            return {}
        except Exception:  # any unreadable file (truncated, another format) is only a cold cache
            return {}
        return results if header == _HEADER and isinstance(results, dict) else {}

    @staticmethod
    def for_source(cache_dir: Path, source_dir: Path) -> FileResults:
        """The results kept for `source_dir` (by its resolved path: two checkouts keep their own)."""
        name = hashlib.sha256(str(source_dir.resolve()).encode()).hexdigest()[:24]
        return FileResults(cache_dir / "source-results" / f"{name}.pickle")

    def get(self, kind: str, name: str, data: bytes, compute: Callable[[], T]) -> T:
        """The `kind` result for the file `name` holding `data`; `compute` runs only on a miss, and what it
        raises is not kept (a file that does not compile is tried again next time)."""
        digest = hashlib.sha256(b"%s\0%s\0" % (kind.encode(), name.encode()))
        digest.update(data)
        key = digest.hexdigest()
        with self._lock:
            if key in self._used:
                return self._used[key]  # type: ignore[return-value]
            if key in self._kept:
                value = self._kept[key]
                self._used[key] = value
                return value  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._used[key] = value
            self._computed += 1
        return value

    def save(self) -> None:
        """Keep exactly what this build used, when that differs from what was kept."""
        if self.path is None or (self._computed == 0 and self._used.keys() == self._kept.keys()):
            return
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as handle:
                pickle.dump((_HEADER, self._used), handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, self.path)  # concurrent builds of one folder: the last one's results stay
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
