# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""GET /health and app.versions.report(): code version, schema head, database version, never a crash."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

HEAD = "0009_license_is_imlc"
PROBE = Path(__file__).resolve().parents[3] / "lambda_src" / "probe" / "credmate_probe.py"


def get_health() -> tuple[int, dict[str, Any]]:
    from app.main import create_app

    response = TestClient(create_app()).get("/health")
    return response.status_code, response.json()


def test_health_without_database_or_build_info_is_exactly_the_documented_body():
    # GIVEN no DATABASE_URL, no COMBINED_SECRET_ARN and no build_info.json in src/
    # WHEN GET /health
    status, body = get_health()
    # THEN healthy, dev code, the shipped head, and a null database version without an error
    assert status == 200
    assert body == {
        "status": "healthy",
        "mode": "lazy",
        "code_version": "dev",
        "schema_head": HEAD,
        "db_version": None,
    }


def test_health_with_migrated_database_reports_its_version(migrated_db):
    status, body = get_health()
    assert status == 200
    assert body["db_version"] == body["schema_head"] == HEAD
    assert "db_error" not in body


def test_health_reports_an_older_database_version(sqlite_url, monkeypatch):
    from app import schema

    schema.upgrade(sqlite_url, "0005_portal_password")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    _, body = get_health()
    assert (body["schema_head"], body["db_version"]) == (HEAD, "0005_portal_password")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"code_version": "abc123def456", "source_hash": "f" * 64}, "abc123def456"),
        ({"source_hash": "e" * 64}, "e" * 64),
    ],
)
def test_code_version_comes_from_build_info(tmp_path, monkeypatch, info, expected):
    from app import versions

    build_info = tmp_path / "build_info.json"
    build_info.write_text(json.dumps(info))
    monkeypatch.setattr(versions, "BUILD_INFO", build_info)
    _, body = get_health()
    assert body["code_version"] == expected


def test_build_info_is_read_from_the_bundle_root_next_to_handler():
    from app import versions

    assert Path(__file__).resolve().parents[1] / "src" / "build_info.json" == versions.BUILD_INFO
    assert (versions.BUILD_INFO.parent / "handler.py").is_file()


def test_unreadable_build_info_is_reported_not_raised(tmp_path, monkeypatch):
    from app import versions

    build_info = tmp_path / "build_info.json"
    build_info.write_text("{not json")
    monkeypatch.setattr(versions, "BUILD_INFO", build_info)
    status, body = get_health()
    # an odd build_info.json is the bundler's problem, not a reason to take the app out of service
    assert (status, body["status"]) == (200, "healthy")
    assert body["code_version"].startswith("unknown")


def test_unreachable_database_is_503_unhealthy_with_db_error(tmp_path, monkeypatch):
    # GIVEN a database URL that cannot be opened
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing-dir' / 'db.sqlite'}")
    status, body = get_health()
    # THEN a structured 503 (not a crash) that canaries fail on, with the versions still reported
    assert status == 503
    assert body["status"] == "unhealthy"
    assert (body["code_version"], body["schema_head"], body["db_version"]) == ("dev", HEAD, None)
    # the driver's message only: no SQL, no URL
    assert body["db_error"] == "OperationalError: unable to open database file"


def test_unmigrated_database_gives_db_error(sqlite_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    status, body = get_health()
    assert (status, body["status"], body["db_version"]) == (503, "unhealthy", None)
    assert "run the migrations" in body["db_error"]


def test_secret_that_cannot_be_fetched_gives_db_error(monkeypatch):
    from moto import mock_aws

    monkeypatch.setenv(
        "COMBINED_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:credmate-missing"
    )
    with mock_aws():
        status, body = get_health()
    assert (status, body["db_version"]) == (503, None)
    assert "ResourceNotFoundException" in body["db_error"]


def test_several_migration_heads_are_reported_as_schema_error(tmp_path, monkeypatch):
    from app import schema, versions

    migrations = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS_DIR, migrations)
    (migrations / "versions" / "0010_branch.py").write_text(
        'revision = "0010_branch"\ndown_revision = "0008_user_renewal_goal"\n'
        "def upgrade():\n    pass\ndef downgrade():\n    pass\n"
    )
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", migrations)
    status, body = get_health()
    assert (status, body["status"]) == (503, "unhealthy")
    report = versions.report()
    error = report["schema_error"]
    assert report["schema_head"] is None and error is not None
    assert "several heads" in error and "alembic merge" in error


def test_probe_reads_versions_through_app_versions_report(migrated_db, monkeypatch):
    # GIVEN the deploy-time probe wrapper (lambda_src/probe) told to use this backend's own reader
    monkeypatch.setenv("CREDMATE_REAL_HANDLER", "handler.lambda_handler")
    monkeypatch.setenv("SCHEMA_VERSION_READER", "app.versions:report")
    spec = importlib.util.spec_from_file_location("credmate_probe_backend_test", PROBE)
    assert spec and spec.loader
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    # WHEN it reads versions THEN it gets ours, from app.versions:report, without errors
    versions, source, error = probe.read_versions(os.environ, {})
    assert error is None and source == "app.versions:report"
    assert versions == {"code_version": "dev", "schema_head": HEAD, "db_version": HEAD}
