"""The layered bundle cache: a source-only change reuses the dependency layer (no install, no strip, no
re-deflate of dependency entries) and still gives the very bytes of a clean build; the merged zip is what
`zipfile` writes; the layer is never written through."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stacks.bundling import build, bytecode, install, layers, strip, zipwrite
from stacks.bundling.build import build_bundle
from stacks.bundling.input_hash import installer_identity
from stacks.bundling.spec import BundleResult, BundleSpec, BundlingError
from tests.conftest import process_ended
from tests.test_bundling import HANDLERS, _reference_zip, spec_for


def _cache_sharing_wheels(root: Path, shared_cache: Path) -> Path:
    """An empty bundle cache (no bundles, no layers) that shares uv's wheel cache: clean, but offline."""
    root.mkdir(parents=True)
    (shared_cache / "uv").mkdir(exist_ok=True)  # a fresh clone has none until some build made it
    (root / "uv").symlink_to(shared_cache / "uv", target_is_directory=True)
    return root


def _forbid(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("a source-only rebuild redid dependency work")

    for name in names:
        module, _, attr = name.rpartition(".")
        monkeypatch.setattr({"install": install, "strip": strip, "zipwrite": zipwrite}[module], attr, boom)


def _spec(backend: Path, cache: Path) -> BundleSpec:
    return spec_for(backend, cache, bytecode_modules=("handler", "worker"))


def test_source_only_rebuild_reuses_the_dependency_layer_and_equals_a_clean_build(
    mini_backend: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "layered", shared_cache)
    first = build_bundle(_spec(mini_backend, cache))
    assert not first.cache_hit and not first.dependencies_reused
    # GIVEN a one-line source change that also makes init import dependency modules it did not import before
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(
        "import fastapi.encoders  # noqa: F401\n" + handler.read_text() + "\n# one more line\n"
    )
    # WHEN the bundle is rebuilt on the same cache, with installing and stripping forbidden, and every
    # deflated store recorded
    stores: list[Path] = []
    real_store = zipwrite.store_entries

    def recording_store(files: object, blob_path: Path, index_path: Path) -> object:
        stores.append(blob_path)
        return real_store(files, blob_path, index_path)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        _forbid(patch, "install.install_dependencies", "strip.strip_native_libraries")
        patch.setattr(zipwrite, "store_entries", recording_store)
        layered = build_bundle(_spec(mini_backend, cache))
    # THEN the only entries deflated into a store are the .pyc of the new set of dependency imports, never
    # the layer's
    assert len(stores) == 1 and stores[0].parent.parent.parent.name == "pyc", stores
    # AND it is a new asset built on the cached layer
    assert not layered.cache_hit and layered.dependencies_reused
    assert layered.asset_hash != first.asset_hash
    assert "built on the cached dependency layer" in layered.summary(["BackendApi"])
    # AND byte for byte the zip a clean build of the same inputs writes (and zipfile would write)
    clean = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache)))
    assert not clean.dependencies_reused and clean.asset_hash == layered.asset_hash
    assert layered.zip_path.read_bytes() == clean.zip_path.read_bytes()
    assert (layered.unzipped_bytes, layered.zipped_bytes) == (clean.unzipped_bytes, clean.zipped_bytes)
    _reference_zip(layered, tmp_path / "reference.zip")
    assert layered.zip_path.read_bytes() == (tmp_path / "reference.zip").read_bytes()
    # AND the newly imported dependency module got its bytecode, taken into the layer's cache for next time
    with zipfile.ZipFile(layered.zip_path) as archive:
        names = set(archive.namelist())
    assert "fastapi/__pycache__/encoders.cpython-311.pyc" in names
    assert "__pycache__/handler.cpython-311.pyc" in names


