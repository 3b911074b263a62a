"""Add state-board portal access notes and username.

Revision ID: 0004_portal_access
Revises: 0003_license_type
Create Date: 2023-08-07 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0004_portal_access"
down_revision: str | None = "0003_license_type"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("licenses", sa.Column("portal_access_notes", sa.Text(), nullable=True))
    op.add_column("licenses", sa.Column("portal_username", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("portal_username")
        batch.drop_column("portal_access_notes")
