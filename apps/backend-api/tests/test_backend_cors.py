# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""CORS: origins from CORS_ALLOWED_ORIGINS (default https://credentialmate.com), fixed methods and headers."""

from __future__ import annotations

from fastapi.testclient import TestClient


def client() -> TestClient:
    from app.main import create_app

    return TestClient(create_app())


def test_default_origin_is_allowed_on_simple_requests():
    response = client().get("/health", headers={"Origin": "https://credentialmate.com"})
    assert response.headers["access-control-allow-origin"] == "https://credentialmate.com"


def test_unlisted_origin_gets_no_cors_header():
    response = client().get("/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_origins_come_from_the_comma_separated_variable(monkeypatch):
    monkeypatch.setenv(
        "CORS_ALLOWED_ORIGINS", "https://app.credentialmate.com, https://staging.credentialmate.com/"
    )
    c = client()
    for origin in ("https://app.credentialmate.com", "https://staging.credentialmate.com"):
        assert c.get("/health", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin
    assert (
        "access-control-allow-origin"
        not in c.get("/health", headers={"Origin": "https://credentialmate.com"}).headers
    )


def test_preflight_allows_the_configured_methods_and_headers(monkeypatch):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", "https://app.credentialmate.com")
    response = client().options(
        "/api/v1/auth/login",
        headers={
            "Origin": "https://app.credentialmate.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.credentialmate.com"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= headers
    assert "access-control-allow-credentials" not in response.headers


def test_preflight_from_unlisted_origin_is_refused():
    response = client().options(
        "/api/v1/auth/login",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_preflight_for_an_unlisted_header_is_refused():
    response = client().options(
        "/api/v1/auth/login",
        headers={
            "Origin": "https://credentialmate.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Custom",
        },
    )
    assert response.status_code == 400