def test_source_edit_importing_the_same_dependencies_starts_no_interpreter(
    mini_backend: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "layered", shared_cache)
    first = build_bundle(_spec(mini_backend, cache))
    # GIVEN a source edit: a new module of the bundle that the handler imports at init (stdlib imports only),
    # and one the worker imports lazily
    src = mini_backend / "src"
    (src / "helpers").mkdir()
    (src / "helpers" / "__init__.py").write_text("import json\n\nVALUE = json.dumps(1)\n")
    (src / "helpers" / "later.py").write_text("LATER = 2\n")
    handler = src / "handler.py"
    handler.write_text("from helpers import VALUE  # noqa: F401\n" + handler.read_text())
    worker = src / "worker.py"
    worker.write_text(
        worker.read_text()
        + "\n\ndef later() -> int:\n    from helpers.later import LATER\n\n    return LATER\n"
    )
    # WHEN it is rebuilt on the same cache, recording every process the build starts
    started: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args: list[str], *a: object, **k: object) -> object:
        started.append([str(x) for x in args])
        return real_run(args, *a, **k)  # type: ignore[call-overload]

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "run", recording_run)
        layered = build_bundle(_spec(mini_backend, cache))
    assert layered.dependencies_reused and layered.asset_hash != first.asset_hash
    # THEN no Python interpreter ran: the dependency imports were the same, so their modules were known
    assert not [
        cmd for cmd in started if Path(cmd[0]).name.startswith("python") or cmd[0] == sys.executable
    ], started
    assert not [cmd for cmd in started if str(bytecode.COMPILE_SCRIPT) in cmd]
    # AND every source file a compiled function runs at init has bytecode (the new module's); lazy ones not
    pycs = _shipped_pyc(layered)
    info = json.loads((layered.directory / "build_info.json").read_text())
    compiled = [
        fn
        for fn, handler in HANDLERS
        if handler.rpartition(".")[0] in _spec(mini_backend, cache).bytecode_modules
    ]
    assert compiled
    for function in compiled:
        for file in info["closure"][function]["init"]:
            assert importlib.util.cache_from_source(file) in pycs, (function, file)
    assert "helpers/__pycache__/__init__.cpython-311.pyc" in pycs
    assert "helpers/__pycache__/later.cpython-311.pyc" not in pycs
    # AND the dependency bytecode is what the first build had
    first_pycs = _shipped_pyc(first)
    assert {p for p in pycs if not p.startswith("helpers/")} == first_pycs
    # AND the bytes are a clean build's
    clean = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache)))
    assert not clean.dependencies_reused and clean.zip_path.read_bytes() == layered.zip_path.read_bytes()


