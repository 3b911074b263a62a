"""Password hashing (bcrypt via passlib) and access tokens (HS256 JWT via PyJWT)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from passlib.context import CryptContext

from app import settings

log = logging.getLogger(__name__)

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "credentialmate"
JWT_SECRET_KEY = "jwt_secret"
DEFAULT_TOKEN_MINUTES = 60
# A token lacking any of these is rejected: without `exp` a leaked token would never expire.
REQUIRED_CLAIMS = ("sub", "iss", "iat", "exp")

# Raised for every unusable token (bad signature, wrong issuer, expired, missing claim, malformed). Callers
# catch this name, not the JWT library's, so the library can change without touching them.
InvalidTokenError = jwt.InvalidTokenError

_passwords = CryptContext(schemes=["bcrypt"], deprecated="auto")
# A bcrypt hash of a random, discarded string: unknown emails are checked against it so that they take as
# long as wrong passwords (no user enumeration by timing).
_DUMMY_HASH = "$2b$12$XKHutpMnYrNr8DiQpzPtjONkxkJXXcuGb8CimCTG.M5ofqnWOVntG"


def hash_password(plaintext: str, *, rounds: int | None = None) -> str:
    if rounds is None:
        return str(_passwords.hash(plaintext))
    return str(_passwords.handler("bcrypt").using(rounds=rounds).hash(plaintext))


def verify_password(plaintext: str, hashed: str | None) -> bool:
    """False for a wrong password, a missing user (hashed=None) or a malformed stored hash."""
    try:
        return bool(_passwords.verify(plaintext, hashed or _DUMMY_HASH)) and hashed is not None
    except (ValueError, TypeError):
        log.warning("stored password hash is malformed; treating the login as failed")
        return False


def signing_key() -> str:
    key = settings.setting(settings.JWT_SECRET_ENV, JWT_SECRET_KEY)
    if key is None:
        raise settings.ConfigurationError(
            f"no JWT signing key: set {settings.JWT_SECRET_ENV} "
            f"or the combined secret's {JWT_SECRET_KEY!r} key"
        )
    return key


def token_lifetime() -> timedelta:
    return timedelta(minutes=settings.int_setting(settings.JWT_EXPIRES_MINUTES_ENV, DEFAULT_TOKEN_MINUTES))


def create_access_token(*, subject: str, email: str, now: datetime | None = None) -> str:
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "email": email,
        "iss": JWT_ISSUER,
        "iat": int(issued.timestamp()),
        "exp": int((issued + token_lifetime()).timestamp()),
    }
    return str(jwt.encode(claims, signing_key(), algorithm=JWT_ALGORITHM))


def decode_access_token(token: str) -> dict[str, Any]:
    """The token's claims; raises InvalidTokenError when the signature, issuer, expiry or a claim is wrong.

    Only HS256 is accepted (never the token header's own choice, so no `none` or key-confusion downgrade).
    """
    claims = jwt.decode(
        token,
        signing_key(),
        algorithms=[JWT_ALGORITHM],
        issuer=JWT_ISSUER,
        options={"require": list(REQUIRED_CLAIMS)},
    )
    return dict(claims)
