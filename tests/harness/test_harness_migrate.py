# mypy: allow-untyped-defs, allow-incomplete-defs
# (pyproject relaxes tests.* like this, but mypy names these files without the tests. prefix)
"""The migration runner inside the real backend bundle, under the real Lambda runtime (awslambdaric in
aws-lambda-rie), with only the bundle and the runtime on the path: what the deploy's custom resource invokes.
Against a real PostgreSQL server (one per session, a database per test: tests/conftest.py); the revisions
expected are read from the bundle's own scripts."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from harness_fixtures import REPO_ROOT

from scripts.local.emulator import InvokeResult, LambdaEmulator

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


@pytest.fixture
def writable_bundle(migrate_bundle: Path, tmp_path: Path) -> Path:
    """A copy this test may add revisions to (the bundle's scripts ship as source: no bytecode to purge)."""
    return Path(shutil.copytree(migrate_bundle, tmp_path / "bundle", symlinks=True))


def bundle_revisions(bundle: Path) -> list[str]:
    from alembic.script import ScriptDirectory

    return [s.revision for s in reversed(list(ScriptDirectory(str(bundle / "migrations")).walk_revisions()))]


def db_revisions(postgres_server, url: str) -> list[str]:
    database = url.rsplit("/", 1)[1]
    return [str(r[0]) for r in postgres_server.execute("SELECT version_num FROM alembic_version", database)]


def add_revision(bundle: Path, revision: str, down: str, body: str) -> None:
    (bundle / "migrations" / "versions" / f"{revision}.py").write_text(
        f'"""harness revision {revision}"""\nfrom alembic import op\nimport sqlalchemy as sa\n\n'
        f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    pass\n"
    )


def runner(bundle: Path, url: str, rie: Path) -> LambdaEmulator:
    return LambdaEmulator(
        bundle=bundle, environment={"DATABASE_URL": url}, handler="credmate_migrate.handler", rie=rie
    )


def test_upgrade_from_empty_then_a_rerun_does_nothing_then_a_downgrade_is_refused(
    migrate_bundle, postgres_server, postgres_url, rie_binary
):
    expected = bundle_revisions(migrate_bundle)
    assert expected
    with runner(migrate_bundle, postgres_url, rie_binary) as fn:
        first = fn.invoke({})
        assert not first.function_error, first.payload
        assert first.payload["migration"] == "upgraded" and first.payload["applied"] == expected
        assert db_revisions(postgres_server, postgres_url) == [expected[-1]]
        second = fn.invoke({})
        assert not second.function_error, second.payload
        assert second.payload["migration"] == "up-to-date" and second.payload["applied"] == []
        assert '"migration": "upgraded"' in fn.logs()

        database = postgres_url.rsplit("/", 1)[1]
        postgres_server.execute("UPDATE alembic_version SET version_num = 'ffff_newer_release'", database)
        refused = fn.invoke({})
    assert refused.function_error
    assert refused.payload["errorType"] == "DowngradeRefused"
    assert "ffff_newer_release" in refused.payload["errorMessage"]
    assert expected[-1] in refused.payload["errorMessage"]
    assert db_revisions(postgres_server, postgres_url) == ["ffff_newer_release"]


def test_two_runs_at_once_apply_each_revision_exactly_once(
    writable_bundle, postgres_server, postgres_url, rie_binary
):
    expected = bundle_revisions(writable_bundle)
    # A slow revision at the head keeps the first run inside its transaction while the second one starts.
    add_revision(writable_bundle, "zz_slow", expected[-1], "op.execute('SELECT pg_sleep(1.5)')")
    expected.append("zz_slow")
    results: dict[int, InvokeResult] = {}
    with (
        runner(writable_bundle, postgres_url, rie_binary) as one,
        runner(writable_bundle, postgres_url, rie_binary) as two,
    ):

        def run(index: int, fn: LambdaEmulator, delay: float) -> None:
            time.sleep(delay)
            results[index] = fn.invoke({})

        threads = [
            threading.Thread(target=run, args=(0, one, 0.0)),
            threading.Thread(target=run, args=(1, two, 0.5)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    payloads = [results[i].payload for i in (0, 1)]
    assert not any(results[i].function_error for i in (0, 1)), payloads
    by_outcome = {p["migration"]: p for p in payloads}
    assert set(by_outcome) == {"upgraded", "up-to-date"}, payloads
    # Every revision applied once, by one run; the other waited on the advisory lock, then found the head.
    assert by_outcome["upgraded"]["applied"] == expected
    assert by_outcome["up-to-date"]["applied"] == []
    assert by_outcome["up-to-date"]["from"] == [expected[-1]]
    assert by_outcome["up-to-date"]["lock_wait_seconds"] > 0.3
    assert db_revisions(postgres_server, postgres_url) == [expected[-1]]


def test_a_broken_revision_leaves_the_database_at_the_last_good_one_and_names_it(
    writable_bundle, postgres_server, postgres_url, rie_binary
):
    good = bundle_revisions(writable_bundle)
    with runner(writable_bundle, postgres_url, rie_binary) as fn:
        assert not fn.invoke({}).function_error
    # The next release: one good revision (a new table), then a broken one.
    add_revision(
        writable_bundle,
        "zz_new_table",
        good[-1],
        "op.create_table('zz_things', sa.Column('id', sa.Integer(), primary_key=True))",
    )
    add_revision(
        writable_bundle,
        "zz_broken",
        "zz_new_table",
        "op.execute('ALTER TABLE no_such_table ADD COLUMN x INT')",
    )
    with runner(writable_bundle, postgres_url, rie_binary) as fn:
        failed = fn.invoke({})
        log = fn.logs()
    assert failed.function_error
    message = failed.payload["errorMessage"]
    assert failed.payload["errorType"] == "MigrationError"
    assert "migration zz_broken (zz_broken.py) failed: ProgrammingError" in message
    assert "no_such_table" in message and f"the database stays at {good[-1]}" in message
    assert '"failed_revision": "zz_broken"' in log
    # Transactional DDL: zz_new_table ran, and was rolled back with the rest.
    assert db_revisions(postgres_server, postgres_url) == [good[-1]]
    database = postgres_url.rsplit("/", 1)[1]
    assert postgres_server.execute("SELECT to_regclass('zz_things') IS NULL", database) == [(True,)]