def test_unchanged_inputs_after_a_layered_build_are_a_cache_hit(
    mini_backend: Path, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_bundle(_spec(mini_backend, shared_cache))
    _forbid(monkeypatch, "install.install_dependencies", "zipwrite.store_entries")
    monkeypatch.setattr(bytecode, "write_bytecode", lambda *_a: pytest.fail("compiled on a hit"))
    again = build_bundle(_spec(mini_backend, shared_cache))
    assert again.cache_hit and again.directory == first.directory and again.seconds < 1


def test_a_source_file_over_a_dependency_file_never_writes_into_the_layer(
    mini_backend: Path, shared_cache: Path
) -> None:
    build_bundle(_spec(mini_backend, shared_cache))
    spec = _spec(mini_backend, shared_cache)
    tool, command = installer_identity(spec)
    layer = build.dependency_layer(spec, tool, command, install.prepare_wheelhouse(spec, tool, command))
    assert not layer.built
    # GIVEN a source file at the path of a dependency's file (a hard link in the bundle folder)
    target = next(e.name for e in layer.entries if e.name.endswith(".dist-info/METADATA"))
    before = (layer.tree / target).read_bytes()
    (mini_backend / "src" / target).parent.mkdir(parents=True)
    (mini_backend / "src" / target).write_text("Metadata-Version: 2.1\nName: shadowed\n")
    # WHEN the bundle is built, THEN the bundle (its folder the whole bundle: they share a top-level name)
    # has the source's file, and the layer still has its own
    result = build_bundle(_spec(mini_backend, shared_cache))
    assert result.layer is None
    assert (result.directory / target).read_text().endswith("Name: shadowed\n")
    assert (layer.tree / target).read_bytes() == before
    with zipfile.ZipFile(result.zip_path) as archive:
        assert archive.read(target).endswith(b"Name: shadowed\n")
        assert archive.namelist().count(target) == 1


def test_failed_dependency_install_leaves_no_layer(mini_backend: Path, tmp_path: Path) -> None:
    (mini_backend / "requirements.txt").write_text("this-package-does-not-exist-credmate==1.0\n")
    with pytest.raises(BundlingError):
        build_bundle(spec_for(mini_backend, tmp_path))
    assert list((tmp_path / "layers").iterdir()) == []


def test_merged_zip_equals_zipfile_for_interleaved_replaced_and_new_entries(tmp_path: Path) -> None:
    # GIVEN a stored layer of files and a tree holding those, new files sorted between them and a replacement
    layer_tree, tree = tmp_path / "layer", tmp_path / "tree"
    files = {
        "a/one.py": b"one\n" * 300,
        "c/three.py": b"three\n",
        "c/z.bin": os.urandom(50_000),
        "e/run.sh": b"#!/bin/sh\n",
        "pkg/sub/\u00e9.txt": b"non-ascii",
    }
    for name, data in files.items():
        (layer_tree / name).parent.mkdir(parents=True, exist_ok=True)
        (layer_tree / name).write_bytes(data)
    (layer_tree / "e/run.sh").chmod(0o755)
    stored = [(n, layer_tree / n) for n in sorted(files)]
    entries = zipwrite.store_entries(stored, tmp_path / "entries.bin", tmp_path / "index.json")
    assert zipwrite.load_index(tmp_path / "index.json") == entries
    shutil.copytree(layer_tree, tree)
    (tree / "b.py").write_text("new\n")
    (tree / "c" / "__pycache__").mkdir()
    (tree / "c" / "__pycache__" / "three.pyc").write_bytes(b"\x00" * 100)
    (tree / "c" / "three.py").write_text("replaced\n")
    # AND a second store (the .pyc's) with entries sorted between the layer's, one of them replacing a layer
    # file, and one replaced in turn by a new entry
    second = {"a/__pycache__/one.pyc": b"\x01" * 80, "c/z.bin": b"from the second store", "e/run.sh": b"no"}
    second_tree = tmp_path / "second"
    for name, data in second.items():
        (second_tree / name).parent.mkdir(parents=True, exist_ok=True)
        (second_tree / name).write_bytes(data)
    pyc_entries = zipwrite.store_entries(
        [(n, second_tree / n) for n in sorted(second)], tmp_path / "set.bin", tmp_path / "set.json"
    )
    (tree / "a" / "__pycache__").mkdir()
    (tree / "a" / "__pycache__" / "one.pyc").write_bytes(second["a/__pycache__/one.pyc"])
    (tree / "c" / "z.bin").write_bytes(second["c/z.bin"])
    (tree / "e" / "run.sh").write_bytes(b"newest\n")
    new = zipwrite.NewEntries()
    new.add_files([(n, tree / n) for n in ("b.py", "c/__pycache__/three.pyc", "c/three.py", "e/run.sh")])
    # WHEN merged, THEN the bytes are zipfile's for the whole tree
    stores = [
        zipwrite.Store(entries, tmp_path / "entries.bin"),
        zipwrite.Store(pyc_entries, tmp_path / "set.bin"),
    ]
    size = zipwrite.write_merged(tmp_path / "merged.zip", stores, new, replaced=[])
    _reference_zip(tree, tmp_path / "reference.zip")
    assert (tmp_path / "merged.zip").read_bytes() == (tmp_path / "reference.zip").read_bytes()
    assert size == (tmp_path / "merged.zip").stat().st_size
    with zipfile.ZipFile(tmp_path / "merged.zip") as archive:
        assert archive.testzip() is None and archive.read("c/three.py") == b"replaced\n"


def test_layer_key_covers_every_part() -> None:
    base: list[tuple[str, str | bytes]] = [("tool", "uv 0.13.9"), ("requirements", b"fastapi==1\n")]
    keys = {
        layers.layer_key(base),
        layers.layer_key([("tool", "uv 0.14.0"), base[1]]),
        layers.layer_key([base[0], ("requirements", b"fastapi==2\n")]),
        layers.layer_key([*base, ("architecture", "arm64")]),
    }
    assert len(keys) == 4


def test_a_lazily_imported_dependency_ships_with_its_bytecode(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    # GIVEN a dependency module no handler imports at init: no bytecode ships for it
    module, pyc = "starlette.staticfiles", "starlette/__pycache__/staticfiles.cpython-311.pyc"
    first = build_bundle(_spec(mini_backend, shared_cache))
    assert pyc not in _shipped_pyc(first)
    # WHEN the worker imports it inside a function (run on a request, by verification and by the probe)
    worker = mini_backend / "src" / "worker.py"
    worker.write_text(
        worker.read_text() + f"\n\ndef serve() -> object:\n    from {module} import StaticFiles\n\n"
        "    return StaticFiles\n"
    )
    lazy = build_bundle(_spec(mini_backend, shared_cache))
    # THEN its bytecode ships too (Lambda's read-only /var/task would otherwise compile it on every cold
    # start), from the layer's cache, and the zip is still a clean build's
    assert pyc in _shipped_pyc(lazy)
    info = json.loads((lazy.directory / "build_info.json").read_text())
    assert module in info["lazy_imports"]["Worker"]
    clean = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache)))
    assert clean.zip_path.read_bytes() == lazy.zip_path.read_bytes()


