"""The source layer (stacks/bundling/source_cache.py): per-file results kept from one build for the next, so
an edit redoes the work of the edited files only, with the bytes a clean build gives."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from stacks.bundling import compile_imported, import_closure, source_cache, zipwrite
from stacks.bundling.build import build_bundle
from stacks.bundling.source_cache import FileResults
from tests.test_bundling import spec_for
from tests.test_layers import _cache_sharing_wheels


def _counting(calls: list[str]) -> Callable[[], bytes]:
    def compute() -> bytes:
        calls.append("computed")
        return b"result-%d" % len(calls)

    return compute


def test_a_result_is_computed_once_and_kept_for_the_next_build_by_its_bytes(tmp_path: Path) -> None:
    calls: list[str] = []
    path = tmp_path / "results.pickle"
    # GIVEN a build that computed two results
    first = FileResults(path)
    a = first.get("pyc", "a.py", b"A", _counting(calls))
    assert first.get("pyc", "a.py", b"A", _counting(calls)) == a
    first.get("pyc", "b.py", b"B", _counting(calls))
    first.save()
    assert len(calls) == 2
    # WHEN the next build asks for the same files with the same bytes, and for one that changed
    second = FileResults(path)
    assert second.get("pyc", "a.py", b"A", _counting(calls)) == a
    second.get("pyc", "b.py", b"B, edited", _counting(calls))
    # THEN only the changed one is computed; kind and path are part of the key too
    assert len(calls) == 3
    second.get("zip-entry", "a.py", b"A", _counting(calls))
    second.get("pyc", "c.py", b"A", _counting(calls))
    assert len(calls) == 5
    # AND what it keeps is what it used: b.py's old result is gone
    second.save()
    third = FileResults(path)
    third.get("pyc", "b.py", b"B", _counting(calls))
    assert len(calls) == 6


def test_a_failure_is_not_kept(tmp_path: Path) -> None:
    results = FileResults(tmp_path / "results.pickle")

    def broken() -> bytes:
        raise SyntaxError("invalid syntax")

    with pytest.raises(SyntaxError):
        results.get("pyc", "bad.py", b"def (", broken)
    results.save()
    with pytest.raises(SyntaxError):
        FileResults(tmp_path / "results.pickle").get("pyc", "bad.py", b"def (", broken)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a pickle", pickle.dumps(("another header", {"k": b"v"})), pickle.dumps([1, 2, 3])],
    ids=["empty", "garbage", "other-header", "other-shape"],
)
def test_an_unreadable_or_foreign_results_file_is_only_a_cold_cache(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "results.pickle"
    path.write_bytes(content)
    calls: list[str] = []
    results = FileResults(path)
    results.get("pyc", "a.py", b"A", _counting(calls))
    assert calls == ["computed"]
    results.save()
    assert FileResults(path).get("pyc", "a.py", b"A", _counting(calls)) == b"result-1"


def test_results_of_other_bundler_code_are_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.pickle"
    first = FileResults(path)
    first.get("closure", "a.py", b"A", lambda: b"old parser's result")
    first.save()
    # GIVEN the bundler's code changed (its digest is part of the header)
    monkeypatch.setattr(source_cache, "_HEADER", (*source_cache._HEADER[:-1], "other code"))
    # THEN nothing kept by the code before is used
    assert FileResults(path).get("closure", "a.py", b"A", lambda: b"new") == b"new"


def test_an_edit_reparses_recompiles_and_redeflates_only_the_edited_file(
    mini_backend: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "layered", shared_cache)
    spec = spec_for(mini_backend, cache, bytecode_modules=("handler", "worker"))
    build_bundle(spec)
    # GIVEN a one-line edit of one module init imports
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(handler.read_text() + "\nEDITED = 1\n")
    parsed: list[str] = []
    compiled: list[str] = []
    deflated: list[str] = []
    real_parse, real_pyc, real_deflate = import_closure._parse, compile_imported.pyc_data, zipwrite.deflate

    def parse(
        name: str, relative: str, package: bool, data: bytes, target: import_closure.Target
    ) -> import_closure.ModuleInfo:
        parsed.append(relative)
        return real_parse(name, relative, package, data, target)

    def pyc(data: bytes, relative: str) -> bytes:
        compiled.append(relative)
        return real_pyc(data, relative)

    def deflate(name: str, data: bytes, executable: bool) -> tuple[bytes, int, int, int]:
        deflated.append(name)
        return real_deflate(name, data, executable)

    monkeypatch.setattr(import_closure, "_parse", parse)
    monkeypatch.setattr("stacks.bundling.bytecode.pyc_data", pyc)
    monkeypatch.setattr(zipwrite, "deflate", deflate)
    # WHEN rebuilt
    rebuilt = build_bundle(spec)
    # THEN the edited file alone was parsed, compiled and deflated again (with build_info.json, which names
    # the new asset, and the edited module's .pyc)
    assert parsed == ["handler.py"]
    assert compiled == ["handler.py"]
    assert sorted(deflated) == ["__pycache__/handler.cpython-311.pyc", "build_info.json", "handler.py"]
    # AND the bytes are still a clean build's
    clean = build_bundle(spec_for(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache),
                                  bytecode_modules=("handler", "worker")))  # fmt: skip
    assert rebuilt.zip_path.read_bytes() == clean.zip_path.read_bytes()
