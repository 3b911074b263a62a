"""Encryption at rest for portal passwords (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`).

Keys come from PORTAL_PASSWORD_KEY, else the combined secret's `portal_password_key`: one or more
comma-separated Fernet keys. The first encrypts; all decrypt, so a key is rotated by prepending the new one
and re-encrypting before dropping the old one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app import settings

PORTAL_PASSWORD_SECRET_KEY = "portal_password_key"

_lock = threading.Lock()
_default: list[PasswordCipher] = []


class DecryptionError(RuntimeError):
    """Ciphertext does not decrypt with any configured key (wrong key, or the old key was dropped)."""


class PasswordCipher:
    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise settings.ConfigurationError("PasswordCipher needs at least one Fernet key")
        fernets = []
        for index, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise settings.ConfigurationError(
                    f"portal password key #{index + 1} ({settings.PORTAL_PASSWORD_KEY_ENV} or secret key "
                    f"{PORTAL_PASSWORD_SECRET_KEY!r}) is not a Fernet key (32 url-safe base64-encoded bytes; "
                    "make one with cryptography.fernet.Fernet.generate_key())"
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls) -> PasswordCipher:
        raw = settings.setting(settings.PORTAL_PASSWORD_KEY_ENV, PORTAL_PASSWORD_SECRET_KEY)
        if raw is None:
            raise settings.ConfigurationError(
                f"no portal password key: set {settings.PORTAL_PASSWORD_KEY_ENV} or the combined secret's "
                f"{PORTAL_PASSWORD_SECRET_KEY!r} key"
            )
        return cls([key.strip() for key in raw.split(",") if key.strip()])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError):
            raise DecryptionError(
                "portal password does not decrypt with the configured key(s): was the key rotated without "
                f"keeping the old one in {settings.PORTAL_PASSWORD_KEY_ENV}?"
            ) from None


def default_cipher() -> PasswordCipher:
    """The cipher from configuration, built on first use and cached."""
    with _lock:
        if not _default:
            _default.append(PasswordCipher.from_settings())
        return _default[0]


def clear_cache() -> None:
    with _lock:
        _default.clear()
