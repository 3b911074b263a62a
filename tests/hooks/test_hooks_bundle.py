# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The hooks' code asset: built by the project's bundler with PyYAML for the hooks' runtime, and verified."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from stacks.bundling.build import build_bundle
from stacks.bundling.spec import BundlingError
from stacks.constructs.canary import (
    HOOK_MODULES,
    HOOKS_SRC,
    hooks_bundle_spec,
    hooks_code,
    verify_hooks_bundle,
)
from stacks.constructs.deploy_hooks import HOOK_RUNTIME

HOST = f"python{sys.version_info.major}.{sys.version_info.minor}"


def test_hook_requirements_pin_pyyaml_and_the_dev_requirements_agree():
    pins = [ln.strip() for ln in (HOOKS_SRC / "requirements.txt").read_text().splitlines()]
    (pyyaml,) = [ln for ln in pins if ln.lower().startswith("pyyaml")]
    assert "==" in pyyaml
    dev = (HOOKS_SRC.parents[1] / "requirements-dev.txt").read_text().splitlines()
    assert pyyaml in dev, "tests import the hooks: the dev venv must have the hooks' PyYAML"


def test_hooks_bundle_ships_sources_and_pyyaml_for_the_hooks_runtime(shared_cache):
    logs: list[str] = []
    hooks_code(shared_cache, log=logs.append)
    result = build_bundle(hooks_bundle_spec(shared_cache))
    names = set(zipfile.ZipFile(result.zip_path).namelist())
    assert {*(f"{m}.py" for m in HOOK_MODULES), "yaml/__init__.py"} <= names
    assert {"hook_calls.py", "pre_traffic.py", "post_traffic.py", "yaml/__init__.py"} <= names
    assert "requirements.txt" not in names
    tag = HOOK_RUNTIME.name.removeprefix("python").replace(".", "")
    assert any(n.startswith("yaml/_yaml.cpython-" + tag) and n.endswith(".so") for n in names), (
        f"PyYAML's native module for {HOOK_RUNTIME.name} is missing"
    )
    if HOOK_RUNTIME.name != HOST:
        # No interpreter for the target here: sources only, and the log says so.
        assert not any(n.endswith(".pyc") for n in names)
        assert any("hooks ship without precompiled bytecode" in line for line in logs)
        assert any(f"a {HOST} twin of the {HOOK_RUNTIME.name} bundle" in line for line in logs)
    assert any(line.startswith("[bundle] verified hook modules") for line in logs)


def _hooks_copy(tmp_path: Path, requirements: str) -> Path:
    source = tmp_path / "hooks"
    shutil.copytree(HOOKS_SRC, source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "requirements.txt").write_text(requirements)
    return source


def test_verification_refuses_hooks_whose_asset_lacks_pyyaml(tmp_path, shared_cache):
    # GIVEN hook requirements without PyYAML (the dev venv has it, so a careless check would pass)
    source = _hooks_copy(tmp_path, "six==1.17.0\n")
    spec = hooks_bundle_spec(shared_cache, source_dir=source)
    # WHEN the asset is verified THEN it names yaml, where it came from, and the file to fix
    with pytest.raises(BundlingError, match=r"the hooks import yaml from .*outside their bundle") as info:
        verify_hooks_bundle(spec, log=lambda _m: None)
    assert str(source / "requirements.txt") in str(info.value)


def test_verification_names_a_hook_module_that_does_not_import(tmp_path, shared_cache):
    source = _hooks_copy(tmp_path, (HOOKS_SRC / "requirements.txt").read_text())
    (source / "post_traffic.py").write_text(
        (source / "post_traffic.py").read_text() + "\nimport a_module_nobody_ships\n"
    )
    with pytest.raises(BundlingError, match="module post_traffic does not import") as info:
        hooks_code(shared_cache, source_dir=source, log=lambda _m: None)
    assert "No module named 'a_module_nobody_ships'" in str(info.value)
    assert "pre_traffic" not in str(info.value)


def test_skipping_verification_says_so(tmp_path, shared_cache):
    source = _hooks_copy(tmp_path, (HOOKS_SRC / "requirements.txt").read_text())
    (source / "pre_traffic.py").write_text("import a_module_nobody_ships\n")
    logs: list[str] = []
    hooks_code(shared_cache, source_dir=source, verify=False, log=logs.append)
    assert any("hook bundle verification SKIPPED" in line for line in logs)


def test_a_verified_hook_bundle_is_not_imported_again(shared_cache, monkeypatch):
    import types

    from stacks.constructs import canary

    spec = hooks_bundle_spec(shared_cache)
    verify_hooks_bundle(spec, log=lambda _m: None)
    # GIVEN the same bundle already passed in this interpreter, WHEN it is verified again (the second stack of
    # the same synth, or the next synth) THEN no interpreter starts, and the log still says it is verified
    # (only this module's name is replaced: the bundler's own tool calls still run)
    fail = types.SimpleNamespace(run=lambda *_a, **_k: pytest.fail("imported again"))
    monkeypatch.setattr(canary, "subprocess", fail)
    logs: list[str] = []
    verify_hooks_bundle(spec, log=logs.append)
    assert any(line.startswith("[bundle] verified hook modules") for line in logs)
