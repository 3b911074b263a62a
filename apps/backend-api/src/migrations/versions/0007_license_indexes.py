"""Index licenses by expiration (campaign scheduler) and make provider/state/number unique.

Revision ID: 0007_license_indexes
Revises: 0006_exclude_from_calculations
Create Date: 2024-02-27 17:20:00
"""

from __future__ import annotations

from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0007_license_indexes"
down_revision: str | None = "0006_exclude_from_calculations"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_index("ix_licenses_expiration_date", "licenses", ["expiration_date"])
    op.create_index(
        "ix_licenses_provider_state_number",
        "licenses",
        ["provider_id", "state", "license_number"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_licenses_provider_state_number", table_name="licenses")
    op.drop_index("ix_licenses_expiration_date", table_name="licenses")
