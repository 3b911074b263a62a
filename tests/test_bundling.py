"""The bundler: every input changes the asset, nothing else does; builds are reproducible and cached;
the Lambda platform's wheels are installed; a bundle that would not import stops synth."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from stacks.constructs import bundling
from stacks.constructs.bundle_verification import verify_bundle
from stacks.constructs.bundling import (
    BundleSpec,
    BundlingError,
    HandlerCheck,
    MissingWheelError,
    build_bundle,
    input_hash,
)

TOOL = "uv 0.13.9"
CHECKS = [
    HandlerCheck(function="BackendApi", handler="handler.lambda_handler", http_health=True),
    HandlerCheck(function="Worker", handler="worker.lambda_handler"),
    HandlerCheck(function="CampaignScheduler", handler="campaign_scheduler.lambda_handler"),
]


def spec_for(backend: Path, cache: Path, **changes: object) -> BundleSpec:
    spec = BundleSpec(source_dir=backend / "src", requirements=backend / "requirements.txt", cache_dir=cache)
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
        "lock file appears": edit(backend / "requirements.lock", "fastapi==0.115.6 --hash=sha256:00\n"),
        "runtime": lambda s: replace(s, runtime="python3.12"),
        "architecture": lambda s: replace(s, architecture="arm64"),
        "excludes option": lambda s: replace(s, excludes=(*s.excludes, "*.md")),
        "bytecode option": lambda s: replace(s, compile_bytecode=False),
        "extra file added": lambda s: replace(s, extra_files=(("probe.py", extra),)),
        "migrations option": lambda s: replace(s, migrations_dir=None),
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


def test_bundler_version_is_part_of_the_hash(
    mini_backend: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = input_hash(spec_for(mini_backend, tmp_path), TOOL)
    monkeypatch.setattr(bundling, "BUNDLER_VERSION", "999")
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
def built(tmp_path_factory: pytest.TempPathFactory) -> bundling.BundleResult:
    from tests.conftest import MINI_BACKEND

    return build_bundle(spec_for(MINI_BACKEND, tmp_path_factory.mktemp("cache-a")))


def _elf_machines(directory: Path) -> set[int]:
    machines = set()
    for so in directory.rglob("*.so"):
        header = so.read_bytes()[:20]
        if header[:4] == b"\x7fELF":
            machines.add(int.from_bytes(header[18:20], "little"))
    return machines


def test_bundle_holds_source_dependencies_build_info_and_bytecode(built: bundling.BundleResult) -> None:
    root = built.directory
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


def test_two_clean_builds_are_byte_identical(built: bundling.BundleResult, tmp_path: Path) -> None:
    from tests.conftest import MINI_BACKEND

    again = build_bundle(spec_for(MINI_BACKEND, tmp_path / "cache-b"))
    assert not again.cache_hit
    assert again.asset_hash == built.asset_hash
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (built.zip_path, again.zip_path)]
    assert digest[0] == digest[1]


def test_unchanged_inputs_are_a_cache_hit_without_installing(
    built: bundling.BundleResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import MINI_BACKEND

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("installer ran on a cache hit")

    monkeypatch.setattr(bundling, "install_dependencies", boom)
    again = build_bundle(spec_for(MINI_BACKEND, built.directory.parents[2]))
    assert again.cache_hit and again.directory == built.directory


def test_arm64_gets_aarch64_wheels(mini_backend: Path, shared_cache: Path) -> None:
    result = build_bundle(spec_for(mini_backend, shared_cache, architecture="arm64"))
    assert _elf_machines(result.directory) == {183}, "aarch64 wheels only"


def test_failed_install_leaves_nothing_half_written(mini_backend: Path, tmp_path: Path) -> None:
    (mini_backend / "requirements.txt").write_text("this-package-does-not-exist-credmate==1.0\n")
    with pytest.raises(BundlingError, match="this-package-does-not-exist-credmate"):
        build_bundle(spec_for(mini_backend, tmp_path))
    assert list((tmp_path / "bundles").iterdir()) == []


def test_no_wheel_for_the_target_names_the_package(mini_backend: Path, shared_cache: Path) -> None:
    # pycrypto 2.6.1 is published as a source distribution only.
    (mini_backend / "requirements.txt").write_text("mangum==0.19.0\npycrypto==2.6.1\n")
    with pytest.raises(MissingWheelError) as caught:
        build_bundle(spec_for(mini_backend, shared_cache))
    assert caught.value.package == "pycrypto"
    assert "no wheel for manylinux2014_x86_64" in str(caught.value) or "x86_64-manylinux2014" in str(
        caught.value
    )


# ---------------------------------------------------------------------------------------------------------
# Verification: the three outages, and their cousins, stop synth with function, module and hint


def _verify(backend: Path, cache: Path) -> str:
    spec = spec_for(backend, cache)
    with pytest.raises(BundlingError) as caught:
        verify_bundle(build_bundle(spec), spec, CHECKS)
    return str(caught.value)


def test_good_bundle_verifies(built: bundling.BundleResult) -> None:
    from tests.conftest import MINI_BACKEND

    verify_bundle(built, spec_for(MINI_BACKEND, built.directory.parents[2]), CHECKS)


def test_missing_dependency_names_function_module_and_requirements(
    mini_backend: Path, shared_cache: Path
) -> None:
    (mini_backend / "requirements.txt").write_text("fastapi==0.115.6\n")
    message = _verify(mini_backend, shared_cache)
    assert "function BackendApi (handler handler.lambda_handler)" in message
    assert "ModuleNotFoundError: No module named 'mangum'" in message
    assert f"mangum is not in {mini_backend / 'requirements.txt'}" in message
    assert "function Worker" not in message, "the worker does not import mangum"


def test_shared_module_missing_export_names_module_and_symbol(mini_backend: Path, shared_cache: Path) -> None:
    (mini_backend / "src" / "shared_pkg" / "__init__.py").write_text(
        "class OtherError(Exception):\n    pass\n"
    )
    message = _verify(mini_backend, shared_cache)
    for function in ("BackendApi", "Worker", "CampaignScheduler"):
        assert f"function {function}" in message
    assert "cannot import name 'SharedError' from 'shared_pkg'" in message
    assert "module shared_pkg no longer exports SharedError" in message


def test_syntax_error_names_file_and_line(mini_backend: Path, shared_cache: Path) -> None:
    (mini_backend / "src" / "worker.py").write_text("def lambda_handler(event, context)\n    return 1\n")
    message = _verify(mini_backend, shared_cache)
    assert "function Worker (handler worker.lambda_handler): SyntaxError" in message
    assert "worker.py line 1" in message
    assert "function BackendApi" not in message


def test_missing_handler_attribute_names_the_setting(mini_backend: Path, shared_cache: Path) -> None:
    (mini_backend / "src" / "campaign_scheduler.py").write_text(
        "def handler(event, context):\n    return 1\n"
    )
    message = _verify(mini_backend, shared_cache)
    assert "function CampaignScheduler (handler campaign_scheduler.lambda_handler): AttributeError" in message
    assert "module campaign_scheduler has no attribute lambda_handler" in message


def test_unhealthy_api_stops_synth(mini_backend: Path, shared_cache: Path) -> None:
    handler = mini_backend / "src" / "handler.py"
    handler.write_text(
        handler.read_text().replace(
            'return {"status": "healthy"', 'raise RuntimeError("db down")\n    return {"status": "healthy"'
        )
    )
    message = _verify(mini_backend, shared_cache)
    assert "function BackendApi" in message and "GET /health returned 500" in message
