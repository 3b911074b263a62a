"""Create (or reset) a user in the local database, so a login works against `make local-api`.

    make local-user EMAIL=me@example.com PASSWORD=secret [ENV=staging]
    python -m scripts.local.user --email me@example.com [--password-stdin] [--database-url URL]

The sample backend has no registration route: this step writes the user with the backend's own model and
password hashing (app.models.User, app.security.hash_password), so the login route verifies it exactly as
in production. The database: DATABASE_URL (or --database-url), else the local PostgreSQL of `make local-api`
(the running one, or started here for the moment), migrated to head first. Exit 0 on success, 1 on failure,
2 on a bad argument.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.local.database import DEFAULT_ROOT, local_database, migrate
from scripts.local.postgres import PostgresError
from scripts.local.stack import LocalStackError, backend_root, parse_context
from stacks.bundling.spec import source_root

# Runs in the backend's own source folder (its `app` package), reading the password from stdin.
CREATE_USER = """
import sys
from sqlalchemy import select
from app import db, security
from app.models import User

email, password = sys.argv[1].strip().lower(), sys.stdin.read().rstrip("\\n")
with db.require_session_factory()() as session:
    user = session.scalar(select(User).where(User.email == email))
    action = "updated" if user else "created"
    if user is None:
        user = User(email=email)
        session.add(user)
    user.hashed_password = security.hash_password(password)
    user.is_active = True
    session.commit()
print(f"{action} user {email} (id {user.id})")
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--email", required=True)
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password", help="the password (visible to other local processes)")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.add_argument("--env", dest="environment", default="staging", help="environment name (cdk.json)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument(
        "--data-dir", type=Path, help="local PostgreSQL folder (default .cache/local-postgres/ENV)"
    )
    parser.add_argument("--migrations-dir", default="migrations", help="Alembic scripts, under the source")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    email = args.email.strip()
    if "@" not in email:
        print(
            f"local-user: --email {args.email!r} is not an email address (EMAIL=me@example.com)",
            file=sys.stderr,
        )
        return 2
    password = sys.stdin.read().rstrip("\n") if args.password_stdin else args.password
    if not password:
        print("local-user: the password is empty (PASSWORD=...)", file=sys.stderr)
        return 2
    try:
        src = source_root(backend_root(parse_context(args.context)))
        folder = args.data_dir or DEFAULT_ROOT / args.environment
        with local_database(folder, url=args.database_url) as url:
            migrate(url, src, args.migrations_dir)
            done = subprocess.run(
                [sys.executable, "-c", CREATE_USER, email],
                cwd=src,
                env={
                    "PATH": os.environ.get("PATH", ""),
                    "PYTHONPATH": str(src),
                    "PYTHONDONTWRITEBYTECODE": "1",  # never write into the backend source
                    "DATABASE_URL": url,
                },
                input=password + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
    except (PostgresError, LocalStackError) as exc:
        print(f"local-user: {exc}", file=sys.stderr)
        return 1
    if done.returncode != 0:
        print(f"local-user: creating {email} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return 1
    print(done.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
