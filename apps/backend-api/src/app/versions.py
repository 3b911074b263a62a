"""What code and schema this environment runs: `report()` feeds GET /health. The deploy-time probe
(`credmate_probe`) reads the same alembic_version table itself; SCHEMA_VERSION_READER=app.versions:report
would make it use this function instead.

Never raises: a version that cannot be read is None plus an `*_error` key saying why, so a broken
database shows up as data in the health body instead of a 500 that would look like a broken deployment.
"""

from __future__ import annotations

import json
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import DBAPIError

from app import db, schema

# build_info.json is written by the bundler at the bundle root, next to handler.py.
BUILD_INFO = schema.BUNDLE_ROOT / "build_info.json"
DEV_VERSION = "dev"
_ERROR_LIMIT = 300


def code_version(build_info: Path | None = None) -> str:
    """build_info.json's code_version (else source_hash); "dev" when absent (a source checkout)."""
    path = build_info or BUILD_INFO
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return DEV_VERSION
    except (OSError, ValueError):
        return "unknown (build_info.json unreadable)"
    if not isinstance(data, dict):
        return "unknown (build_info.json is not an object)"
    for key in ("code_version", "source_hash"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    return "unknown (build_info.json has no code_version or source_hash)"


def db_version() -> str | None:
    """The database's alembic_version (comma-joined if several); None when no database is configured.

    Raises when the database is configured but unreadable; report() turns that into db_error.
    """
    engine = db.engine()
    if engine is None:
        return None
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    if not heads:
        raise LookupError("database has no alembic_version row: run the migrations")
    return ",".join(sorted(heads))


def describe_error(exc: BaseException) -> str:
    """One short line; for driver errors the driver's own message, without SQL or connection parameters."""
    source: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(source).strip().splitlines()
    text = f"{type(source).__name__}: {lines[0] if lines else ''}".strip()
    return text[:_ERROR_LIMIT]


def report() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"code_version": code_version()}
    try:
        versions["schema_head"] = schema.schema_head()
    except Exception as exc:
        versions["schema_head"] = None
        versions["schema_error"] = describe_error(exc)
    try:
        versions["db_version"] = db_version()
    except Exception as exc:
        versions["db_version"] = None
        versions["db_error"] = describe_error(exc)
    return versions
