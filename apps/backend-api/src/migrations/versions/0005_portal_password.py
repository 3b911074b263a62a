"""Add licenses.portal_password, holding Fernet ciphertext only (app.crypto).

Revision ID: 0005_portal_password
Revises: 0004_portal_access
Create Date: 2023-08-21 14:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0005_portal_password"
down_revision: str | None = "0004_portal_access"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("licenses", sa.Column("portal_password", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("portal_password")