def _tree(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))


def _shipped_pyc(result: BundleResult) -> set[str]:
    with zipfile.ZipFile(result.zip_path) as archive:
        return {name for name in archive.namelist() if name.endswith(".pyc")}


def test_a_source_file_over_a_dependency_module_never_ships_that_modules_bytecode(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "layered", shared_cache)
    first = build_bundle(_spec(mini_backend, cache))
    name = "typing_extensions.py"
    pyc = importlib.util.cache_from_source(name)
    assert pyc in _shipped_pyc(first), "the dependencies' imports load typing_extensions"
    # GIVEN the source ships a file of the same path as a dependency module whose .pyc the layer caches
    assert first.layer is not None
    (mini_backend / "src" / name).write_bytes((first.layer / name).read_bytes() + b"\n# the source's own\n")
    # WHEN rebuilt on the layer, and clean
    rebuilt = build_bundle(_spec(mini_backend, cache))
    clean = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache)))
    # THEN the cached .pyc (of the dependency's bytes) ships in neither: it would run instead of the file
    for bundle in (rebuilt, clean):
        # AND the name shared with the layer makes the bundle's folder the whole bundle, the source's file
        # in it, as on Lambda
        assert bundle.layer is None and bundle.paths == (bundle.directory,)
        assert (bundle.directory / name).read_bytes().endswith(b"# the source's own\n")
        assert (bundle.directory / "fastapi" / "__init__.py").is_file()
        assert pyc not in _shipped_pyc(bundle)
        with zipfile.ZipFile(bundle.zip_path) as archive:
            assert archive.read(name).endswith(b"# the source's own\n")
    assert rebuilt.zip_path.read_bytes() == clean.zip_path.read_bytes()


