"""The bundler: every input changes the asset, nothing else does; builds are reproducible and cached;
the Lambda platform's wheels are installed; a bundle that would not import stops synth."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from stacks.bundling import input_hash as hashing
from stacks.bundling import install, sdist, strip, zipwrite
from stacks.bundling.build import build_bundle
from stacks.bundling.input_hash import input_hash
from stacks.bundling.spec import (
    DEFAULT_DEPENDENCY_EXCLUDES,
    BundleResult,
    BundleSpec,
    BundlingError,
    HandlerCheck,
    MissingWheelError,
    bundler_code,
)

TOOL = "uv 0.13.9"
HANDLERS = (
    ("BackendApi", "handler.lambda_handler"),
    ("Worker", "worker.lambda_handler"),
    ("CampaignScheduler", "campaign_scheduler.lambda_handler"),
)
CHECKS = [
    HandlerCheck(function="BackendApi", handler="handler.lambda_handler", http_health=True),
    HandlerCheck(function="Worker", handler="worker.lambda_handler"),
    HandlerCheck(function="CampaignScheduler", handler="campaign_scheduler.lambda_handler"),
]


def spec_for(backend: Path, cache: Path, **changes: object) -> BundleSpec:
    spec = BundleSpec(
        source_dir=backend / "src",
        requirements=backend / "requirements.txt",
        cache_dir=cache,
        handlers=HANDLERS,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Never stale, never spurious


def _mutations(backend: Path, extra: Path) -> dict[str, Callable[[BundleSpec], BundleSpec]]:
    src = backend / "src"

    def edit(path: Path, text: str) -> Callable[[BundleSpec], BundleSpec]:
        def apply(spec: BundleSpec) -> BundleSpec:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return spec

        return apply

    def rename(spec: BundleSpec) -> BundleSpec:
        (src / "worker.py").rename(src / "worker2.py")
        return spec

    def delete(spec: BundleSpec) -> BundleSpec:
        (src / "campaign_scheduler.py").unlink()
        return spec

    return {
        "source file content": edit(src / "handler.py", (src / "handler.py").read_text() + "\n# changed\n"),
        "new source file": edit(src / "shared_pkg" / "extra.py", "X = 1\n"),
        "renamed source file": rename,
        "deleted source file": delete,
        "new migration": edit(
            src / "migrations" / "versions" / "0003_third.py", 'revision = "0003"\ndown_revision = "0002"\n'
        ),
        "requirements content": edit(backend / "requirements.txt", "fastapi==0.115.6\nmangum==0.18.0\n"),
        "lock file appears": edit(
            backend / "requirements.lock",
            "# requirements-sha256: "
            f"{hashlib.sha256((backend / 'requirements.txt').read_bytes()).hexdigest()}\n"
            "fastapi==0.115.6 --hash=sha256:00\n",
        ),
        "runtime": lambda s: replace(s, runtime="python3.12"),
        "architecture": lambda s: replace(s, architecture="arm64"),
        "excludes option": lambda s: replace(s, excludes=(*s.excludes, "*.md")),
        "bytecode option": lambda s: replace(s, compile_bytecode=False),
        "extra file added": lambda s: replace(s, extra_files=(("probe.py", extra),)),
        "migrations option": lambda s: replace(s, migrations_dir=None),
        "bytecode modules option": lambda s: replace(s, bytecode_modules=("handler",)),
        "dependency excludes option": lambda s: replace(s, dependency_excludes=()),
        "strip option": lambda s: replace(s, strip_native=False),
        "handlers option": lambda s: replace(s, handlers=s.handlers[:1]),
    }


def test_every_kind_of_input_change_changes_the_hash(mini_backend: Path, tmp_path: Path) -> None:
    extra = tmp_path / "probe.py"
    extra.write_text("PROBE = 1\n")
    baseline = input_hash(spec_for(mini_backend, tmp_path), TOOL)
    seen = {baseline: "baseline"}
    for name in _mutations(mini_backend, extra):
        # GIVEN a fresh copy of the backend, WHEN one input changes, THEN the hash is new and unique
        backend = tmp_path / f"case-{len(seen)}"
        shutil.copytree(mini_backend, backend)
        mutated = _mutations(backend, extra)[name](spec_for(backend, tmp_path))
        digest = input_hash(mutated, TOOL)
        assert digest not in seen, f"{name} gave the same hash as {seen.get(digest)}"
        seen[digest] = name
    assert input_hash(spec_for(mini_backend, tmp_path), "uv 0.14.0") != baseline, "installer version"


@pytest.mark.parametrize("module", ["build.py", "import_reader.py"])
def test_a_change_to_the_bundlers_code_changes_the_hash_with_no_constant_bumped(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    before = input_hash(spec_for(mini_backend, tmp_path), TOOL)
    layer_before = hashing.dependency_key(spec_for(mini_backend, tmp_path), TOOL, ())
    # GIVEN a copy of the bundler package in which one module changed by a comment
    package = tmp_path / "bundling"
    shutil.copytree(hashing.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    assert bundler_code(package) == bundler_code(hashing.PACKAGE_DIR)
    changed = package / module  # a module of the package, or of a subpackage
    changed.write_text(changed.read_text() + "\n# a change to how bundles are built\n")
    # WHEN the hash is taken with that package as the bundler's code
    monkeypatch.setattr(hashing, "PACKAGE_DIR", package)
    # THEN the asset and the dependency layer are new
    assert input_hash(spec_for(mini_backend, tmp_path), TOOL) != before
    assert hashing.dependency_key(spec_for(mini_backend, tmp_path), TOOL, ()) != layer_before


def test_a_change_to_the_bundlers_code_makes_new_sdist_wheelhouses_with_no_constant_bumped(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_for(mini_backend, tmp_path)
    before = sdist.wheelhouse_key(spec, spec.requirements, TOOL)
    # GIVEN a copy of the bundler in which the sdist builder changed by a comment
    package = tmp_path / "bundling"
    shutil.copytree(hashing.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    builder = package / "sdist.py"
    builder.write_text(builder.read_text() + "\n# a change to how sdists become wheels\n")
    monkeypatch.setattr(sdist, "BUNDLER_DIR", package)
    # THEN the cached wheelhouses of the old builder are not reused
    assert sdist.wheelhouse_key(spec, spec.requirements, TOOL) != before


@pytest.mark.parametrize(
    ("module", "name", "value"),
    [("sys", "version", "3.11.99 (other)"), ("zlib", "ZLIB_RUNTIME_VERSION", "9.9")],
)
def test_the_exact_python_and_zlib_are_part_of_the_hash(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, name: str, value: str
) -> None:
    before = input_hash(spec_for(mini_backend, tmp_path), TOOL)
    monkeypatch.setattr(getattr(hashing, module), name, value)
    assert input_hash(spec_for(mini_backend, tmp_path), TOOL) != before


def test_unchanged_tree_and_ignored_files_keep_the_hash(mini_backend: Path, tmp_path: Path) -> None:
    spec = spec_for(mini_backend, tmp_path)
    before = input_hash(spec, TOOL)
    src = mini_backend / "src"
    # Noise an editor, a test run or an old build leaves behind must not make a new Lambda version.
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"junk")
    (src / "tests").mkdir()
    (src / "tests" / "test_x.py").write_text("def test(): pass\n")
    (src / ".DS_Store").write_bytes(b"\0")
    (src / "handler.py.swp").write_bytes(b"\0")
    (src / "build_info.json").write_text("{}")
    (src / "handler.py").touch()  # a new mtime alone changes nothing
    assert input_hash(spec, TOOL) == before


def test_missing_or_empty_requirements_is_an_error(mini_backend: Path, tmp_path: Path) -> None:
    req = mini_backend / "requirements.txt"
    req.write_text("# nothing here\n\n")
    with pytest.raises(BundlingError, match=r"requirements\.txt lists no packages"):
        input_hash(spec_for(mini_backend, tmp_path), TOOL)
    req.unlink()
    with pytest.raises(BundlingError, match=r"requirements file .*requirements\.txt is missing"):
        build_bundle(spec_for(mini_backend, tmp_path))


def test_missing_source_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mangum==0.19.0\n")
    with pytest.raises(BundlingError, match=r"source folder .*src does not exist"):
        input_hash(
            BundleSpec(
                source_dir=tmp_path / "src", requirements=tmp_path / "requirements.txt", cache_dir=tmp_path
            ),
            TOOL,
        )


# ---------------------------------------------------------------------------------------------------------
# Builds: reproducible, cached, for the Lambda platform


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BundleResult:
    from tests.conftest import MINI_BACKEND

    return build_bundle(spec_for(MINI_BACKEND, tmp_path_factory.mktemp("cache-a")))


def unpacked(result: BundleResult, dest: Path) -> Path:
    """What ships: the bundle's zip, extracted (as Lambda's /var/task), modes kept."""
    return zipwrite.extract(result.zip_path, dest)


def _elf_machines(directory: Path) -> set[int]:
    machines = set()
    for so in directory.rglob("*.so"):
        header = so.read_bytes()[:20]
        if header[:4] == b"\x7fELF":
            machines.add(int.from_bytes(header[18:20], "little"))
    return machines


def test_bundle_holds_source_dependencies_build_info_and_bytecode(
    built: BundleResult, tmp_path: Path
) -> None:
    root = unpacked(built, tmp_path / "task")
    assert (root / "handler.py").is_file() and (root / "shared_pkg" / "__init__.py").is_file()
    assert (root / "mangum").is_dir() and (root / "fastapi").is_dir()
    assert not (root / "bin").exists(), "console scripts carry host paths"
    assert not list(root.glob("*.dist-info/RECORD"))
    info = json.loads((root / "build_info.json").read_text())
    assert info["code_version"] == built.asset_hash[:12]
    assert info["schema_head"] == "0002"
    assert info["runtime"] == "python3.11" and info["architecture"] == "x86_64"
    assert _elf_machines(root) == {62}, "x86_64 wheels only"
    pyc = root / "__pycache__" / "handler.cpython-311.pyc"
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    assert flags == 0b01, "unchecked-hash pyc: used on a read-only /var/task without a source check"
    with zipfile.ZipFile(built.zip_path) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "credmate_probe.py" not in names and "handler.py" in names
    assert built.zipped_bytes == built.zip_path.stat().st_size


def test_two_clean_builds_are_byte_identical(built: BundleResult, tmp_path: Path) -> None:
    from tests.conftest import MINI_BACKEND

    again = build_bundle(spec_for(MINI_BACKEND, tmp_path / "cache-b"))
    assert not again.cache_hit
    assert again.asset_hash == built.asset_hash
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (built.zip_path, again.zip_path)]
    assert digest[0] == digest[1]


def test_unchanged_inputs_are_a_cache_hit_without_installing(
    built: BundleResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import MINI_BACKEND

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("installer ran on a cache hit")

    monkeypatch.setattr(install, "install_dependencies", boom)
    again = build_bundle(spec_for(MINI_BACKEND, built.directory.parents[2]))
    assert again.cache_hit and again.directory == built.directory


def test_arm64_gets_aarch64_wheels(mini_backend: Path, shared_cache: Path) -> None:
    result = build_bundle(spec_for(mini_backend, shared_cache, architecture="arm64"))
    assert _elf_machines(unpacked(result, mini_backend / "task")) == {183}, "aarch64 wheels only"


def test_failed_install_leaves_nothing_half_written(mini_backend: Path, tmp_path: Path) -> None:
    (mini_backend / "requirements.txt").write_text("this-package-does-not-exist-credmate==1.0\n")
    with pytest.raises(BundlingError, match="this-package-does-not-exist-credmate"):
        build_bundle(spec_for(mini_backend, tmp_path))
    assert list((tmp_path / "bundles").iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# Size and speed: bytecode for what init imports, no dependency test suites, no debug sections, parallel zip


def test_bytecode_covers_exactly_what_the_handlers_import(mini_backend: Path, shared_cache: Path) -> None:
    # GIVEN a bundle whose bytecode is limited to what `handler` imports at init
    result = build_bundle(spec_for(mini_backend, shared_cache, bytecode_modules=("handler",)))
    root = unpacked(result, mini_backend / "task")
    pycs = {p.relative_to(root).as_posix() for p in root.rglob("*.pyc")}
    # THEN the handler, its own package and its dependencies have bytecode; the worker (not imported) has not
    assert "__pycache__/handler.cpython-311.pyc" in pycs
    assert "shared_pkg/__pycache__/__init__.cpython-311.pyc" in pycs
    assert any(p.startswith("mangum/") for p in pycs) and any(p.startswith("fastapi/") for p in pycs)
    assert "__pycache__/worker.cpython-311.pyc" not in pycs
    assert "__pycache__/campaign_scheduler.cpython-311.pyc" not in pycs
    assert result.bytecode_files == len(pycs)
    # AND each file is an unchecked-hash pyc whose code says /var/task, as compileall would write it
    data = (root / "__pycache__" / "handler.cpython-311.pyc").read_bytes()
    assert int.from_bytes(data[4:8], "little") == 0b01
    import marshal

    assert marshal.loads(data[16:]).co_filename == "/var/task/handler.py"


def test_bytecode_of_extra_files_follows_their_init_imports(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    from stacks.backend_bundle import PROBE_MODULE

    # GIVEN an extra file at the bundle root that imports a source package and a dependency at module level,
    # a source module only inside a function, and the probe wrapper as the stack adds it
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        "import importlib\nimport shared_pkg\nfrom mangum import Mangum\n\n\n"
        "def later() -> object:\n    import worker\n\n    return worker, Mangum\n"
    )
    spec = spec_for(
        mini_backend,
        shared_cache,
        extra_files=(("credmate_probe.py", PROBE_MODULE), ("wrapper.py", wrapper)),
        bytecode_modules=("credmate_probe", "wrapper"),
    )
    # WHEN the bundle is built with bytecode for the two
    root = unpacked(build_bundle(spec), tmp_path / "task")
    pycs = {p.relative_to(root).as_posix() for p in root.rglob("*.pyc")}
    # THEN both have bytecode, and so do the source and dependency modules the wrapper imports at init
    assert {"__pycache__/credmate_probe.cpython-311.pyc", "__pycache__/wrapper.cpython-311.pyc"} <= pycs
    assert "shared_pkg/__pycache__/__init__.cpython-311.pyc" in pycs
    assert "mangum/__pycache__/__init__.cpython-311.pyc" in pycs
    # AND what only a function body imports, or nothing imports, has none
    assert "__pycache__/worker.cpython-311.pyc" not in pycs
    assert "__pycache__/handler.cpython-311.pyc" not in pycs
    assert not any(p.startswith("fastapi/") for p in pycs)


def test_bytecode_bytes_do_not_depend_on_the_compiling_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    from stacks.bundling import compile_imported

    # GIVEN a module with shared one-character strings, names used everywhere and a name used once
    source = (
        b'import sys\n\n\ndef f(self, name="?"):\n    return name + "" + "x y" + str(sys) + self.__name__\n'
    )
    source += b"rarely_used_name = 1\n"
    # WHEN it is compiled in a fresh `-I -S` interpreter and in this one, after making those strings busy
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import compile_imported; "
        f"sys.stdout.buffer.write(compile_imported.pyc_data({source!r}, 'pkg/mod.py'))"
    )
    fresh = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(Path(compile_imported.__file__).parent)],
        capture_output=True,
        check=True,
    ).stdout
    busy = [sys.intern("?"), sys.intern("name"), sys.intern("f"), sys.intern("rarely_used_name")]
    here = compile_imported.pyc_data(source, "pkg/mod.py")
    # THEN the bytes are the same: clean and layered builds agree whatever ran before
    assert busy and here == fresh
    assert __import__("marshal").loads(here[16:]).co_filename == "/var/task/pkg/mod.py"


def test_precompiled_bytecode_is_what_lambda_runs(
    mini_backend: Path, shared_cache: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    result = build_bundle(spec_for(mini_backend, shared_cache, bytecode_modules=("handler",)))
    # GIVEN a copy of the bundle whose handler source no longer parses (its .pyc is kept)
    copy = unpacked(result, tmp_path / "task")
    (copy / "handler.py").write_text("this is not python\n")
    # WHEN a read-only style interpreter imports it, THEN the unchecked-hash .pyc is used: no source check
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-B",
            "-c",
            f"import sys; sys.path.insert(0, {str(copy)!r}); import handler",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_dependency_excludes_drop_test_suites_and_stubs(tmp_path: Path) -> None:
    # GIVEN an installed tree as a wheel install leaves it
    files = [
        "passlib/tests/test_x.py",
        "passlib/hash.py",
        "greenlet/tests/_ext.so",
        "pkg/mod.pyi",
        "pkg/mod.py",
        "pkg/testsuite.py",
        "sqlalchemy/cyextension/util.pyx",
        "pkg-1.0.dist-info/RECORD",
        "pkg-1.0.dist-info/METADATA",
        "pkg/__pycache__/mod.cpython-311.pyc",
    ]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    # WHEN it is pruned with the default dependency excludes
    install.prune_installed(tmp_path, DEFAULT_DEPENDENCY_EXCLUDES)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    # THEN only what runs is left
    assert left == ["passlib/hash.py", "pkg-1.0.dist-info/METADATA", "pkg/mod.py", "pkg/testsuite.py"]


def _reference_zip(directory: Path | BundleResult, zip_path: Path) -> None:
    """The zip as `zipfile` writes it for the same entries (each deflated or stored as zipwrite.compress_type
    says): write_zip must produce these exact bytes. For a bundle, the files its zip names, read from its
    folders as they are on disk."""
    import stat

    if isinstance(directory, BundleResult):
        with zipfile.ZipFile(directory.zip_path) as archive:
            names = archive.namelist()
        folders = directory.paths
        files = [(n, next(f / n for f in folders if (f / n).is_file())) for n in names]
    else:
        files = sorted((p.relative_to(directory).as_posix(), p) for p in directory.rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipwrite.compress_type(name)
            archive.writestr(info, path.read_bytes(), compresslevel=6)


def test_parallel_zip_is_byte_identical_to_zipfile(tmp_path: Path) -> None:
    import gzip
    import os

    tree = tmp_path / "tree"
    (tree / "pkg" / "sub").mkdir(parents=True)
    (tree / "a.py").write_text("print('a')\n" * 500)
    (tree / "pkg" / "sub" / "é-unicode.txt").write_text("non-ascii name")
    (tree / "pkg" / "empty").write_bytes(b"")
    (tree / "pkg" / "blob.bin").write_bytes(os.urandom(200_000))
    (tree / "pkg" / "data.json.gz").write_bytes(gzip.compress(b'{"a": 1}' * 1000))
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    zipwrite.write_zip(tree, tmp_path / "ours.zip")
    _reference_zip(tree, tmp_path / "reference.zip")
    assert (tmp_path / "ours.zip").read_bytes() == (tmp_path / "reference.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "ours.zip") as archive:
        assert archive.testzip() is None
        assert archive.read("pkg/sub/é-unicode.txt") == b"non-ascii name"
        assert archive.getinfo("run.sh").external_attr >> 16 == 0o100755
        # Already compressed: stored as it is; everything else deflated.
        assert archive.getinfo("pkg/data.json.gz").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("a.py").compress_type == zipfile.ZIP_DEFLATED


def test_real_bundle_zip_matches_zipfile(built: BundleResult, tmp_path: Path) -> None:
    _reference_zip(built, tmp_path / "reference.zip")
    assert built.zip_path.read_bytes() == (tmp_path / "reference.zip").read_bytes()


@pytest.fixture
def debug_library(tmp_path: Path) -> Callable[[str, str], Path]:
    """Compile a tiny shared library with debug sections (gcc -g), optionally with an auditwheel RUNPATH."""
    import subprocess

    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("gcc is needed to build an ELF library with debug sections")
    source = tmp_path / "lib.c"
    source.write_text("int answer(void) { return 42; }\n")

    def build(relative: str, runpath: str = "") -> Path:
        out = tmp_path / "tree" / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        args = [gcc, "-g", "-shared", "-fPIC", "-o", str(out), str(source)]
        if runpath:
            args.append(f"-Wl,-rpath,{runpath}")
        subprocess.run(args, check=True)
        return out

    return build


def test_strip_removes_debug_sections_only_where_safe(
    debug_library: Callable[[str, str], Path], tmp_path: Path
) -> None:
    import ctypes
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the test builds x86_64 libraries")
    plain = debug_library("pkg/_ext.so", "")
    vendored = debug_library("pkg.libs/libdep.so.1", "")
    patched = debug_library("other/_ext.so", "$ORIGIN/../other.libs")
    cache_copy = tmp_path / "uv-cache-entry.so"
    os_link = __import__("os").link
    os_link(plain, cache_copy)  # as uv's hard-link install leaves it
    sizes = {p: p.stat().st_size for p in (plain, vendored, patched)}
    # WHEN the tree is stripped for its own architecture
    notices = strip.strip_native_libraries(tmp_path / "tree", "x86_64")
    # THEN the plain extension lost its debug sections and still loads; the others are untouched
    assert notices == []
    assert b".debug_" not in plain.read_bytes() and plain.stat().st_size < sizes[plain]
    assert ctypes.CDLL(str(plain)).answer() == 42
    assert vendored.stat().st_size == sizes[vendored], "auditwheel-vendored libraries are never stripped"
    assert patched.stat().st_size == sizes[patched], "patchelf-edited extensions are never stripped"
    # AND the hard-linked cache entry still has its debug sections: strip wrote a new file
    assert b".debug_" in cache_copy.read_bytes()


def test_strip_leaves_other_architectures_alone(
    debug_library: Callable[[str, str], Path], tmp_path: Path
) -> None:
    library = debug_library("pkg/_ext.so", "")
    before = library.read_bytes()
    strip.strip_native_libraries(tmp_path / "tree", "arm64")
    assert library.read_bytes() == before


def test_strip_tool_version_is_part_of_the_hash(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_for(mini_backend, tmp_path)
    before = input_hash(spec, TOOL)
    monkeypatch.setattr(strip, "strip_identity", lambda: "GNU strip 9.99")
    assert input_hash(spec, TOOL) != before
    assert input_hash(replace(spec, strip_native=False), TOOL) == input_hash(
        replace(spec, strip_native=False), TOOL
    )


# ---------------------------------------------------------------------------------------------------------
# No wheel for the target: synth stops naming the package, whether or not Docker answers (no fallback builds
# a bundle that nothing verified)


def test_no_wheel_stops_naming_the_package_even_with_a_docker_daemon(
    mini_backend: Path, shared_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacks.constructs import lambda_bundle

    # GIVEN a native package published only as an sdist, and a `docker` on PATH whose daemon answers
    (mini_backend / "requirements.txt").write_text("mangum==0.19.0\npycrypto==2.6.1\n")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    docker = fake_bin / "docker"
    docker.write_text(f"#!/bin/sh\necho called >> {tmp_path / 'docker-calls'}\nexit 0\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    # WHEN the bundle is asked for
    with pytest.raises(MissingWheelError, match="pycrypto") as raised:
        lambda_bundle.verified_bundle(
            spec_for(mini_backend, shared_cache), checks=CHECKS, log=lambda _m: None
        )
    # THEN synth stops with the package and the platform named, and Docker was never asked
    assert raised.value.package == "pycrypto"
    assert "has no wheel for" in str(raised.value) and "manylinux" in str(raised.value)
    assert not (tmp_path / "docker-calls").exists()
