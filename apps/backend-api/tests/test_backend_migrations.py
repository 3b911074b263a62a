# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""The shipped Alembic revisions: linear, reversible, and they build exactly the models' schema."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HEAD = "0009_license_is_imlc"


def revisions() -> list[str]:
    from app import schema

    script = ScriptDirectory(str(schema.MIGRATIONS_DIR))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_history_is_linear_with_is_imlc_last():
    from app import schema

    history = revisions()
    assert len(history) >= 7
    assert history[-1] == HEAD == schema.schema_head()
    script = ScriptDirectory(str(schema.MIGRATIONS_DIR))
    # linear: every revision has exactly one parent except the first, and there is one head
    assert script.get_heads() == [HEAD]
    assert [script.get_revision(rev).down_revision for rev in history] == [None, *history[:-1]]


def test_upgrade_to_head_builds_exactly_the_models_schema(migrated_db):
    from app.models import Base

    engine = sa.create_engine(migrated_db)
    with engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert MigrationContext.configure(connection).get_current_heads() == (HEAD,)
    engine.dispose()
    assert diffs == []


def test_fields_arrive_over_time(sqlite_url):
    # is_imlc came late in the real history: a database at the previous revision has no such column.
    from app import schema

    schema.upgrade(sqlite_url, "0008_user_renewal_goal")
    engine = sa.create_engine(sqlite_url)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("licenses")}
    engine.dispose()
    assert "exclude_from_calculations" in columns and "portal_password" in columns
    assert "is_imlc" not in columns


def test_every_revision_downgrades_and_upgrades_again(sqlite_url):
    from app import schema

    schema.upgrade(sqlite_url)
    schema.downgrade(sqlite_url, "base")
    engine = sa.create_engine(sqlite_url)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    schema.upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == (HEAD,)
    engine.dispose()


def test_is_imlc_defaults_to_false_for_existing_rows(sqlite_url):
    from app import schema

    schema.upgrade(sqlite_url, "0008_user_renewal_goal")
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO licenses (provider_id, state, license_number) VALUES (1, 'TX', 'T-1')")
        )
    schema.upgrade(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT is_imlc FROM licenses")).scalar_one() in (0, False)
    engine.dispose()


def test_url_with_percent_signs_survives_alembic_config():
    from app import schema

    config = schema.alembic_config("postgresql://u:p%40ss@db/credmate")
    assert config.get_main_option("sqlalchemy.url") == "postgresql://u:p%40ss@db/credmate"
