"""Lazy database access: the URL, engine and session factory are resolved on first use, then cached.

"Not configured" (neither DATABASE_URL nor COMBINED_SECRET_ARN) is a normal state that callers handle
(health reports db_version null, login answers 401, the scheduler skips). A configured database that
cannot be reached raises, and callers turn that into db_error / 503 / a failed record.
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app import settings

DATABASE_URL_SECRET_KEY = "database_url"
_POSTGRES_CONNECT_TIMEOUT_S = 5

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


class DatabaseNotConfigured(RuntimeError):
    """Raised by operations that need a database when neither DATABASE_URL nor COMBINED_SECRET_ARN is set."""

    def __init__(self) -> None:
        super().__init__(
            f"no database configured: set {settings.DATABASE_URL_ENV} or {settings.COMBINED_SECRET_ARN_ENV} "
            f"(a secret with a {DATABASE_URL_SECRET_KEY!r} key)"
        )


def database_url() -> str | None:
    """DATABASE_URL, else the combined secret's database_url, else None (not configured)."""
    url = settings.env(settings.DATABASE_URL_ENV)
    if url is None and settings.env(settings.COMBINED_SECRET_ARN_ENV) is not None:
        url = settings.setting(settings.DATABASE_URL_ENV, DATABASE_URL_SECRET_KEY)
        if url is None:
            raise settings.ConfigurationError(
                f"secret {settings.env(settings.COMBINED_SECRET_ARN_ENV)} "
                f"has no {DATABASE_URL_SECRET_KEY!r} key"
            )
    if url is None:
        return None
    # Heroku-style URLs are common in secrets; SQLAlchemy 2 only accepts the postgresql:// spelling.
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    return url


def engine() -> Engine | None:
    """The cached engine for the configured URL, or None when no database is configured. Never connects."""
    url = database_url()
    if url is None:
        return None
    with _lock:
        if url not in _engines:
            _engines[url] = _create_engine(url)
        return _engines[url]


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # One Lambda environment serves one request at a time: a tiny pool, checked before use because
        # frozen environments come back with connections the server has closed.
        return create_engine(
            parsed,
            pool_size=1,
            max_overflow=2,
            pool_pre_ping=True,
            pool_recycle=300,
            connect_args={"connect_timeout": _POSTGRES_CONNECT_TIMEOUT_S},
        )
    return create_engine(parsed, pool_pre_ping=True)


def session_factory() -> sessionmaker[Session] | None:
    """A session factory over engine(), or None when no database is configured."""
    bound = engine()
    if bound is None:
        return None
    return sessionmaker(bind=bound, expire_on_commit=False)


def require_session_factory() -> sessionmaker[Session]:
    factory = session_factory()
    if factory is None:
        raise DatabaseNotConfigured()
    return factory


def dispose() -> None:
    """Close and forget every engine (tests, or after the URL changed)."""
    with _lock:
        for cached in _engines.values():
            cached.dispose()
        _engines.clear()
