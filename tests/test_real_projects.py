"""What a real open-source FastAPI backend met, tried as a new user would (fastapi's full-stack template: a
uv workspace member with its code in `app/` beside pyproject.toml, Python 3.12+ wheels, an sdist-only
dependency in uv.lock, a FastAPI health route ending in a slash, a pyenv machine). Each test failed before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stacks.bundling import install, lock, sdist
from stacks.bundling.import_closure import analyze
from stacks.bundling.input_hash import installer_identity
from stacks.bundling.spec import BundleSpec, BundlingError, MissingWheelError, source_files, source_root
from stacks.bundling.verification import target_interpreter
from tests.private_index import PrivateIndex, write_flaky_sdist, write_wheel

HOST = f"{sys.version_info.major}.{sys.version_info.minor}"


# --- the flat layout -------------------------------------------------------------------------------------


def _flat(mini_backend: Path) -> Path:
    """The mini backend in the flat layout: its packages beside requirements.txt, no src/."""
    for item in (mini_backend / "src").iterdir():
        shutil.move(item, mini_backend / item.name)
    (mini_backend / "src").rmdir()
    return mini_backend


def test_a_flat_layout_backend_bundles_its_folder_and_verifies(mini_backend: Path) -> None:
    import aws_cdk as cdk

    from app import build_app
    from tests.test_stacks import _context

    # GIVEN a backend whose code sits beside its manifest (app/, as fastapi's templates lay it out)
    backend = _flat(mini_backend)
    assert source_root(backend) == backend and source_root(backend.parent) == backend.parent
    # WHEN the app bundles it
    stacks, _ = build_app(cdk.App(context=_context(backend)))
    # THEN its packages are at the bundle's root, as Lambda imports them, and the handlers were verified
    result = stacks["prod"].bundle.result
    assert (result.directory / "shared_pkg").is_dir() and not (result.directory / "src").exists()
    assert stacks["prod"].bundle.verified


def test_the_src_layout_wins_when_both_could_apply(tmp_path: Path) -> None:
    (tmp_path / "src" / "app").mkdir(parents=True)
    (tmp_path / "app").mkdir()
    assert source_root(tmp_path) == tmp_path / "src"


def test_in_the_flat_layout_a_manifest_edit_is_not_a_source_edit(mini_backend: Path) -> None:
    from scripts.local.edit_loop import source_only

    backend = _flat(mini_backend)
    context = {"backend_root": str(backend)}
    inputs = [backend / "requirements.txt"]
    module = next(backend.glob("*/*.py"))
    assert source_only([module], context, inputs)
    assert not source_only([module, backend / "requirements.txt"], context, inputs)


def test_a_backend_root_that_is_not_a_folder_names_what_it_must_hold(tmp_path: Path) -> None:
    import aws_cdk as cdk

    from app import build_app
    from stacks.config import ConfigError
    from tests.test_stacks import _context

    with pytest.raises(ConfigError, match=r"backend_root=.*is not a folder.*dependency manifest"):
        build_app(cdk.App(context=_context(tmp_path / "missing")))


# --- health paths as FastAPI declares them --------------------------------------------------------------


def _catalog(health_path: str, **extra: Any) -> dict[str, Any]:
    return {
        "Api": {
            "handler": "handler.lambda_handler",
            "trigger": {"type": "api"},
            "health_path": health_path,
            **extra,
        }
    }


@pytest.mark.parametrize("path", ["/api/v1/utils/health-check/", "/", "/health"])
def test_a_health_path_may_end_in_a_slash_or_be_the_root(path: str) -> None:
    from stacks.config import parse_environments
    from tests.conftest import REPO_ROOT

    environments = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]
    parsed = parse_environments(environments, _catalog(path))
    assert {fn.health_path for config in parsed.values() for fn in config.functions} == {path}


@pytest.mark.parametrize("path", ["health", "/a//b", "/a/{id}"])
def test_a_health_path_that_is_no_literal_path_is_refused_naming_the_key(path: str) -> None:
    from stacks.config import ConfigError, parse_environments
    from tests.conftest import REPO_ROOT

    environments = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]
    with pytest.raises(ConfigError, match=r"functions\.Api\.health_path.*a path like /health or /health/"):
        parse_environments(environments, _catalog(path))


def test_a_routed_prefix_still_refuses_a_trailing_slash() -> None:
    from stacks.config import ConfigError, parse_environments
    from tests.conftest import REPO_ROOT

    environments = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]
    catalog = _catalog("/health", trigger={"type": "api", "paths": ["/goals/"]})
    with pytest.raises(ConfigError, match=r"paths"):
        parse_environments(environments, catalog)


# --- wheels for the runtime's OS ---------------------------------------------------------------------------


def test_each_runtime_gets_the_manylinux_of_its_os() -> None:
    # Amazon Linux 2 (python3.11) cannot load a manylinux_2_28 wheel; Amazon Linux 2023 (3.12+) can, to 2.34
    assert lock.platform_args("x86_64", "3.11", "uv") == ["--python-platform", "x86_64-manylinux2014"]
    assert lock.platform_args("arm64", "3.12", "uv") == ["--python-platform", "aarch64-manylinux_2_34"]
    pip = lock.platform_args("x86_64", "3.13", "pip")
    tags = pip[1::2]
    assert pip[::2] == ["--platform"] * len(tags)
    assert tags[0] == "manylinux_2_34_x86_64" and "manylinux_2_28_x86_64" in tags
    assert tags[-2:] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert lock.platform_args("x86_64", "3.11", "pip") == [
        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64"
    ]  # fmt: skip


@pytest.fixture
def index(tmp_path: Path) -> Iterator[PrivateIndex]:
    """A package published only with a manylinux_2_28 wheel for CPython 3.12 (as argon2-cffi-bindings 25.1
    is), and an sdist-only package (as dkimpy 1.1.8 is)."""
    files = tmp_path / "index-files"
    write_wheel(
        files,
        "credmate-new-glibc",
        "1.0",
        {"credmate_new_glibc.py": "X = 1\n"},
        "cp312-abi3-manylinux_2_28_x86_64",
    )
    write_flaky_sdist(files, tmp_path / "never-fails", tmp_path / "builds.log")
    with PrivateIndex(files, "deploy", "pw") as served:
        yield served


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, index: PrivateIndex) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("UV_INDEX", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX", "PIP_INDEX", "PIP_EXTRA")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("UV_INDEX", f"private={index.url}")
    monkeypatch.setenv("UV_INDEX_PRIVATE_USERNAME", "deploy")
    monkeypatch.setenv("UV_INDEX_PRIVATE_PASSWORD", "pw")
    return monkeypatch


def _spec(backend: Path, cache: Path, **changes: object) -> BundleSpec:
    (backend / "src").mkdir(parents=True, exist_ok=True)
    spec = BundleSpec(source_dir=backend / "src", requirements=backend / "requirements.txt", cache_dir=cache)
    return replace(spec, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", ["python3.12", "python3.11"])
def test_a_manylinux_2_28_wheel_installs_where_the_runtime_runs_it(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, runtime: str
) -> None:
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "requirements.txt").write_text("credmate-new-glibc==1.0\n")
    spec = _spec(tmp_path / "backend", tmp_path / "cache", runtime=runtime)
    tool, command = installer_identity(spec)
    target = tmp_path / "tree"
    if runtime == "python3.12":
        # WHEN the runtime runs on Amazon Linux 2023, THEN the wheel installs
        install.install_dependencies(spec, command, target, spec.cache_dir)
        assert (target / "credmate_new_glibc.py").is_file()
    else:
        # WHEN it runs on Amazon Linux 2, THEN the install stops naming the package and the platform
        with pytest.raises(MissingWheelError) as caught:
            install.prepare_wheelhouse(spec, tool, command)
            install.install_dependencies(spec, command, target, spec.cache_dir)
        assert "credmate-new-glibc" in str(caught.value) and "manylinux2014" in str(caught.value)


# --- an sdist-only package in a hashed lock -------------------------------------------------------------


def _hashed_backend(tmp_path: Path, sdist_hash: str) -> Path:
    backend = tmp_path / "backend"
    backend.mkdir()
    requirements = backend / "requirements.txt"
    requirements.write_text("credmate-flaky-sdist==0.1\n")
    body = f"credmate-flaky-sdist==0.1 \\\n    --hash=sha256:{sdist_hash}\n    # via -r requirements.txt\n"
    (backend / "requirements.lock").write_text(lock.render_header(requirements, [("3.11", "x86_64")]) + body)
    return backend


def test_an_sdist_locked_by_hash_installs_as_the_wheel_built_from_that_very_file(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, index: PrivateIndex
) -> None:
    # GIVEN a lock that pins an sdist-only package by its sdist's hash (as uv.lock and poetry.lock do)
    archive = index.folder / "credmate_flaky_sdist-0.1.tar.gz"
    backend = _hashed_backend(tmp_path, hashlib.sha256(archive.read_bytes()).hexdigest())
    spec = _spec(backend, tmp_path / "cache")
    tool, command = installer_identity(spec)
    # WHEN its wheel is built and installed with hashes required
    wheelhouse = install.prepare_wheelhouse(spec, tool, command)
    target = tmp_path / "tree"
    install.install_dependencies(spec, command, target, spec.cache_dir, wheelhouse)
    # THEN it is installed, from pins that add the built wheel's hash to the locked sdist's
    assert list(target.glob("credmate_flaky_sdist-0.1.dist-info"))
    assert wheelhouse.pins is not None
    ((_wheel_name, wheel_hash),) = wheelhouse.wheels
    assert sdist.locked_hashes(wheelhouse.pins, "credmate-flaky-sdist") == {
        hashlib.sha256(archive.read_bytes()).hexdigest(),
        wheel_hash,
    }


def test_an_sdist_that_is_not_the_locked_file_is_refused_naming_it(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = _hashed_backend(tmp_path, "0" * 64)
    spec = _spec(backend, tmp_path / "cache")
    tool, command = installer_identity(spec)
    with pytest.raises(MissingWheelError) as caught:
        install.prepare_wheelhouse(spec, tool, command)
    assert caught.value.package == "credmate-flaky-sdist"
    assert "which the lock does not list" in str(caught.value)
    assert not list((tmp_path / "cache" / "wheelhouse").glob("*/manifest.json"))


def test_wheel_hashes_go_after_the_requirement_and_its_marker() -> None:
    text = (
        "a==1 ; python_version >= '3.8' \\\n    --hash=sha256:" + "1" * 64 + "\n"
        "b==2 --hash=sha256:" + "2" * 64 + "\n"
    )
    out = sdist.with_wheel_hashes(text, {"a": "3" * 64, "b": "4" * 64})
    assert out.splitlines()[0] == "a==1 ; python_version >= '3.8' --hash=sha256:" + "3" * 64 + " \\"
    assert out.splitlines()[2].endswith("--hash=sha256:" + "4" * 64)


# --- code this Python cannot parse -------------------------------------------------------------------------


def test_a_module_in_a_syntax_newer_than_this_python_raises_no_false_import_error(tmp_path: Path) -> None:
    # GIVEN a module the host cannot parse (`except A, B:` is Python 3.14's syntax; to 3.11 it is an error),
    # imported by name from another module
    (tmp_path / "deps.py").write_text(
        "try:\n    pass\nexcept ValueError, TypeError:\n    pass\nCurrentUser = 1\n"
    )
    (tmp_path / "handler.py").write_text(
        "from deps import CurrentUser\n\ndef main(event, context):\n    return 1\n"
    )
    files = source_files(tmp_path, ())
    # WHEN the import closure reads it
    closure = analyze(tmp_path, files, [("Api", "handler.main")], installed=set(), python_version=HOST)
    # THEN it does not claim the name is gone: verification, with the target's interpreter, judges the file
    assert closure.problems == []
    assert closure.modules["deps"].unread


# --- the target interpreter behind a version manager -------------------------------------------------------


def test_a_shim_that_does_not_run_the_target_python_is_named_before_any_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / f"python{HOST}"
    shim.write_text(f"#!/bin/sh\necho 'pyenv: python{HOST}: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec = BundleSpec(source_dir=tmp_path, requirements=tmp_path / "requirements.txt", cache_dir=tmp_path)
    with pytest.raises(
        BundlingError, match=rf"python{HOST} .* at {shim} does not run as Python {HOST} \(exit 127"
    ):
        target_interpreter(spec)


def test_a_working_shim_gives_the_interpreter_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checks run with a scrubbed environment, where a shim that picks its version from it may not run.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = shutil.which(f"python{HOST}")
    assert real
    shim = bin_dir / f"python{HOST}"
    shim.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    spec = BundleSpec(source_dir=tmp_path, requirements=tmp_path / "requirements.txt", cache_dir=tmp_path)
    found = target_interpreter(spec)
    assert found != str(shim) and Path(found).is_file()


# --- a project for a Python this machine does not have ------------------------------------------------------


def test_python314_is_a_runtime_and_gets_amazon_linux_2023_wheels() -> None:
    from stacks.config import parse_environments
    from tests.conftest import REPO_ROOT

    environments = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]
    environments["prod"]["function"] = {**environments["prod"].get("function", {}), "runtime": "python3.14"}
    assert parse_environments(environments, _catalog("/health"))["prod"].function.runtime == "python3.14"
    assert lock.platform_args("x86_64", "3.14", "uv") == ["--python-platform", "x86_64-manylinux_2_34"]


def test_a_uv_project_whose_python_is_not_installed_says_to_install_it(tmp_path: Path) -> None:
    from stacks.bundling import manifest
    from tests.test_manifests import _copy
    from tests.test_manifests import _spec as manifest_spec

    # GIVEN a uv project whose requires-python no interpreter here accepts (fastapi's template wants 3.14)
    backend = _copy("uv_workspace_backend", tmp_path / "backend")
    pyproject = backend / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('requires-python = ">=3.11"', 'requires-python = ">=3.99"')
    )
    # WHEN its lock is exported, THEN the error says what to install, not to re-lock
    with pytest.raises(
        BundlingError, match=r"needs a Python that .*pyproject\.toml's requires-python accepts"
    ):
        manifest.resolve(manifest_spec(backend, tmp_path / "cache"))


# --- a Poetry 1.x lock --------------------------------------------------------------------------------------


def _as_poetry_1_lock(text: str) -> str:
    """The fixture's lock as Poetry 1.x wrote it: `category` for groups, each package's files under
    [metadata.files] (the layout fastapi-realworld-example-app's lock has)."""
    files: list[str] = []
    out: list[str] = []
    name = ""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("name = "):
            name = line.split('"')[1]
        if line == "files = []":  # a local folder's
            continue
        if line == "files = [":
            block = [f"{name} = ["]
            for inner in lines:
                block.append(inner)
                if inner == "]":
                    break
            files.append("\n".join(block))
            continue
        if line.startswith("groups = "):
            line = f'category = "{"main" if "main" in line else "dev"}"'
        out.append(line.replace('lock-version = "2.1"', 'lock-version = "1.1"'))
    return "\n".join([*out, "", "[metadata.files]", *files]) + "\n"


def test_a_poetry_1_lock_pins_its_packages_with_the_hashes_of_its_metadata_files(tmp_path: Path) -> None:
    from stacks.bundling import manifest
    from tests.test_manifests import _copy
    from tests.test_manifests import _spec as manifest_spec

    # GIVEN a Poetry 1.x lock (hashes under [metadata.files], not beside each package)
    backend = _copy("poetry_backend", tmp_path / "backend")
    lock_file = backend / "poetry.lock"
    lock_file.write_text(_as_poetry_1_lock(lock_file.read_text()))
    assert "\nfiles = [" not in lock_file.read_text()
    # WHEN it is resolved, THEN every main package is pinned with its hashes, and dev ones are left out
    text = manifest.resolve(manifest_spec(backend, tmp_path / "cache")).pins.read_text()
    assert "fastapi==0.115.6" in text and text.count("--hash=sha256:") > 10
    assert "pytest" not in text
