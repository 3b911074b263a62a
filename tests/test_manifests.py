"""Backends whose dependencies come from a uv workspace, a Poetry project or a requirements.txt with a local
package: each synthesizes, verifies and answers /health through `make local-invoke`; a stale lock stops synth
naming the command that refreshes it; local packages count in the asset hash and reach the bundle."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from stacks.bundling import import_closure, manifest
from stacks.bundling.build import build_bundle
from stacks.bundling.input_hash import dependency_key, input_hash
from stacks.bundling.lock import compile_lock
from stacks.bundling.spec import BundleSpec, BundlingError
from stacks.bundling.verification import verify_bundle
from tests.conftest import process_ended
from tests.test_bundling import CHECKS, HANDLERS, TOOL

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
BACKENDS = {
    "uv_workspace_backend": manifest.UV,
    "poetry_backend": manifest.POETRY,
    "editable_backend": manifest.REQUIREMENTS,
}
CDK_SYNTH = ("npx", "--no-install", "cdk", "synth", "--quiet")
# `make` with its set-up targets taken as done: `make test` (or `make unit`) ran them before the tests.
MAKE = (
    "make",
    "--no-print-directory",
    *(f"--assume-old={t}" for t in ("setup", ".venv/.installed", "node_modules/.installed")),
)
LAZY_IMPORT = """

def later() -> object:
    from credmate_common import missing_lazy

    return missing_lazy
"""
HEALTHY = {"status": "healthy", "greeting": "hello from libs/common"}


def _env() -> dict[str, str]:
    bins = [str(REPO_ROOT / ".venv" / "bin"), str(REPO_ROOT / "node_modules" / ".bin")]
    return {**os.environ, "PATH": os.pathsep.join([*bins, os.environ.get("PATH", "")])}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """A command of the repository's, from its root, as a user runs it."""
    return subprocess.run(
        args, cwd=REPO_ROOT, capture_output=True, text=True, env=_env(), timeout=900, check=False
    )


def _synth(backend: Path, outdir: Path) -> subprocess.CompletedProcess[str]:
    return _run(*CDK_SYNTH, "-o", str(outdir), "-c", f"backend_root={backend}")


def _copy(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _spec(backend: Path, cache: Path) -> BundleSpec:
    return BundleSpec(
        source_dir=backend / "src",
        requirements=manifest.primary_file(backend),
        cache_dir=cache,
        handlers=HANDLERS,
    )


# ---------------------------------------------------------------------------------------------------------
# Which manifest, in which order


@pytest.mark.parametrize(
    ("files", "label"),
    [
        (["pyproject.toml", "uv.lock", "poetry.lock", "requirements.txt"], manifest.UV),
        (["pyproject.toml", "poetry.lock", "requirements.txt", "requirements.lock"], manifest.POETRY),
        (["pyproject.toml", "requirements.txt", "requirements.lock"], manifest.REQUIREMENTS_LOCK),
        (["pyproject.toml", "requirements.txt"], manifest.REQUIREMENTS),
    ],
)
def test_the_first_manifest_present_wins(tmp_path: Path, files: list[str], label: str) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert manifest.find_manifest(tmp_path).label == label


def test_a_root_without_a_manifest_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BundlingError, match=r"expected pyproject\.toml with uv\.lock or poetry\.lock, or"):
        manifest.find_manifest(tmp_path)
    (tmp_path / "pyproject.toml").write_text("")
    with pytest.raises(BundlingError, match=r"pyproject.toml has no uv.lock or poetry.lock .*`uv lock`"):
        manifest.find_manifest(tmp_path)


def test_app_backend_root_accepts_any_manifest_and_names_what_is_missing(tmp_path: Path) -> None:
    import aws_cdk as cdk

    from app import backend_root
    from stacks.config import ConfigError

    for name in BACKENDS:
        assert backend_root(cdk.App(context={"backend_root": str(FIXTURES / name)})) == FIXTURES / name
    (tmp_path / "src").mkdir()
    with pytest.raises(ConfigError, match=r"backend_root=.*has no dependency manifest"):
        backend_root(cdk.App(context={"backend_root": str(tmp_path)}))


# ---------------------------------------------------------------------------------------------------------
# What each manifest pins


def test_editable_path_resolves_against_the_requirements_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    vcs = "-e git+https://example.com/x.git#egg=x"
    text = (
        f"fastapi==0.115.6\n-e ./libs/common\n../shared \\\n    --hash=sha256:00\nx @ file:///opt/x\n{vcs}\n"
    )
    kept, local = manifest.split_local(text, FIXTURES / "editable_backend")
    assert kept == f"fastapi==0.115.6\n{vcs}\n"
    assert local == [
        FIXTURES / "editable_backend" / "libs" / "common",
        FIXTURES / "shared",
        Path("/opt/x"),
    ]


