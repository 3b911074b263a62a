"""GET /health: whether this process can serve requests, and which code and schema it runs.

* No database configured: 200 {"status": "healthy", ..., "db_version": null}. That is a valid state (the
  synth-time bundle check and local runs have no database), and the app answers it correctly (login 401).
* Database configured and readable: 200 "healthy" with its Alembic version.
* Database configured but unreadable (unreachable, secret unfetchable, not migrated), or migration scripts
  inconsistent: 503 {"status": "unhealthy", ..., "db_version": null, "db_error": "..."}. The app cannot
  serve its real requests then, so deployment canaries must fail and roll back (a bad DATABASE_URL or
  secret in a new version is caught before it takes traffic). Rolling back during an unrelated outage
  costs nothing: the old version cannot reach the database either.
The endpoint itself never raises: version problems are data (app.versions.report), not a 500.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app import versions

router = APIRouter(tags=["health"])

ERROR_KEYS = ("db_error", "schema_error")


@router.get("/health")
def health() -> JSONResponse:
    report = versions.report()
    healthy = not any(report.get(key) for key in ERROR_KEYS)
    body: dict[str, str | None] = {"status": "healthy" if healthy else "unhealthy", "mode": "lazy", **report}
    return JSONResponse(body, status_code=200 if healthy else 503)
