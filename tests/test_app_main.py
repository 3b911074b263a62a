"""`app.py main()`: the import checks finish after synth writes; a failure withdraws what it wrote."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.bundling.spec import BundlingError


def _load_app() -> ModuleType:
    """app.py under a name of its own: the name `app` belongs to the backends' packages in other tests."""
    spec = importlib.util.spec_from_file_location(
        "credmate_cdk_app", Path(__file__).resolve().parents[1] / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_stack(app: cdk.App, *, join: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    assert join is False, "main() must leave the checks running while synth writes"
    stack = cdk.Stack(app, "tiny")
    cdk.CfnResource(stack, "Topic", type="AWS::SNS::Topic")
    return {}, {}


def _run_main(monkeypatch: pytest.MonkeyPatch, outdir: Path, join: Any) -> None:
    app_module = _load_app()
    monkeypatch.setattr(app_module, "build_app", _one_stack)
    monkeypatch.setattr(app_module, "join_verifications", join)
    app_module.main(outdir)


def test_a_failed_check_withdraws_the_assembly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN an output folder holding a previous synth's asset (kept: its name is its content hash)
    asset = tmp_path / "asset.0123abcd.zip"
    asset.write_bytes(b"zip")

    def failing() -> None:
        raise BundlingError("bundle verification failed: function Worker (handler worker.main): boom")

    # WHEN the checks joined after synth report a failure
    with pytest.raises(SystemExit) as stopped:
        _run_main(monkeypatch, tmp_path, failing)
    # THEN synth stops naming the function, and nothing deployable or reviewable is left
    assert stopped.value.code == 1
    assert "function Worker" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()
    assert not list(tmp_path.glob("*.template.json"))
    assert not (tmp_path / "tree.json").exists()
    assert asset.exists()


def test_passing_checks_leave_the_assembly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN an earlier synth's bundle zip and asset folder, which this assembly does not reference
    (tmp_path / "asset.0123abcd.zip").write_bytes(b"zip")
    (tmp_path / "asset.4567cdef").mkdir()
    joined: list[bool] = []
    _run_main(monkeypatch, tmp_path, lambda: joined.append(True))
    # THEN they are gone: the output folder holds this assembly's assets only
    assert not list(tmp_path.glob("asset.*"))
    assert joined == [True]
    assert (tmp_path / "manifest.json").is_file()
    assert (tmp_path / "tiny.template.json").is_file()


def test_a_check_that_broke_with_any_exception_withdraws_the_assembly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise KeyError("ok")

    with pytest.raises(SystemExit) as stopped:
        _run_main(monkeypatch, tmp_path, broken)
    assert stopped.value.code == 1
    assert "KeyError" not in capsys.readouterr().out
    assert not (tmp_path / "manifest.json").exists()
    assert not list(tmp_path.glob("*.template.json"))


def test_assets_the_assembly_references_stay(tmp_path: Path) -> None:
    kept = tmp_path / "asset.aaaa.zip"
    kept.write_bytes(b"current")
    (tmp_path / "asset.bbbb.zip").write_bytes(b"an earlier edit's")
    (tmp_path / "stack.assets.json").write_text(
        '{"files": {"aaaa": {"source": {"path": "asset.aaaa.zip", "packaging": "file"}}}}'
    )
    assert [p.name for p in _load_app().prune_assets(tmp_path)] == ["asset.bbbb.zip"]
    assert kept.read_bytes() == b"current"
