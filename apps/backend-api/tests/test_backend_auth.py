# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""POST /api/v1/auth/login: 401 body contract, JWT on success, never a 5xx without a database."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

UNAUTHORIZED = {"detail": {"error": "UnauthorizedError", "message": "Invalid credentials"}}
LOGIN = "/api/v1/auth/login"


def client() -> TestClient:
    from app.main import create_app

    return TestClient(create_app())


def add_user(email: str, password: str, *, active: bool = True, goal_days: int | None = None) -> int:
    from app import db, security
    from app.models import User

    # 4 rounds: bcrypt's minimum keeps the tests fast; production hashes use passlib's default (12).
    user = User(
        email=email,
        hashed_password=security.hash_password(password, rounds=4),
        is_active=active,
        renewal_goal_days=goal_days,
    )
    with db.require_session_factory()() as session:
        session.add(user)
        session.commit()
        return user.id


@pytest.mark.parametrize("body", [{"email": "a@b.c", "password": "x"}, {"email": "", "password": ""}])
def test_without_database_every_login_is_401(body):
    response = client().post(LOGIN, json=body)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("dr.lee@example.com", "wrong password"),
        ("nobody@example.com", "correct horse"),
        ("", "correct horse"),
    ],
)
def test_bad_credentials_are_401_with_the_exact_body(migrated_db, jwt_secret, email, password):
    add_user("dr.lee@example.com", "correct horse")
    response = client().post(LOGIN, json={"email": email, "password": password})
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["www-authenticate"] == "Bearer"


def test_inactive_user_cannot_log_in(migrated_db, jwt_secret):
    add_user("gone@example.com", "pw", active=False)
    response = client().post(LOGIN, json={"email": "gone@example.com", "password": "pw"})
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_successful_login_issues_a_jwt_for_the_user(migrated_db, jwt_secret):
    import jwt

    user_id = add_user("dr.lee@example.com", "correct horse", goal_days=90)
    # email matching ignores case and surrounding spaces
    response = client().post(LOGIN, json={"email": "  Dr.Lee@Example.com ", "password": "correct horse"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["renewal_goal"] == {"kind": "license_renewal", "days_before_expiry": 90}
    claims = jwt.decode(body["access_token"], jwt_secret, algorithms=["HS256"], issuer="credentialmate")
    assert claims["sub"] == str(user_id)
    assert claims["email"] == "dr.lee@example.com"
    assert claims["exp"] - claims["iat"] == 3600


def test_invalid_stored_goal_falls_back_to_the_default_goal(migrated_db, jwt_secret):
    add_user("odd@example.com", "pw", goal_days=9999)
    response = client().post(LOGIN, json={"email": "odd@example.com", "password": "pw"})
    assert response.status_code == 200
    assert response.json()["renewal_goal"] == {"kind": "license_renewal", "days_before_expiry": 60}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_token_signed_with_another_key_is_rejected(migrated_db, jwt_secret, monkeypatch):
    from app import security

    token = security.create_access_token(subject="1", email="a@b.c")
    monkeypatch.setenv("JWT_SECRET", "another-key")
    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(token)


def test_missing_signing_key_is_503_naming_the_setting(migrated_db):
    add_user("dr.lee@example.com", "pw")
    response = client().post(LOGIN, json={"email": "dr.lee@example.com", "password": "pw"})
    assert response.status_code == 503
    assert response.json()["detail"]["error"] == "ServiceUnavailable"


def test_missing_signing_key_error_names_env_and_secret_key():
    from app import security, settings

    with pytest.raises(settings.ConfigurationError, match=r"JWT_SECRET.*'jwt_secret'"):
        security.signing_key()


def test_database_down_is_503_not_401(tmp_path, monkeypatch, jwt_secret):
    # A configured but broken database is an outage, not bad credentials: 401 would mislead clients.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    response = client().post(LOGIN, json={"email": "a@b.c", "password": "x"})
    assert response.status_code == 503
    assert response.json() == {"detail": {"error": "ServiceUnavailable", "message": "database unavailable"}}


def test_malformed_request_is_422():
    response = client().post(LOGIN, json={"email": "a@b.c"})
    assert response.status_code == 422


def test_malformed_stored_hash_is_a_failed_login_not_a_crash(migrated_db, jwt_secret):
    from app import db
    from app.models import User

    with db.require_session_factory()() as session:
        session.add(User(email="bad@example.com", hashed_password="not-a-bcrypt-hash"))
        session.commit()
    response = client().post(LOGIN, json={"email": "bad@example.com", "password": "x"})
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
