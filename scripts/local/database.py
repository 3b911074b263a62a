"""The local database of `make local-api` and `make local-user`: a persistent PostgreSQL, migrated to head.

    with local_database("staging") as url:     # DATABASE_URL if given, else the local server of .cache/
        migrate(url, backend_src)              # the deploy's own runner (credmate_migrate) against it

The data lives in `.cache/local-postgres/<env>/` (`make clean` removes it), so a second start finds it
again. While a server runs, `running.json` beside its data names its URL and process: a second tool (the
`make local-user` step while `make local-api` serves) reuses that server instead of starting its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from scripts.local.postgres import LocalPostgres, PostgresError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO_ROOT / ".cache" / "local-postgres"
DATABASE = "credmate"
RUNNING = "running.json"
RUNNER = REPO_ROOT / "lambda_src" / "migrate"


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_url(folder: Path) -> str | None:
    """The URL of the server another tool runs on this folder, if it still runs."""
    try:
        state = json.loads((folder / RUNNING).read_text())
    except (OSError, ValueError):
        return None
    return str(state["url"]) if isinstance(state, dict) and _alive(state.get("pid")) else None


@contextlib.contextmanager
def local_database(
    folder: Path, *, url: str | None = None, log: Callable[[str], None] = print
) -> Iterator[str]:
    """A database URL for the duration: `url` itself, the running local server's, or a server started here
    (and stopped on exit, Ctrl-C included)."""
    if url:
        log("[local-db] using the DATABASE_URL given")
        yield url
        return
    reused = running_url(folder)
    if reused:
        log(f"[local-db] using the PostgreSQL server already running on {folder}")
        yield reused
        return
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        folder.chmod(0o755)  # the server runs as nobody, who must reach its data folder
    try:
        server = LocalPostgres.start(folder / "data")
    except PostgresError as exc:
        raise PostgresError(f"{exc}\n(or give a database with DATABASE_URL=..., or --no-database)") from None
    try:
        found = server.create_database(DATABASE)
        (folder / RUNNING).write_text(json.dumps({"url": found, "pid": server.process.pid}))
        log(f"[local-db] PostgreSQL on 127.0.0.1:{server.port}, data in {folder / 'data'}")
        yield found
    finally:
        with contextlib.suppress(FileNotFoundError):
            (folder / RUNNING).unlink()
        server.stop()
        log("[local-db] PostgreSQL stopped")


def migrate(
    url: str,
    backend_src: Path,
    migrations_dir: str = "migrations",
    *,
    bundle: Sequence[Path] = (),
    python: str = sys.executable,
    environment: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The deploy's migration runner (credmate_migrate.handler) against `url`. With `bundle` (its folders, as
    /var/task holds them) and its runtime's `python`, as the deploy runs it: the backend's own dependencies
    (alembic, its driver, what env.py imports), whatever this machine's venv has. Else on the backend's
    source with this interpreter's packages. `environment`: the migration step's own variables
    (`migrations.environment`)."""
    code = "import json, credmate_migrate; print('RESULT ' + json.dumps(credmate_migrate.handler({}, None)))"
    root = bundle[0] if bundle else backend_src
    done = subprocess.run(
        # -S: no site-packages, so the bundle's dependencies are the only ones (PYTHONPATH still applies).
        [python, *(["-S"] if bundle else []), "-c", code],
        cwd=root,
        env={
            **(environment or {}),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": os.pathsep.join(map(str, [*bundle, RUNNER])),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(root),
            "CREDMATE_MIGRATIONS_DIR": migrations_dir,
            "DATABASE_URL": url,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PostgresError(f"migrating the local database failed: {last}\n{done.stdout[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.split("RESULT ", 1)[1])
    return result
