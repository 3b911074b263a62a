# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""The Lambda entry points: Mangum over API Gateway REST events, and imports free of network/AWS calls."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
NO_CONTEXT: Any = None  # the app never reads the Lambda context


def test_rest_api_event_for_health_returns_200(rest_event):
    import handler

    response = handler.lambda_handler(rest_event("/health"), NO_CONTEXT)
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["status"] == "healthy" and body["mode"] == "lazy"


def test_rest_api_login_without_database_is_401(rest_event):
    import handler

    event = rest_event("/api/v1/auth/login", "POST", {"Content-Type": "application/json"})
    event["body"] = json.dumps({"email": "a@b.c", "password": "x"})
    response = handler.lambda_handler(event, NO_CONTEXT)
    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {
        "detail": {"error": "UnauthorizedError", "message": "Invalid credentials"}
    }


def test_rest_api_cors_header_for_allowed_origin(rest_event):
    import handler

    response = handler.lambda_handler(
        rest_event("/health", headers={"Origin": "https://credentialmate.com"}), NO_CONTEXT
    )
    assert response["headers"]["access-control-allow-origin"] == "https://credentialmate.com"


def test_importing_the_handlers_makes_no_aws_call_and_writes_no_bytecode(tmp_path):
    # GIVEN a secret ARN configured and every botocore API call made to fail loudly
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(SRC)!r})
        import botocore.client

        def forbidden(self, operation, params):
            raise AssertionError(f"AWS call at import: {{operation}}")

        botocore.client.BaseClient._make_api_call = forbidden
        import handler, worker, campaign_scheduler, app.versions
        assert callable(handler.lambda_handler) and callable(worker.lambda_handler)
        assert callable(campaign_scheduler.lambda_handler) and callable(app.versions.report)
        print("imported")
        """
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "COMBINED_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # WHEN the three handler modules are imported in a fresh interpreter
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    # THEN they import without touching AWS
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported"
    assert not list(SRC.rglob("__pycache__"))
