"""Add licenses.exclude_from_calculations (skipped by compliance math and reminders).

Revision ID: 0006_exclude_from_calculations
Revises: 0005_portal_password
Create Date: 2024-01-11 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0006_exclude_from_calculations"
down_revision: str | None = "0005_portal_password"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column(
        "licenses",
        sa.Column("exclude_from_calculations", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("exclude_from_calculations")
