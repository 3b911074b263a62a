# mypy: allow-untyped-defs, allow-incomplete-defs
# (the repo's mypy override for tests.* does not match these top-level module names)
"""License.portal_password is stored encrypted (Fernet) and read back as plaintext."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa


def test_portal_password_roundtrip_stores_only_ciphertext(migrated_db, fernet_key):
    from app import db
    from app.models import License

    with db.require_session_factory()() as session:
        license_ = License(
            provider_id=7, state="CA", license_number="A12345", expiration_date=date(2030, 1, 1)
        )
        license_.portal_password = "hunter2-ü"
        session.add(license_)
        session.commit()
        license_id = license_.id
    # the column holds ciphertext, never the plaintext
    engine = sa.create_engine(migrated_db)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT portal_password FROM licenses")).scalar_one()
    engine.dispose()
    assert stored and "hunter2" not in stored and stored.startswith("gAAAA")
    with db.require_session_factory()() as session:
        loaded = session.get(License, license_id)
        assert loaded is not None
        assert loaded.portal_password == "hunter2-ü"
        assert "gAAAA" not in repr(loaded)


def test_none_clears_the_password(fernet_key):
    from app.models import License

    license_ = License(provider_id=1, state="TX", license_number="1")
    license_.portal_password = "secret"
    license_.portal_password = None
    assert license_.portal_password_ciphertext is None and license_.portal_password is None


def test_explicit_cipher_and_key_rotation():
    from cryptography.fernet import Fernet

    from app.crypto import DecryptionError, PasswordCipher
    from app.models import License

    old, new = Fernet.generate_key(), Fernet.generate_key()
    license_ = License(provider_id=1, state="TX", license_number="1")
    license_.set_portal_password("pw", cipher=PasswordCipher([old]))
    # rotation: new key first, old key kept, old ciphertext still readable
    assert license_.get_portal_password(cipher=PasswordCipher([new, old])) == "pw"
    with pytest.raises(DecryptionError, match="PORTAL_PASSWORD_KEY"):
        license_.get_portal_password(cipher=PasswordCipher([new]))


def test_missing_key_names_the_setting():
    from app.models import License
    from app.settings import ConfigurationError

    license_ = License(provider_id=1, state="TX", license_number="1")
    with pytest.raises(ConfigurationError, match=r"PORTAL_PASSWORD_KEY.*'portal_password_key'"):
        license_.portal_password = "pw"


def test_malformed_key_is_a_clear_error(monkeypatch):
    from app.crypto import default_cipher
    from app.settings import ConfigurationError

    monkeypatch.setenv("PORTAL_PASSWORD_KEY", "not-a-fernet-key")
    with pytest.raises(ConfigurationError, match="not a Fernet key"):
        default_cipher()
