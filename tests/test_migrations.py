# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The deploy's migration step: the runner (lambda_src/migrate/credmate_migrate.py) against a real SQLite
database through the entry point Lambda calls, with the sample backend's real migrations; and the
MigrationStep construct's template (ordering between functions, trigger and aliases)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER = REPO_ROOT / "lambda_src" / "migrate" / "credmate_migrate.py"
BACKEND_SRC = REPO_ROOT / "apps" / "backend-api" / "src"


def script_revisions(migrations: Path) -> list[str]:
    """The scripts' revisions, base first, read by Alembic itself (not a hard-coded list)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """What the bundle root holds for the runner: the backend's source and the runner copied beside it."""
    root = tmp_path / "bundle"
    shutil.copytree(BACKEND_SRC, root, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(RUNNER, root / "credmate_migrate.py")
    return root


def invoke(bundle: Path, db: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`credmate_migrate.handler(event, context)` in a fresh interpreter whose working directory is the bundle
    root, as Lambda imports a handler from /var/task."""
    code = "import json, credmate_migrate; print('RESULT ' + json.dumps(credmate_migrate.handler({}, None)))"
    environ = {
        "PATH": "/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": str(bundle),
        "DATABASE_URL": f"sqlite:///{db}",
        "PYTHONDONTWRITEBYTECODE": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=bundle, env=environ, capture_output=True, text=True, check=False
    )


def log_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in done.stdout.splitlines() if ln.startswith('{"migration"')]


def db_revision(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]


def write_revision(versions: Path, revision: str, down: str, upgrade_body: str) -> None:
    (versions / f"{revision}.py").write_text(
        f'"""test revision"""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n    {upgrade_body}\n\n\n"
        "def downgrade():\n    pass\n"
    )


def test_fresh_database_is_upgraded_to_head_and_every_revision_is_logged(bundle, tmp_path):
    db = tmp_path / "app.db"
    expected = script_revisions(bundle / "migrations")
    assert len(expected) == len(list((bundle / "migrations" / "versions").glob("*.py")))

    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    assert line["migration"] == "upgraded"
    assert line["from"] == [] and line["to"] == expected[-1]
    assert line["applied"] == expected
    assert db_revision(db) == [expected[-1]]
    # The schema is really there: every table the models declare exists in the database.
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alembic_version" in tables and len(tables) > 1
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["applied"] == expected


def test_database_at_head_is_a_no_op(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    schema_before = sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    head = script_revisions(bundle / "migrations")[-1]
    assert line["migration"] == "up-to-date" and line["applied"] == []
    assert line["from"] == [head] == db_revision(db)
    assert sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == (
        schema_before
    )


def test_partly_migrated_database_gets_only_the_missing_revisions(bundle, tmp_path):
    """The outage's case: the database is behind the code; only the newer revisions run."""
    db = tmp_path / "app.db"
    expected = script_revisions(bundle / "migrations")
    versions = bundle / "migrations" / "versions"
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    # Migrate with the first revisions only (an older release), then deploy the full set.
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(bundle / "migrations"))
    for rev in expected[3:]:
        path = Path(script.get_revision(rev).path)
        shutil.move(str(path), hidden / path.name)
    assert len(list(versions.glob("*.py"))) == 3, "could not split the sample's revisions"
    assert invoke(bundle, db).returncode == 0
    assert db_revision(db) == [expected[2]]
    for path in hidden.iterdir():
        shutil.move(str(path), versions / path.name)

    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    assert line["from"] == [expected[2]] and line["applied"] == expected[3:]


def test_database_migrated_by_newer_code_is_never_downgraded(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dcafe_from_a_newer_release'")
    schema_before = sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()

    done = invoke(bundle, db)
    assert done.returncode != 0
    assert "DowngradeRefused" in done.stderr
    (line,) = log_lines(done)
    assert line["migration"] == "refused"
    assert line["database"] == ["f00dcafe_from_a_newer_release"] and line["code_head"] == head
    assert "f00dcafe_from_a_newer_release" in line["error"] and head in line["error"]
    assert "Refusing to downgrade" in line["error"]
    assert db_revision(db) == ["f00dcafe_from_a_newer_release"]
    assert sqlite3.connect(db).execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == (
        schema_before
    )


def test_a_broken_migration_fails_the_invocation(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    write_revision(
        bundle / "migrations" / "versions",
        "zz_broken",
        head,
        "op.execute('ALTER TABLE table_that_does_not_exist ADD COLUMN x INTEGER')",
    )

    done = invoke(bundle, db)
    assert done.returncode != 0
    assert "table_that_does_not_exist" in done.stderr
    (line,) = log_lines(done)
    assert line["migration"] == "failed" and line["from"] == [head] and line["code_head"] == "zz_broken"
    assert "OperationalError" in line["error"]
    assert db_revision(db) == [head]


def test_a_new_migration_is_applied_and_logged(bundle, tmp_path):
    db = tmp_path / "app.db"
    assert invoke(bundle, db).returncode == 0
    head = db_revision(db)[0]
    write_revision(
        bundle / "migrations" / "versions",
        "zz_new_table",
        head,
        "op.create_table('zz_things', sa.Column('id', sa.Integer(), primary_key=True))",
    )
    done = invoke(bundle, db)
    assert done.returncode == 0, done.stderr
    (line,) = log_lines(done)
    assert line == {**line, "migration": "upgraded", "from": [head], "to": "zz_new_table"}
    assert line["applied"] == ["zz_new_table"]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM zz_things").fetchone() == (0,)


def test_the_migrations_folder_is_configurable(bundle, tmp_path):
    (bundle / "db").mkdir()
    shutil.move(str(bundle / "migrations"), bundle / "db" / "schema")
    db = tmp_path / "app.db"

    missing = invoke(bundle, db)
    assert missing.returncode != 0
    assert "CREDMATE_MIGRATIONS_DIR" in missing.stderr and "no Alembic scripts" in missing.stderr

    done = invoke(bundle, db, CREDMATE_MIGRATIONS_DIR="db/schema")
    assert done.returncode == 0, done.stderr
    assert log_lines(done)[0]["applied"] == script_revisions(bundle / "db" / "schema")


def test_the_url_may_come_from_a_named_variable(bundle, tmp_path):
    db = tmp_path / "other.db"
    done = invoke(
        bundle,
        tmp_path / "unused.db",
        CREDMATE_MIGRATIONS_URL_ENV="MIGRATION_DB",
        MIGRATION_DB=f"sqlite:///{db}",
    )
    assert done.returncode == 0, done.stderr
    assert db_revision(db) == [script_revisions(bundle / "migrations")[-1]]
    assert not (tmp_path / "unused.db").exists()


def test_several_heads_are_refused_before_touching_the_database(bundle, tmp_path):
    revisions = script_revisions(bundle / "migrations")
    write_revision(bundle / "migrations" / "versions", "zz_branch", revisions[-2], "pass")
    db = tmp_path / "app.db"
    done = invoke(bundle, db)
    assert done.returncode != 0
    assert "2 heads" in done.stderr and "zz_branch" in done.stderr and revisions[-1] in done.stderr
    assert not db.exists()


@pytest.mark.parametrize("setting", ["/var/task/migrations", "../migrations"])
def test_migrations_dir_must_stay_inside_the_bundle(setting, monkeypatch, tmp_path):
    sys.path.insert(0, str(RUNNER.parent))
    try:
        import credmate_migrate
    finally:
        sys.path.remove(str(RUNNER.parent))
    monkeypatch.setenv("CREDMATE_MIGRATIONS_DIR", setting)
    with pytest.raises(credmate_migrate.MigrationError, match="relative to the bundle root"):
        credmate_migrate.migrations_dir(tmp_path)