def test_an_included_requirements_file_resolves_its_local_paths_against_its_own_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "base.txt").write_text("fastapi==0.115.6\n-e ../libs/common\n")
    (tmp_path / "requirements.txt").write_text("-r deps/base.txt\nmangum==0.19.0\n")
    text, local = manifest.read_requirements(tmp_path / "requirements.txt")
    assert text == "fastapi==0.115.6\nmangum==0.19.0\n"
    assert local == [tmp_path / "libs" / "common"]


def test_poetry_content_hash_is_the_one_poetry_wrote() -> None:
    # The fixture's lock was written by `poetry lock` (Poetry 2.5.1): our hash must agree with Poetry's.
    root = FIXTURES / "poetry_backend"
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    recorded = tomllib.loads((root / "poetry.lock").read_text())["metadata"]["content-hash"]
    assert manifest.poetry_content_hash(pyproject) == recorded
    pyproject["tool"]["poetry"]["dependencies"]["mangum"] = "0.19.1"
    assert manifest.poetry_content_hash(pyproject) != recorded


@pytest.mark.parametrize("name", ["uv_workspace_backend", "poetry_backend"])
def test_locks_pin_main_dependencies_with_hashes_and_local_packages_by_path(
    name: str, tmp_path: Path
) -> None:
    resolved = manifest.resolve(_spec(FIXTURES / name, tmp_path))
    assert resolved.manifest.label == BACKENDS[name]
    assert resolved.pins.name == "requirements.lock"  # installed with --require-hashes
    text = resolved.pins.read_text()
    assert "fastapi==0.115.6" in text and "--hash=sha256:" in text
    assert "pytest" not in text and "colorama" not in text, "dev dependencies never reach the bundle"
    assert str(tmp_path) not in text and "libs/common" not in text
    assert [p.source for p in resolved.local] == [FIXTURES / name / "libs" / "common"]
    assert resolved.local[0].wheel.name == "credmate_common-0.1.0-py3-none-any.whl"


def test_a_backend_that_is_a_uv_workspace_member_uses_the_workspace_lock(tmp_path: Path) -> None:
    # GIVEN the workspace's root above the backend: its pyproject.toml declares the members, uv.lock is there
    workspace = tmp_path / "workspace"
    backend = _copy("uv_workspace_backend", workspace / "apps" / "api")
    shutil.move(backend / "libs", workspace / "libs")
    (backend / "uv.lock").unlink()
    pyproject = backend / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().partition("[tool.uv.workspace]")[0])
    (workspace / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["apps/api", "libs/common"]\n')
    locked = _run("uv", "lock", "--directory", str(workspace), "--quiet")
    assert locked.returncode == 0, locked.stderr
    # THEN the backend's manifest is its pyproject.toml with the workspace's lock, members by their folders
    found = manifest.find_manifest(backend)
    assert (found.label, found.lock) == (manifest.UV, workspace / "uv.lock")
    resolved = manifest.resolve(_spec(backend, tmp_path / "cache"))
    assert [p.source for p in resolved.local] == [workspace / "libs" / "common"]
    assert "fastapi==0.115.6" in resolved.pins.read_text()


def test_plain_requirements_resolve_the_local_packages_dependencies(tmp_path: Path) -> None:
    resolved = manifest.resolve(_spec(FIXTURES / "editable_backend", tmp_path))
    assert resolved.pins.name == "requirements.txt"
    assert resolved.pins.read_text().splitlines()[-1] == "pydantic>=2"  # from the local wheel's metadata


def test_make_lock_of_an_editable_requirement_installs_it_from_its_folder(tmp_path: Path) -> None:
    # `make lock` keeps `-e ./libs/common` as a line without hashes: it must not reach the hashed install.
    backend = _copy("editable_backend", tmp_path / "backend")
    compile_lock(backend / "requirements.txt", [("3.11", "x86_64")], cache_dir=REPO_ROOT / ".cache" / "uv")
    resolved = manifest.resolve(_spec(backend, tmp_path / "cache"))
    assert resolved.manifest.label == manifest.REQUIREMENTS_LOCK
    assert resolved.pins.name == "requirements.lock" and "libs/common" not in resolved.pins.read_text()
    assert [p.source for p in resolved.local] == [backend / "libs" / "common"]


# ---------------------------------------------------------------------------------------------------------
# Stale locks stop synth, naming the command


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("uv_workspace_backend", ('"mangum==0.19.0"', '"mangum==0.19.0", "idna==3.21"'), "`uv lock`"),
        ("poetry_backend", ('mangum = "0.19.0"', 'mangum = "0.19.0"\nidna = "3.21"'), "`poetry lock`"),
    ],
)
def test_a_stale_lock_stops_synth_naming_the_command(
    name: str, edit: tuple[str, str], message: str, tmp_path: Path
) -> None:
    backend = _copy(name, tmp_path / name)
    pyproject = backend / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(*edit))
    proc = _synth(backend, tmp_path / "out")
    assert proc.returncode != 0
    lock = "uv.lock" if name.startswith("uv") else "poetry.lock"
    assert f"{backend / lock} is stale" in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------------------
