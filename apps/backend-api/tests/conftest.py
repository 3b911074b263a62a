"""Fixtures for the backend's tests: apps/backend-api/src on sys.path, a clean environment, SQLite databases.

The backend's top-level names (`app`, `handler`, `worker`, ...) clash with modules the repo's other tests
import under the same names (the CDK app's app.py, the probe tests' throwaway bundles). So these tests
import backend modules inside each test, and every test starts and ends with them forgotten from
sys.modules: nothing leaks either way, whatever order pytest runs the two test trees in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests must never leave __pycache__ in src/ (it is bundled as is).
sys.dont_write_bytecode = True

SRC = Path(__file__).resolve().parents[1] / "src"
BACKEND_TOP_LEVEL = ("app", "handler", "worker", "campaign_scheduler", "goals_common")
CLEARED_ENV = (
    "DATABASE_URL",
    "COMBINED_SECRET_ARN",
    "CORS_ALLOWED_ORIGINS",
    "JWT_SECRET",
    "JWT_EXPIRES_MINUTES",
    "PORTAL_PASSWORD_KEY",
    "WORKER_QUEUE_URL",
    "LOG_LEVEL",
    "AWS_PROFILE",
)
TEST_JWT_SECRET = "test-jwt-secret-not-for-production"


def _forget_backend_modules() -> None:
    engines = sys.modules.get("app.db")
    if engines is not None and getattr(engines, "__file__", "").startswith(str(SRC)):
        engines.dispose()
    for name in list(sys.modules):
        if name.split(".")[0] in BACKEND_TOP_LEVEL:
            del sys.modules[name]


@pytest.fixture(autouse=True)
def backend_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    # moto and botocore need credentials and a region; these fake ones can never reach a real account.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    _forget_backend_modules()
    monkeypatch.syspath_prepend(str(SRC))
    yield
    _forget_backend_modules()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'credmate.sqlite'}"


@pytest.fixture
def migrated_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite file migrated to head by the shipped Alembic revisions, configured through DATABASE_URL."""
    from app import schema

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    schema.upgrade(sqlite_url)
    return sqlite_url


@pytest.fixture
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("JWT_SECRET", TEST_JWT_SECRET)
    return TEST_JWT_SECRET


@pytest.fixture
def fernet_key(monkeypatch: pytest.MonkeyPatch) -> str:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    monkeypatch.setenv("PORTAL_PASSWORD_KEY", key)
    return key


def rest_api_event(
    path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> dict[str, object]:
    """An API Gateway REST API (v1) proxy event, as the {proxy+} resource sends it."""
    all_headers = {"Host": "api.credentialmate.test", "Accept": "application/json", **(headers or {})}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {key: [value] for key, value in all_headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "test-request",
            "accountId": "123456789012",
            "apiId": "testapi",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


@pytest.fixture
def rest_event() -> object:
    return rest_api_event
