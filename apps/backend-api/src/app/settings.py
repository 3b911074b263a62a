"""Configuration from the environment, with secrets from one combined Secrets Manager secret.

Nothing here runs at import: the secret is fetched with boto3 on first use and cached for the life of the
execution environment (a rotated secret is picked up by new environments, as with any Lambda cache).
An environment variable always wins over the secret, which is how tests and local runs configure things.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

COMBINED_SECRET_ARN_ENV = "COMBINED_SECRET_ARN"
DATABASE_URL_ENV = "DATABASE_URL"
CORS_ORIGINS_ENV = "CORS_ALLOWED_ORIGINS"
DEFAULT_CORS_ORIGINS = ("https://credentialmate.com",)
JWT_SECRET_ENV = "JWT_SECRET"
JWT_EXPIRES_MINUTES_ENV = "JWT_EXPIRES_MINUTES"
PORTAL_PASSWORD_KEY_ENV = "PORTAL_PASSWORD_KEY"
WORKER_QUEUE_URL_ENV = "WORKER_QUEUE_URL"

# Secrets Manager calls must not eat the function's whole timeout when the network is broken.
_SECRETS_CONNECT_TIMEOUT_S = 3
_SECRETS_READ_TIMEOUT_S = 5

_lock = threading.Lock()
_secret_cache: dict[str, dict[str, Any]] = {}


class ConfigurationError(RuntimeError):
    """Configuration is missing or malformed; the message names the variable or secret key to fix."""


def env(name: str) -> str | None:
    """The variable's value stripped, or None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def cors_origins() -> list[str]:
    raw = env(CORS_ORIGINS_ENV)
    if raw is None:
        return list(DEFAULT_CORS_ORIGINS)
    return [origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip()]


def combined_secret() -> dict[str, Any] | None:
    """The combined secret's JSON object, or None when COMBINED_SECRET_ARN is unset. Cached per ARN."""
    arn = env(COMBINED_SECRET_ARN_ENV)
    if arn is None:
        return None
    with _lock:
        if arn not in _secret_cache:
            _secret_cache[arn] = _fetch_secret(arn)
        return _secret_cache[arn]


def _fetch_secret(arn: str) -> dict[str, Any]:
    # boto3 is imported here, not at module top: only functions configured with a secret pay its import
    # time, and the bundle's import closure (checked at synth, swept by the probe) still proves it loads.
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "secretsmanager",
        config=Config(
            connect_timeout=_SECRETS_CONNECT_TIMEOUT_S,
            read_timeout=_SECRETS_READ_TIMEOUT_S,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )
    response = client.get_secret_value(SecretId=arn)
    raw = response.get("SecretString")
    if not isinstance(raw, str):
        raise ConfigurationError(f"secret {arn} ({COMBINED_SECRET_ARN_ENV}) has no SecretString")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"secret {arn} ({COMBINED_SECRET_ARN_ENV}) is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"secret {arn} ({COMBINED_SECRET_ARN_ENV}) must be a JSON object")
    return data


def setting(env_name: str, secret_key: str) -> str | None:
    """The environment variable if set, else the combined secret's key, else None."""
    value = env(env_name)
    if value is not None:
        return value
    secret = combined_secret()
    if secret is None or secret.get(secret_key) in (None, ""):
        return None
    found = secret[secret_key]
    if not isinstance(found, str):
        raise ConfigurationError(
            f"key {secret_key!r} of secret {env(COMBINED_SECRET_ARN_ENV)} must be a string, "
            f"got {type(found).__name__}"
        )
    return found


def int_setting(env_name: str, default: int) -> int:
    raw = env(env_name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{env_name} must be an integer, got {raw!r}") from None


def clear_caches() -> None:
    """Forget the cached secret (tests; a real environment keeps it for its lifetime)."""
    with _lock:
        _secret_cache.clear()