# Local packages: in the asset hash, in the bundle, their imports checked


def test_local_package_source_changes_the_asset_hash_and_nothing_else_does(tmp_path: Path) -> None:
    backend = _copy("editable_backend", tmp_path / "backend")
    spec = _spec(backend, tmp_path / "cache")
    before, layer_before = input_hash(spec, TOOL), dependency_key(spec, TOOL, ())
    assert input_hash(spec, TOOL) == before, "nothing changed, nothing changes"
    assert dependency_key(spec, TOOL, ()) == layer_before
    module = backend / "libs" / "common" / "credmate_common" / "__init__.py"
    module.write_text(module.read_text().replace("hello", "hi"))
    assert input_hash(spec, TOOL) != before
    assert dependency_key(spec, TOOL, ()) != layer_before, "the local package is installed in the layer"
    # The same backend elsewhere (another checkout) hashes the same: no path of this machine is an input.
    moved = shutil.copytree(backend, tmp_path / "elsewhere")
    assert input_hash(_spec(moved, tmp_path / "cache"), TOOL) == input_hash(spec, TOOL)


def test_local_package_is_installed_and_a_broken_name_import_from_it_is_caught(
    tmp_path: Path, shared_cache: Path
) -> None:
    backend = _copy("editable_backend", tmp_path / "backend")
    spec = _spec(backend, shared_cache)
    result = build_bundle(spec)
    installed = set().union(*(import_closure.installed_top_levels(p) for p in result.paths))
    assert "credmate_common" in installed
    assert not (result.layer or result.directory).joinpath("credmate_common", "__init__.py").is_symlink()
    assert not list((result.layer or result.directory).glob("*.pth")), "a regular install, not editable"
    # A name the local package no longer exports, imported at init or lazily, is caught naming its folder.
    worker = backend / "src" / "worker.py"
    worker.write_text(worker.read_text().replace("import greeting", "import greeting, missing_name"))
    scheduler = backend / "src" / "campaign_scheduler.py"
    scheduler.write_text(scheduler.read_text() + LAZY_IMPORT)
    with pytest.raises(BundlingError) as caught:
        verify_bundle(build_bundle(spec), spec, CHECKS[1:], reuse=False)
    where = backend / "libs" / "common" / "credmate_common"
    for name in ("missing_name", "missing_lazy"):
        assert f"cannot import name '{name}' from 'credmate_common'" in str(caught.value)
        assert f"no longer exports {name}: restore it in {where}" in str(caught.value)


@pytest.mark.parametrize("guarded", [False, True])
def test_a_local_packages_lazy_import_is_checked_like_the_sources(
    tmp_path: Path, shared_cache: Path, guarded: bool
) -> None:
    # GIVEN a local package whose function imports a package the backend does not install
    backend = _copy("editable_backend", tmp_path / "backend")
    body = "        import passlib.context\n"
    if guarded:
        body = "    try:\n    " + body + "    except ImportError:\n        return None\n"
    (backend / "libs" / "common" / "credmate_common" / "hashing.py").write_text(
        f"def hasher() -> object:\n{body.replace('        import', '    import', 1) if not guarded else body}"
        "    return passlib.context\n"
    )
    spec = _spec(backend, shared_cache)
    if guarded:
        # THEN an optional import is no error
        build_bundle(spec)
        return
    # WHEN the bundle is built, THEN synth stops at the package's own file and line, before any deploy
    with pytest.raises(BundlingError) as caught:
        build_bundle(spec)
    assert "libs/common/credmate_common/hashing.py:2: No module named 'passlib.context'" in str(caught.value)


