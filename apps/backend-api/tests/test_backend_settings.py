# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""Database URL and secrets: DATABASE_URL wins; otherwise the combined secret is fetched once, lazily.

Secrets Manager is moto's (no AWS account here)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from sqlalchemy.pool import QueuePool


def create_secret(value: object) -> str:
    client = boto3.client("secretsmanager")
    raw = value if isinstance(value, str) else json.dumps(value)
    return client.create_secret(Name="credmate/combined", SecretString=raw)["ARN"]


def test_no_configuration_means_no_database():
    from app import db

    assert db.database_url() is None and db.engine() is None and db.session_factory() is None
    with pytest.raises(db.DatabaseNotConfigured, match="DATABASE_URL or COMBINED_SECRET_ARN"):
        db.require_session_factory()


def test_database_url_from_the_combined_secret_is_fetched_once(monkeypatch):
    from app import db

    with mock_aws():
        arn = create_secret({"database_url": "postgres://u:p@db.internal:5432/credmate", "jwt_secret": "s"})
        monkeypatch.setenv("COMBINED_SECRET_ARN", arn)
        # Heroku-style scheme normalized for SQLAlchemy 2
        assert db.database_url() == "postgresql://u:p@db.internal:5432/credmate"
        boto3.client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        # cached: no second fetch (it would now fail)
        assert db.database_url() == "postgresql://u:p@db.internal:5432/credmate"


def test_environment_wins_over_the_secret_without_fetching_it(monkeypatch, sqlite_url):
    from app import db, security

    monkeypatch.setenv("COMBINED_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:unused")
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("JWT_SECRET", "from-env")
    with mock_aws():  # the secret does not exist: any fetch would raise
        assert db.database_url() == sqlite_url
        assert security.signing_key() == "from-env"


def test_jwt_secret_from_the_combined_secret(monkeypatch):
    from app import security

    with mock_aws():
        monkeypatch.setenv(
            "COMBINED_SECRET_ARN", create_secret({"database_url": "sqlite://", "jwt_secret": "s3"})
        )
        assert security.signing_key() == "s3"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"jwt_secret": "x"}, "has no 'database_url' key"),
        ("not json", "is not JSON"),
        (["a", "list"], "must be a JSON object"),
        ({"database_url": 5}, "must be a string"),
    ],
)
def test_malformed_secret_errors_name_the_problem(monkeypatch, value, message):
    from app import db, settings

    with mock_aws():
        monkeypatch.setenv("COMBINED_SECRET_ARN", create_secret(value))
        with pytest.raises(settings.ConfigurationError, match=message):
            db.database_url()


def test_postgres_engine_gets_a_small_pool_and_connect_timeout(monkeypatch):
    from app import db

    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db.invalid/credmate")
    engine = db.engine()
    assert engine is not None and engine is db.engine()  # cached, and creating it did not connect
    assert isinstance(engine.pool, QueuePool) and engine.pool.size() == 1


def test_bad_jwt_lifetime_is_a_clear_error(monkeypatch):
    from app import security, settings

    monkeypatch.setenv("JWT_EXPIRES_MINUTES", "an hour")
    with pytest.raises(settings.ConfigurationError, match="JWT_EXPIRES_MINUTES"):
        security.token_lifetime()
