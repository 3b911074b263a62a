"""The local API migrates its database as the deploy does: the runner from the served bundle, under the
bundle's runtime Python, with the bundle's dependencies only (a real backend's env.py imports packages this
machine's venv does not have), and the scripts of the environment's `migrations.directory`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from scripts.local import api as local_api
from scripts.local import database
from scripts.local import stack as local_stack
from scripts.local.stack import LocalFunction


def test_the_runner_sees_the_bundle_and_nothing_of_this_venv(tmp_path: Path) -> None:
    # GIVEN a bundle whose runner reports what it can import (the real one runs Alembic there)
    bundle, layer = tmp_path / "bundle", tmp_path / "layer"
    bundle.mkdir()
    layer.mkdir()
    (layer / "only_in_the_layer.py").write_text("")
    (bundle / "credmate_migrate.py").write_text(
        "import importlib.util, os, sys\n"
        "def handler(event, context):\n"
        "    found = lambda name: importlib.util.find_spec(name) is not None\n"
        "    return {'migration': 'probed', 'layer': found('only_in_the_layer'), 'pytest': found('pytest'),\n"
        "            'cwd': os.getcwd(), 'url': os.environ['DATABASE_URL'],\n"
        "            'key': os.environ['SECRET_KEY']}\n"
    )
    # WHEN it runs as the local API runs it
    result = database.migrate(
        "postgresql://x",
        tmp_path / "src",
        "migrations",
        bundle=[bundle, layer],
        environment={"SECRET_KEY": "k"},
    )
    # THEN the bundle's folders are its packages, and this venv's (pytest's, alembic's) are not
    assert result == {
        "migration": "probed",
        "layer": True,
        "pytest": False,
        "cwd": str(bundle),
        "url": "postgresql://x",
        "key": "k",
    }


def _deployment(code: Path, runtime: str = "python3.12") -> Any:
    fn = LocalFunction(
        "Fn", "Fn/Function", "handler.main", runtime, "x86_64", 3, 128, {}, (), code, (code.parent / "layer",)
    )
    return SimpleNamespace(
        api=SimpleNamespace(functions={"Fn": None}), runtimes=SimpleNamespace(function=lambda _id: fn)
    )


def _args(**overrides: object) -> argparse.Namespace:
    return argparse.Namespace(**{"no_database": False, "migrations_dir": None, **overrides})


def test_the_served_bundle_is_migrated_with_its_runtime_python_and_the_environments_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "bundle"
    (code / "migrations").mkdir(parents=True)
    (code / "migrations" / "env.py").write_text("")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(local_stack, "interpreter_for", lambda version: f"/opt/python{version}")

    def recording_migrate(url: str, _src: Path, directory: str, **kw: Any) -> dict[str, object]:
        calls.append({"url": url, "dir": directory, **kw})
        return {"migration": "upgraded"}

    monkeypatch.setattr(local_api, "migrate", recording_migrate)
    # GIVEN the environment's migrations need a variable (as an env.py importing the app's settings does)
    context = {"environments": json.dumps(_with_migration_variable())}
    options = local_api.Options(
        "s", tmp_path, context, None, (), {"DATABASE_URL": "postgresql://db"}, tmp_path
    )
    local_api.migrate_to_head(_args(), options, _deployment(code))
    assert calls == [
        {
            "url": "postgresql://db",
            "dir": "migrations",
            "bundle": [code, tmp_path / "layer"],
            "python": "/opt/python3.12",
            "environment": {"SECRET_KEY": "local"},
        }
    ]


def _with_migration_variable() -> dict[str, Any]:
    from tests.conftest import REPO_ROOT

    environments: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["environments"]
    environments["staging"]["migrations"] = {
        **environments["staging"].get("migrations", {}),
        "environment": {"SECRET_KEY": "local"},
    }
    return environments


def test_a_bundle_without_alembic_scripts_uses_the_database_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tmp_path / "bundle"
    code.mkdir()
    monkeypatch.setattr(local_api, "migrate", lambda *a, **k: pytest.fail("migrated without scripts"))
    options = local_api.Options("s", tmp_path, {}, None, (), {"DATABASE_URL": "postgresql://db"}, tmp_path)
    local_api.migrate_to_head(_args(migrations_dir="app/alembic"), options, _deployment(code))
    assert (
        f"no Alembic scripts at {code / 'app/alembic'}: the database is used as it is"
        in capsys.readouterr().err
    )
