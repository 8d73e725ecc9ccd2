"""inbound_cursors: how far each account's accounting-system changes have been polled

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_cursors",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("polled_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("boundary_keys", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("inbound_cursors")