def test_a_resolution_kept_in_a_long_lived_process_makes_its_cache_files_again(tmp_path: Path) -> None:
    # GIVEN a backend whose files are older than the racy window, resolved once (kept for the process)
    backend = _copy("poetry_backend", tmp_path / "backend")
    past = time.time() - 60
    for path in backend.rglob("*"):
        os.utime(path, (past, past))
    spec = _spec(backend, tmp_path / "cache")
    first = manifest.resolve(spec)
    assert manifest.resolve(spec) is first, "nothing it read changed: kept"
    # WHEN the cache is deleted under it (`make clean` while `make local-api` runs)
    shutil.rmtree(tmp_path / "cache")
    # THEN the next resolution makes the pins and the local package's wheel again
    again = manifest.resolve(spec)
    assert again.pins.is_file() and again.local and all(p.wheel.is_file() for p in again.local)


HANGING_BACKEND = """
import os, time

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.environ["HANG_PID_FILE"], "w") as out:
        out.write(str(os.getpid()))
    time.sleep(120)
"""


def test_a_hung_local_package_build_is_named_and_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a local package whose build backend never returns
    package = tmp_path / "libs" / "stuck"
    package.mkdir(parents=True)
    (package / "pyproject.toml").write_text(
        '[project]\nname = "stuck"\nversion = "1.0"\n\n'
        '[build-system]\nrequires = []\nbuild-backend = "hang"\nbackend-path = ["."]\n'
    )
    (package / "hang.py").write_text(HANGING_BACKEND)
    pid_file = tmp_path / "backend.pid"
    monkeypatch.setenv("HANG_PID_FILE", str(pid_file))
    monkeypatch.setattr(manifest, "BUILD_TIMEOUT_SECONDS", 5)
    # WHEN it is built, THEN the error names the package and the time limit, and the backend is gone
    with pytest.raises(BundlingError, match=rf"(?s)building local package {package} .*within 5 s"):
        manifest.build_local_wheel(package, tmp_path / "cache")
    assert process_ended(pid_file), "the build backend lives on"
    assert not (tmp_path / "cache" / "local-wheels").exists() or not any(
        (tmp_path / "cache" / "local-wheels").glob("*/meta.json")
    ), "a failed build is never cached"


# ---------------------------------------------------------------------------------------------------------
# End to end: synth (with verification), then `make local-invoke`


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def synthesized_backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, str]:
    """(fixture name, assembly folder, synth log) of one backend, synthesized once for this module.

    In this process, as the session's full synth is (tests/conftest.py), not through `cdk synth`: a CLI synth
    starts Node, Python and a jsii runtime and imports aws_cdk again, most of its 11 s (3 to 5 s here, once
    this worker's jsii runtime is up). The CLI's own path (cdk.json's app command, its context, app.main) is
    covered by the stale-lock tests above and by the local runtime's shared assembly
    (tests/local/local_api_server.py)."""
    import aws_cdk as cdk

    from app import build_app, write_policies

    name: str = request.param
    outdir = tmp_path_factory.mktemp(f"out-{name}")
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    app = cdk.App(context={**context, "backend_root": str(FIXTURES / name)}, outdir=str(outdir))
    # The bundler logs to sys.stderr (verification threads included), as `cdk synth` shows it.
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        _stacks, policies = build_app(app)  # bundling and its verification joined: raises on a failure
        app.synth()  # cdk-nag included
    write_policies(outdir, policies)
    return name, outdir, log.getvalue()


def test_each_backend_synthesizes_verified_and_names_its_manifest(
    synthesized_backend: tuple[str, Path, str],
) -> None:
    name, outdir, log = synthesized_backend
    assert f"manifest: {BACKENDS[name]}, asset" in log
    template = json.loads((outdir / "credmate-backend-prod.template.json").read_text())
    [bundle] = template["Metadata"]["CredmateBundles"]
    assert bundle["verified"] is True and bundle["asset_hash"][:12] in log


def test_each_backend_serves_health_through_make_local_invoke(
    synthesized_backend: tuple[str, Path, str],
) -> None:
    name = synthesized_backend[0]
    event = FIXTURES / "health_event.json"
    proc = _run(*MAKE, "local-invoke", "FUNCTION=BackendApi", f"EVENT={event}", f"BACKEND={FIXTURES / name}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    response = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert response["statusCode"] == 200 and json.loads(response["body"]) == HEALTHY


def test_without_uv_a_uv_project_names_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _copy("uv_workspace_backend", tmp_path / "backend")
    monkeypatch.setattr("stacks.bundling.indexes.find_uv", lambda: None)
    spec = _spec(backend, tmp_path / "cache")
    with pytest.raises(BundlingError, match=r"uv\.lock: uv is needed to resolve the lock \(pip install uv\)"):
        manifest.resolve(spec)
