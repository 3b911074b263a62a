"""Add licenses.is_imlc (granted through the Interstate Medical Licensure Compact).

Revision ID: 0009_license_is_imlc
Revises: 0008_user_renewal_goal
Create Date: 2024-09-16 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0009_license_is_imlc"
down_revision: str | None = "0008_user_renewal_goal"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("licenses", sa.Column("is_imlc", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("is_imlc")