def test_a_new_layer_compiles_the_dependency_bytecode_while_it_deflates_with_the_same_bytes(
    mini_backend: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    # GIVEN a clean build, recording which thread starts a bytecode-compiling interpreter
    starts: list[str] = []
    real_popen = subprocess.Popen

    def recording_popen(args: list[str], *a: object, **k: object) -> object:
        if str(bytecode.COMPILE_SCRIPT) in [str(x) for x in args]:
            starts.append(threading.current_thread().name)
        return real_popen(args, *a, **k)  # type: ignore[call-overload]

    with monkeypatch.context() as patch:
        patch.setattr(subprocess, "Popen", recording_popen)
        ahead = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "ahead", shared_cache)))
    # THEN one interpreter, for init's imports and the lazy ones together, ran beside the layer's deflating
    # (not on the build's own thread), and the build's own bytecode step found its record
    assert len(starts) == 1 and starts[0] != "MainThread", starts
    # AND the bytes are those of a clean build that compiles in turn
    with monkeypatch.context() as patch:
        patch.setattr(build, "prefetch_bytecode", lambda *_a: None)
        in_turn = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "in-turn", shared_cache)))
    assert ahead.zip_path.read_bytes() == in_turn.zip_path.read_bytes()
    assert _tree(ahead.directory) == _tree(in_turn.directory)
    assert _tree(ahead.layer or tmp_path) == _tree(in_turn.layer or tmp_path)


def test_a_source_importing_an_extra_file_at_init_still_gets_its_dependency_bytecode(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    # GIVEN an extra bundle file (not in the source folder, so not in the layer's tree either) that the
    # handler imports at init: the compile ahead of time cannot resolve it
    extra = tmp_path / "extra_module.py"
    extra.write_text("from fastapi import status  # noqa: F401\n\nVALUE = 1\n")
    handler = mini_backend / "src" / "handler.py"
    handler.write_text("from extra_module import VALUE  # noqa: F401\n" + handler.read_text())
    spec = spec_for(
        mini_backend,
        _cache_sharing_wheels(tmp_path / "cache", shared_cache),
        bytecode_modules=("handler", "worker"),
        extra_files=(("extra_module.py", extra),),
    )
    # WHEN built clean
    result = build_bundle(spec)
    # THEN the build compiled in turn: the dependency bytecode is there, the extra module's too
    assert {"fastapi/__pycache__/__init__.cpython-311.pyc", "__pycache__/extra_module.cpython-311.pyc"} <= (
        _shipped_pyc(result)
    )


def _layer_with_a_failing_import(
    tmp_path: Path, module: str, then: str
) -> tuple[layers.DependencyLayer, Path]:
    """A layer holding `fine` and `module`, which records its interpreter's pid at import, then runs `then`;
    and that pid file."""
    tree = tmp_path / "deps-x" / "tree"
    tree.mkdir(parents=True)
    pid_file = tmp_path / f"{module}.pid"
    (tree / f"{module}.py").write_text(
        f"import os, time\n\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n{then}\n"
    )
    (tree / "fine.py").write_text("VALUE = 1\n")
    return layers.DependencyLayer(tree.parent, "x", (), (), built=False), pid_file


def test_a_dependency_import_that_hangs_stops_the_build_naming_it_and_its_interpreter_is_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a layer whose dependency waits forever at import (a network call at module level, say)
    layer, pid_file = _layer_with_a_failing_import(tmp_path, "hangs", "time.sleep(60)")
    monkeypatch.setattr(bytecode, "COMPILE_TIMEOUT_SECONDS", 2)
    # WHEN its bytecode is compiled, THEN the build stops, naming the imports and the time allowed
    with pytest.raises(
        bytecode.BytecodeError, match=r"dependencies fine, hangs to .* took over 2 s, in `hangs`"
    ):
        bytecode.dependency_modules(layer, [("fine", ()), ("hangs", ())])
    # AND the interpreter is gone, and no record claims the imports were compiled
    assert process_ended(pid_file)
    assert not list(layer.path.glob("pyc/*/*.json"))


def test_a_dependency_import_that_crashes_the_interpreter_stops_the_build_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a layer whose dependency ends the interpreter at import, before another one is imported
    layer, pid_file = _layer_with_a_failing_import(tmp_path, "crashes", "os._exit(3)")
    monkeypatch.setattr(bytecode, "COMPILE_TIMEOUT_SECONDS", 50)
    # WHEN its bytecode is compiled, THEN the crash stops the build at once (not the time limit), naming the
    # imports and the exit status
    with pytest.raises(
        bytecode.BytecodeError, match=r"crashes, fine to compile .* crashed the .*\(exit 3\), in `crashes`"
    ):
        bytecode.dependency_modules(layer, [("crashes", ()), ("fine", ())])
    # AND the interpreter is gone, and no record claims the imports were compiled
    assert process_ended(pid_file)
    assert not list(layer.path.glob("pyc/*/*.json"))


def test_a_dependency_import_that_hung_while_the_layer_was_made_is_reported_not_awaited_again(
    mini_backend: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the imports compiled ahead (while a new layer deflates) hang past the time allowed
    def hung(*_a: object, **_k: object) -> None:
        raise bytecode.BytecodeError(
            "importing the dependencies hangs to compile their bytecode took over 1 s"
        )

    def again(*_a: object, **_k: object) -> None:
        raise AssertionError("the build waited for the same imports a second time")

    monkeypatch.setattr(bytecode, "prefetch", hung)
    monkeypatch.setattr(bytecode, "dependency_modules", again)
    # WHEN built clean, THEN synth stops with that message
    with pytest.raises(BundlingError, match="hangs to compile their bytecode took over 1 s"):
        build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "cache", shared_cache)))


