"""SQLAlchemy models. The Alembic revisions in migrations/versions build exactly this schema (a test compares
the migrated database with this metadata), so change both together: edit here, then add a revision."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Index, Integer, String, Text, false, func, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.crypto import PasswordCipher, default_cipher


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=true(), default=True)
    # Days before expiry the user wants renewal reminders (goals_common.RenewalGoal); None = default.
    renewal_goal_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (
        Index("ix_licenses_provider_state_number", "provider_id", "state", "license_number", unique=True),
        Index("ix_licenses_expiration_date", "expiration_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(Integer, index=True)
    state: Mapped[str] = mapped_column(String(2))
    license_number: Mapped[str] = mapped_column(String(64))
    license_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expiration_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    is_imlc: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    portal_access_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    portal_username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The column keeps the incident's name but only ever holds Fernet ciphertext; use the
    # `portal_password` property (or set_/get_portal_password with an explicit cipher) for plaintext.
    portal_password_ciphertext: Mapped[str | None] = mapped_column("portal_password", Text, nullable=True)
    exclude_from_calculations: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)

    def set_portal_password(self, plaintext: str | None, *, cipher: PasswordCipher | None = None) -> None:
        if plaintext is None:
            self.portal_password_ciphertext = None
            return
        self.portal_password_ciphertext = (cipher or default_cipher()).encrypt(plaintext)

    def get_portal_password(self, *, cipher: PasswordCipher | None = None) -> str | None:
        if self.portal_password_ciphertext is None:
            return None
        return (cipher or default_cipher()).decrypt(self.portal_password_ciphertext)

    @property
    def portal_password(self) -> str | None:
        return self.get_portal_password()

    @portal_password.setter
    def portal_password(self, plaintext: str | None) -> None:
        self.set_portal_password(plaintext)

    def __repr__(self) -> str:  # never the password, not even its ciphertext
        return f"License(id={self.id!r}, provider_id={self.provider_id!r}, state={self.state!r})"
