"""Add users.renewal_goal_days (goals_common.RenewalGoal; null = default goal).

Revision ID: 0008_user_renewal_goal
Revises: 0007_license_indexes
Create Date: 2024-06-03 08:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Alembic's template header, repeated in every revision on purpose: each revision file must stand alone.
revision: str = "0008_user_renewal_goal"
down_revision: str | None = "0007_license_indexes"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("renewal_goal_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("renewal_goal_days")
