"""Alembic environment. The URL comes, in order, from a connection handed over by app.schema
(config.attributes["connection"]), the `sqlalchemy.url` option, or the app's own configuration
(DATABASE_URL, else the combined secret's database_url)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from app import db
from app.models import Base

config = context.config
if config.config_file_name is not None:  # the `alembic` CLI with alembic.ini; app.schema has no file
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or db.database_url()
    if not url:
        raise db.DatabaseNotConfigured()
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite (tests, local runs) cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as fresh:
        _configure(fresh)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
