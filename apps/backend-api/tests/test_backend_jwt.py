# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""Access tokens: what decode_access_token accepts and every way a token must be refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_round_trip_keeps_the_claims(jwt_secret):
    from app import security

    now = datetime.now(UTC)
    token = security.create_access_token(subject="42", email="dr.lee@example.com", now=now)
    claims = security.decode_access_token(token)
    assert claims["sub"] == "42"
    assert claims["email"] == "dr.lee@example.com"
    assert claims["iss"] == security.JWT_ISSUER
    assert claims["exp"] - claims["iat"] == int(security.token_lifetime().total_seconds())
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"


def test_expired_token_is_rejected(jwt_secret):
    import jwt

    from app import security

    issued = datetime.now(UTC) - security.token_lifetime() - timedelta(minutes=1)
    token = security.create_access_token(subject="1", email="a@b.c", now=issued)
    with pytest.raises(security.InvalidTokenError) as excinfo:
        security.decode_access_token(token)
    assert isinstance(excinfo.value, jwt.ExpiredSignatureError)


def _signed(claims: dict[str, object], key: str, algorithm: str = "HS256") -> str:
    import jwt

    return str(jwt.encode(claims, key, algorithm=algorithm))


def _valid_claims() -> dict[str, object]:
    now = int(datetime.now(UTC).timestamp())
    return {"sub": "1", "email": "a@b.c", "iss": "credentialmate", "iat": now, "exp": now + 600}


def test_wrong_issuer_is_rejected(jwt_secret):
    from app import security

    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(_signed({**_valid_claims(), "iss": "someone-else"}, jwt_secret))
    # A prefix or substring of the issuer is not the issuer.
    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(_signed({**_valid_claims(), "iss": "credential"}, jwt_secret))


@pytest.mark.parametrize("claim", ["exp", "iss", "sub", "iat"])
def test_token_missing_a_required_claim_is_rejected(jwt_secret, claim):
    from app import security

    claims = _valid_claims()
    del claims[claim]
    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(_signed(claims, jwt_secret))


def test_unsigned_token_is_rejected(jwt_secret):
    from app import security

    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_valid_claims())}."
    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(token)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithm_is_rejected(jwt_secret):
    from app import security

    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(_signed(_valid_claims(), jwt_secret, algorithm="HS512"))


def test_tampered_payload_is_rejected(jwt_secret):
    from app import security

    header, _, signature = security.create_access_token(subject="1", email="a@b.c").split(".")
    forged = f"{header}.{_b64({**_valid_claims(), 'sub': '2'})}.{signature}"
    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(forged)


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c"])
def test_malformed_token_is_rejected(jwt_secret, token):
    from app import security

    with pytest.raises(security.InvalidTokenError):
        security.decode_access_token(token)
