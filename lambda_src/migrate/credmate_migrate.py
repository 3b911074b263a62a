"""Migration runner: the handler of the deploy's migration step (`credmate_migrate.handler`).

The bundler copies this file to the root of the backend bundle, next to the backend's own modules, so it
runs with exactly the code, migration scripts and dependencies (alembic, sqlalchemy, the database driver)
that the new version ships. A CloudFormation trigger invokes it after the new function versions exist and
before any `live` alias moves: a raised exception fails the invocation, the trigger and so the deploy.

What it does, in one Alembic environment run:

1. finds the Alembic scripts: `$CREDMATE_MIGRATIONS_DIR` (default `migrations`), relative to the bundle root
   (`$LAMBDA_TASK_ROOT`, else this file's folder);
2. builds the Alembic Config in code (no alembic.ini ships in a bundle) and leaves the database URL to the
   scripts' own `env.py`, which knows the app's configuration (a DATABASE_URL variable, a secret...);
   `$CREDMATE_MIGRATIONS_URL_ENV` may name an environment variable holding the URL instead;
3. on PostgreSQL, takes a transaction-level advisory lock (`pg_advisory_xact_lock`) as each transaction
   env.py opens begins (an SQLAlchemy `begin` event), so before Alembic reads or creates the version table:
   two runs at once (a retried deploy, two stacks on one database) never both apply a revision; the second
   waits for the first to commit, then finds nothing left to do. The lock ends with the migration
   transaction (Alembic's default: one transaction for the whole upgrade, which PostgreSQL's transactional
   DDL rolls back whole when a revision fails);
4. reads the database's current revision and **refuses to downgrade**: a revision the scripts do not know
   (the database was migrated by newer code: this deploy is older than the schema) stops the run before any
   statement, with a message naming the database's and the code's revisions. One exception, decided from
   the CloudFormation custom-resource event alone (no AWS call: in a VPC without a CloudFormation endpoint
   that call would fail and leave the stack in UPDATE_ROLLBACK_FAILED): an `Update` whose
   `OldResourceProperties.SchemaHead` (the head of the release this update replaces) is exactly the
   database's revision. That is CloudFormation rolling back a release whose migrations ran (it invokes the
   previous version of this function with the previous properties), or older code deployed over it; expand/
   contract keeps older code working on the newer schema, and the pre-traffic schema gate still compares.
   It logs `"kept-for-rollback"` and succeeds without touching the database. A `Delete` does nothing;
5. runs `upgrade head`, then prints one JSON line: `{"migration": "upgraded", "from": ..., "to": ...,
   "applied": [...]}` (or `"up-to-date"`, or `"refused"` / `"failed"` with the error; a failure names the
   revision that failed and the revision the database was left at).

The event: stacks/constructs/migrations.py runs this handler as the onEvent function of a custom resource
(CDK's provider framework answers CloudFormation), so it receives `RequestType`, `ResourceProperties` and
`OldResourceProperties`; invoked with anything else (`{}`, by hand) it migrates, and refuses any downgrade.

Standard library plus alembic (which the backend ships when it has migrations); nothing else is assumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIGRATIONS_DIR_ENV = "CREDMATE_MIGRATIONS_DIR"
URL_ENV_ENV = "CREDMATE_MIGRATIONS_URL_ENV"
DEFAULT_MIGRATIONS_DIR = "migrations"
# The custom resource's property carrying the code's Alembic head (stacks/constructs/migrations.py).
SCHEMA_HEAD_PROPERTY = "SchemaHead"
PHYSICAL_ID = "credmate-migrations"
# One lock for every migration run on a database: a constant 64-bit key (sha256 of "credmate_migrate").
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"credmate_migrate").digest()[:8], "big", signed=True)


class MigrationError(RuntimeError):
    """The migration step cannot or must not run; the message says what to fix."""


class DowngradeRefused(MigrationError):
    """The database is at a revision this code does not know: upgrading would mean downgrading."""


def bundle_root() -> Path:
    root = os.environ.get("LAMBDA_TASK_ROOT")
    return Path(root) if root else Path(__file__).resolve().parent


def migrations_dir(root: Path | None = None) -> Path:
    """The Alembic script location inside the bundle, checked to exist."""
    setting = os.environ.get(MIGRATIONS_DIR_ENV, "").strip() or DEFAULT_MIGRATIONS_DIR
    path = Path(setting)
    if path.is_absolute() or ".." in path.parts:
        raise MigrationError(
            f"{MIGRATIONS_DIR_ENV}={setting!r}: must be a folder relative to the bundle root "
            f"(e.g. {DEFAULT_MIGRATIONS_DIR!r})"
        )
    base = root or bundle_root()
    found = base / path
    if not (found / "env.py").is_file():
        raise MigrationError(
            f"no Alembic scripts at {found} (no env.py): set {MIGRATIONS_DIR_ENV} to the migrations folder "
            "relative to the backend source root, or turn the migration step off for a backend without "
            "Alembic"
        )
    return found


@dataclass(frozen=True)
class Request:
    """What the CloudFormation custom-resource event says about this run (empty when invoked by hand)."""

    request_type: str | None = None
    replaced_head: str | None = None  # OldResourceProperties.SchemaHead: the head of the release replaced

    @classmethod
    def from_event(cls, event: Any) -> Request:
        if not isinstance(event, Mapping) or not isinstance(event.get("RequestType"), str):
            return cls()
        old = event.get("OldResourceProperties")
        head = old.get(SCHEMA_HEAD_PROPERTY) if isinstance(old, Mapping) else None
        return cls(str(event["RequestType"]), head if isinstance(head, str) and head else None)

    def keeps(self, unknown: Sequence[str]) -> bool:
        """True when a database ahead of this code is where the release this update replaces left it."""
        return (
            self.request_type == "Update"
            and self.replaced_head is not None
            and set(unknown) == {self.replaced_head}
        )


def _log(record: dict[str, Any]) -> None:
    print(json.dumps({"migration": record.pop("migration"), **record}, sort_keys=False), flush=True)


def _mark_logged(exc: BaseException) -> None:
    with contextlib.suppress(AttributeError):  # an exception type with __slots__ stays unmarked: logged twice
        exc.credmate_logged = True  # type: ignore[attr-defined]


def _fmt(revisions: Sequence[str]) -> str:
    return ", ".join(revisions) if revisions else "<empty database>"


def run(root: Path | None = None, request: Request | None = None) -> dict[str, Any]:
    """Upgrade the configured database to the scripts' head. Returns the JSON-able summary it logs."""
    request = request or Request()
    # Imported here so a bundle without alembic fails with a message, not at init.
    try:
        from alembic.config import Config
        from alembic.runtime.environment import EnvironmentContext
        from alembic.script import ScriptDirectory
        from alembic.util.exc import CommandError
    except ImportError as exc:
        raise MigrationError(
            f"alembic cannot be imported from the bundle ({exc}): add it to the backend's requirements, "
            "or turn the migration step off for this backend"
        ) from exc

    location = migrations_dir(root)
    # The scripts' env.py imports the app's modules (models, settings): the bundle root must be importable,
    # as it is for the handlers.
    base = str((root or bundle_root()).resolve())
    if base not in sys.path:
        sys.path.insert(0, base)

    config = Config()
    config.set_main_option("script_location", str(location))
    url_env = os.environ.get(URL_ENV_ENV, "").strip()
    if url_env:
        url = os.environ.get(url_env)
        if not url:
            raise MigrationError(f"{URL_ENV_ENV} names {url_env}, which is not set or empty")
        # ConfigParser interpolation: a literal % (an encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))

    script = ScriptDirectory.from_config(config)
    heads = tuple(script.get_heads())
    if len(heads) != 1:
        raise MigrationError(
            f"the migration scripts in {location} have {len(heads)} heads {sorted(heads)}: "
            "exactly one is needed (merge branches with `alembic merge`, or add a first revision)"
        )
    head = heads[0]

    state: dict[str, Any] = {
        "called": False,
        "current": (),
        "applied": [],
        "running": None,
        "kept": False,
        "transactional": None,
        "lock_wait": None,
    }

    def upgrade(current: tuple[str, ...] | Sequence[str], context: Any) -> Iterator[Any]:
        state["called"] = True
        state["transactional"] = bool(getattr(context.impl, "transactional_ddl", False))
        current = tuple(current)
        state["current"] = current
        unknown = []
        for revision in current:
            try:
                known = script.get_revision(revision)
            except CommandError:
                known = None
            if known is None:
                unknown.append(revision)
        if unknown:
            if request.keeps(unknown):
                state["kept"] = True
                return
            raise DowngradeRefused(
                f"the database is at revision {_fmt(current)}, which the code's migrations "
                f"({location.name}/, head {head}) do not contain: it was migrated by newer code. "
                f"Refusing to downgrade it to {head}. Deploy code whose migrations include "
                f"{_fmt(unknown)} (roll forward), or downgrade the database deliberately by hand first."
            )
        # A generator: each step is yielded just before Alembic runs it and resumes once it has run and
        # the version table is stamped, so `applied` lists only revisions that completed.
        # What alembic.command.upgrade does (it passes the current heads tuple too; the stub says str).
        for step in script._upgrade_revs(head, current):  # type: ignore[arg-type]
            state["running"] = step.revision.revision
            yield step
            state["applied"].append(step.revision.revision)
            state["running"] = None

    def lock(connection: Any) -> None:
        """At the start of every transaction env.py begins, before Alembic reads (or creates) the version
        table: wait for any other run on this database to commit."""
        if connection.dialect.name != "postgresql":
            return
        waited = time.monotonic()
        with contextlib.closing(connection.connection.dbapi_connection.cursor()) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        state["lock_wait"] = round((state["lock_wait"] or 0) + time.monotonic() - waited, 3)

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    started = time.monotonic()
    event.listen(Engine, "begin", lock)
    try:
        with EnvironmentContext(config, script, fn=upgrade, destination_rev=head):
            script.run_env()
        if not state["called"]:
            raise MigrationError(
                f"{location / 'env.py'} never ran the migrations (context.run_migrations() was not called)"
            )
    except DowngradeRefused as exc:
        _log(
            {"migration": "refused", "database": list(state["current"]), "code_head": head, "error": str(exc)}
        )
        _mark_logged(exc)
        raise
    except Exception as exc:
        failed = state["running"]
        # With transactional DDL (PostgreSQL) the whole upgrade is one transaction: nothing of it stays.
        left_at = list(state["current"]) if state["transactional"] else None
        _log(
            {
                "migration": "failed",
                "from": list(state["current"]),
                "code_head": head,
                "failed_revision": failed,
                "completed_before_failure": state["applied"],
                "database_left_at": left_at,
                "error": f"{type(exc).__name__}: {exc}",
            }
        )
        if failed is None:
            _mark_logged(exc)
            raise
        where = (
            f"the database stays at {_fmt(left_at)} (the upgrade was rolled back)"
            if left_at is not None
            else f"revisions {_fmt(state['applied'])} stayed applied (no transactional DDL)"
        )
        error = MigrationError(
            f"migration {failed} ({Path(script.get_revision(failed).path).name}) failed: "
            f"{type(exc).__name__}: {_first_line(exc)}; {where}. Fix or replace revision {failed} and deploy "
            "again; no alias moved"
        )
        _mark_logged(error)
        raise error from exc
    finally:
        event.remove(Engine, "begin", lock)
    if state["kept"]:
        summary: dict[str, Any] = {
            "migration": "kept-for-rollback",
            "database": list(state["current"]),
            "code_head": head,
            "request": request.request_type,
            "note": "the database is at the head of the release this update replaces (a rollback): it stays "
            "ahead of this older code",
        }
        _log(dict(summary))
        return summary
    summary = {
        "migration": "upgraded" if state["applied"] else "up-to-date",
        "from": list(state["current"]),
        "to": head,
        "applied": state["applied"],
        "lock_wait_seconds": state["lock_wait"],
        "seconds": round(time.monotonic() - started, 3),
    }
    _log(dict(summary))
    return summary


def _first_line(exc: BaseException) -> str:
    source = getattr(exc, "orig", None) or exc
    lines = str(source).strip().splitlines()
    return lines[0][:300] if lines else ""


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: a custom-resource event (Create/Update migrate, Delete does nothing), or any
    other event (a run by hand)."""
    request = Request.from_event(event)
    if request.request_type == "Delete":
        _log({"migration": "skipped", "request": "Delete", "note": "the stack no longer runs migrations"})
        return {"PhysicalResourceId": PHYSICAL_ID, "migration": "skipped"}
    try:
        summary = run(request=request)
    except Exception as exc:
        # Failures before the database is reached (no scripts, several heads, a script that does not
        # import) get their JSON line here; the ones from the run itself were logged with more detail.
        if not getattr(exc, "credmate_logged", False):
            _log({"migration": "failed", "from": None, "error": f"{type(exc).__name__}: {exc}"})
        raise
    # The provider framework reads PhysicalResourceId: one constant, so an update never replaces it.
    return {"PhysicalResourceId": PHYSICAL_ID, **summary} if request.request_type else summary
