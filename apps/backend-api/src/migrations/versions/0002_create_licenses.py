"""Create licenses with the fields the first release tracked.

Revision ID: 0002_create_licenses
Revises: 0001_create_users
Create Date: 2023-03-09 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0002_create_licenses"
down_revision: str | None = "0001_create_users"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "licenses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("license_number", sa.String(length=64), nullable=False),
        sa.Column("expiration_date", sa.Date(), nullable=True),
    )
    op.create_index("ix_licenses_provider_id", "licenses", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_licenses_provider_id", table_name="licenses")
    op.drop_table("licenses")
