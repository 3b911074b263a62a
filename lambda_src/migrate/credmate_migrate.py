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
3. reads the database's current revision and **refuses to downgrade**: a revision the scripts do not know
   (the database was migrated by newer code: this deploy is older than the schema) stops the run before any
   statement, with a message naming the database's and the code's revisions. One exception: while
   CloudFormation rolls the stack back (`$CREDMATE_STACK_ID` is `UPDATE_ROLLBACK_IN_PROGRESS`), the trigger
   invokes the *previous* version of this function, and a database ahead of it is the expected state (the
   failed release's migrations ran; expand/contract keeps the old code working on them). Failing there would
   leave the stack in UPDATE_ROLLBACK_FAILED, so it logs `"kept-for-rollback"` and succeeds without touching
   the database. The trigger's event carries nothing, so the stack status is the only way to tell;
4. runs `upgrade head`, then prints one JSON line: `{"migration": "upgraded", "from": ..., "to": ...,
   "applied": [...]}` (or `"up-to-date"`, or `"refused"` / `"failed"` with the error).

Standard library plus alembic (which the backend ships when it has migrations); nothing else is assumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

MIGRATIONS_DIR_ENV = "CREDMATE_MIGRATIONS_DIR"
URL_ENV_ENV = "CREDMATE_MIGRATIONS_URL_ENV"
STACK_ID_ENV = "CREDMATE_STACK_ID"
DEFAULT_MIGRATIONS_DIR = "migrations"
ROLLBACK_STATUSES = frozenset({"UPDATE_ROLLBACK_IN_PROGRESS"})


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


def stack_status() -> str | None:
    """The status of the stack named in $CREDMATE_STACK_ID, or None (not set, or unreadable: logged)."""
    stack_id = os.environ.get(STACK_ID_ENV, "").strip()
    if not stack_id:
        return None
    try:
        import boto3
        from botocore.config import Config as BotoConfig

        # Short timeouts: in a VPC without a route to CloudFormation this must fail fast, not at the timeout.
        config = BotoConfig(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
        stacks = boto3.client("cloudformation", config=config).describe_stacks(StackName=stack_id)["Stacks"]
        return str(stacks[0]["StackStatus"])
    except Exception as exc:
        _log({"migration": "warning", "error": f"cannot read the status of {stack_id}: {exc}"})
        return None


def _log(record: dict[str, Any]) -> None:
    print(json.dumps({"migration": record.pop("migration"), **record}, sort_keys=False), flush=True)


def _mark_logged(exc: BaseException) -> None:
    with contextlib.suppress(AttributeError):  # an exception type with __slots__ stays unmarked: logged twice
        exc.credmate_logged = True  # type: ignore[attr-defined]


def _fmt(revisions: Sequence[str]) -> str:
    return ", ".join(revisions) if revisions else "<empty database>"


def run(root: Path | None = None) -> dict[str, Any]:
    """Upgrade the configured database to the scripts' head. Returns the JSON-able summary it logs."""
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

    state: dict[str, Any] = {"called": False, "current": (), "applied": [], "kept_for": None}

    def upgrade(current: tuple[str, ...] | Sequence[str], _context: Any) -> Iterator[Any]:
        state["called"] = True
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
            status = stack_status()
            if status in ROLLBACK_STATUSES:
                state["kept_for"] = status
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
            yield step
            state["applied"].append(step.revision.revision)

    started = time.monotonic()
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
        _log(
            {
                "migration": "failed",
                "from": list(state["current"]),
                "code_head": head,
                # With transactional DDL (PostgreSQL) a failure rolls these back as well.
                "completed_before_failure": state["applied"],
                "error": f"{type(exc).__name__}: {exc}",
            }
        )
        _mark_logged(exc)
        raise
    if state["kept_for"]:
        summary: dict[str, Any] = {
            "migration": "kept-for-rollback",
            "database": list(state["current"]),
            "code_head": head,
            "stack_status": state["kept_for"],
            "note": "the stack is rolling back: the database stays ahead of this older code",
        }
        _log(dict(summary))
        return summary
    summary = {
        "migration": "upgraded" if state["applied"] else "up-to-date",
        "from": list(state["current"]),
        "to": head,
        "applied": state["applied"],
        "seconds": round(time.monotonic() - started, 3),
    }
    _log(dict(summary))
    return summary


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point. The event is ignored: the trigger's invocation carries nothing to act on."""
    try:
        return run()
    except Exception as exc:
        # Failures before the database is reached (no scripts, several heads, a script that does not
        # import) get their JSON line here; the ones from the run itself were logged with more detail.
        if not getattr(exc, "credmate_logged", False):
            _log({"migration": "failed", "from": None, "error": f"{type(exc).__name__}: {exc}"})
        raise
