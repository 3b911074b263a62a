"""Alembic, driven from code: the migration scripts ship inside the bundle (src/migrations)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

# The bundle root is the folder holding handler.py; migrations/ sits next to it.
BUNDLE_ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS_DIR = BUNDLE_ROOT / "migrations"


class SchemaError(RuntimeError):
    """The migration scripts themselves are inconsistent (e.g. several heads)."""


def alembic_config(url: str | None = None, *, migrations_dir: Path | None = None) -> Config:
    """An in-memory Alembic config; without `url`, env.py uses the app's database configuration."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir or MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % in a URL (encoded passwords) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@lru_cache(maxsize=8)
def _heads(migrations_dir: str) -> tuple[str, ...]:
    return tuple(ScriptDirectory(migrations_dir).get_heads())


def schema_head(migrations_dir: Path | None = None) -> str | None:
    """The single head revision of the shipped migrations (parsed once per process); None if none."""
    heads = _heads(str(migrations_dir or MIGRATIONS_DIR))
    if len(heads) > 1:
        raise SchemaError(
            f"migrations in {migrations_dir or MIGRATIONS_DIR} have several heads {sorted(heads)}: "
            "merge them with `alembic merge`"
        )
    return heads[0] if heads else None


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)