def test_dependency_bytecode_lost_from_the_cache_is_made_again(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "layered", shared_cache)
    first = build_bundle(_spec(mini_backend, cache))
    # GIVEN a partly cleared cache: one dependency .pyc gone from the layer's tree
    pyc = "fastapi/__pycache__/applications.cpython-311.pyc"
    assert first.layer is not None
    lost = first.layer / pyc
    before = lost.read_bytes()
    lost.unlink()
    # WHEN the source changes
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(handler.read_text() + "\n# edited\n")
    rebuilt = build_bundle(_spec(mini_backend, cache))
    # THEN the build made it again, and ships it as before
    assert lost.read_bytes() == before and pyc in _shipped_pyc(rebuilt)
    clean = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache)))
    assert rebuilt.zip_path.read_bytes() == clean.zip_path.read_bytes()


def _damage(path: Path) -> None:
    """A few bytes in the middle overwritten, as a disk error or a hand edit would leave them."""
    with path.open("r+b") as data:
        data.seek(path.stat().st_size // 2)
        data.write(b"\x00" * 64)


def _crc_failures(zip_path: Path) -> str | None:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.testzip()


def test_a_damaged_cache_entry_is_made_again_never_copied_into_a_deployed_zip(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    cache = _cache_sharing_wheels(tmp_path / "cache", shared_cache)
    first = build_bundle(_spec(mini_backend, cache))
    assert _crc_failures(first.zip_path) is None
    # GIVEN the cached bundle's zip damaged: THEN the next synth builds it again instead of deploying it
    _damage(first.zip_path)
    again = build_bundle(_spec(mini_backend, cache))
    assert not again.cache_hit and again.asset_hash == first.asset_hash
    assert _crc_failures(again.zip_path) is None
    # GIVEN the dependency layer's stored entries damaged, and a source edit that merges them into a new zip
    layer = next((cache / "layers").glob("deps-*/entries.bin"))
    _damage(layer)
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(handler.read_text() + "\n# one more line\n")
    edited = build_bundle(_spec(mini_backend, cache))
    # THEN the layer is made again, and the zip is whole, byte for byte what a clean build writes
    assert not edited.dependencies_reused
    assert _crc_failures(edited.zip_path) is None
    clean = build_bundle(_spec(mini_backend, _cache_sharing_wheels(tmp_path / "clean", shared_cache)))
    assert clean.zip_path.read_bytes() == edited.zip_path.read_bytes()
    # GIVEN, last, a bytecode set's stored entries damaged, and another edit: THEN the set is deflated again
    pyc_set = next((cache / "layers").glob("deps-*/pyc/*/*/entries.bin"))
    _damage(pyc_set)
    handler.write_text(handler.read_text() + "# and another\n")
    assert _crc_failures(build_bundle(_spec(mini_backend, cache)).zip_path) is None
    assert zipwrite.intact(pyc_set)
