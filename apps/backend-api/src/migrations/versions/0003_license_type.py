"""Add licenses.license_type (MD, DO, NP, PA, ...).

Revision ID: 0003_license_type
Revises: 0002_create_licenses
Create Date: 2023-05-18 11:02:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0003_license_type"
down_revision: str | None = "0002_create_licenses"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("licenses", sa.Column("license_type", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("license_type")
