# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The migration runner inside the real backend bundle, under the real Lambda runtime (awslambdaric in
aws-lambda-rie), with only the bundle and the runtime on the path: what the deploy's trigger invokes.
A SQLite database in a temporary folder; the revisions expected are read from the bundle's own scripts."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from harness_fixtures import REPO_ROOT
from rie import LambdaEmulator

pytestmark = pytest.mark.harness
pytest_plugins = ["harness_fixtures"]

RUNNER = REPO_ROOT / "lambda_src" / "migrate" / "credmate_migrate.py"


@pytest.fixture(scope="module")
def migrate_bundle(backend_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the built bundle with the runner at its root, as the bundler adds it."""
    root = tmp_path_factory.mktemp("migrate") / "bundle"
    shutil.copytree(backend_bundle, root, symlinks=True)
    shutil.copy2(RUNNER, root / "credmate_migrate.py")
    return root


def bundle_revisions(bundle: Path) -> list[str]:
    from alembic.script import ScriptDirectory

    return [s.revision for s in reversed(list(ScriptDirectory(str(bundle / "migrations")).walk_revisions()))]


def test_runner_upgrades_then_refuses_a_newer_database_under_the_lambda_runtime(migrate_bundle, tmp_path):
    db = tmp_path / "app.db"
    expected = bundle_revisions(migrate_bundle)
    assert expected
    env = {"DATABASE_URL": f"sqlite:///{db}"}
    with LambdaEmulator(bundle=migrate_bundle, environment=env, handler="credmate_migrate.handler") as fn:
        first = fn.invoke({})
        assert not first.function_error, first.payload
        assert first.payload["migration"] == "upgraded" and first.payload["applied"] == expected
        second = fn.invoke({})
        assert not second.function_error, second.payload
        assert second.payload["migration"] == "up-to-date" and second.payload["applied"] == []
        assert '"migration": "upgraded"' in fn.logs()

        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'ffff_newer_release'")
        refused = fn.invoke({})
    assert refused.function_error
    assert refused.payload["errorType"] == "DowngradeRefused"
    assert "ffff_newer_release" in refused.payload["errorMessage"]
    assert expected[-1] in refused.payload["errorMessage"]
