"""tax_rate_mappings: each BlueClerk tax rate of an account -> the company's tax code

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tax_rate_mappings",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("tax_key", sa.String(length=128), nullable=False),
        sa.Column("tax_name", sa.Text(), nullable=True),
        sa.Column("tax_rate", sa.String(length=32), nullable=False),
        sa.Column("provider_code", sa.String(length=128), nullable=False),
        sa.Column("provider_name", sa.Text(), nullable=True),
        sa.Column("provider_rate", sa.String(length=32), nullable=True),
        sa.Column("provider_kind", sa.String(length=16), nullable=False),
        sa.Column("provider_compound", sa.Boolean(), nullable=False),
        sa.Column("matched_by", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "tax_key"),
    )


def downgrade() -> None:
    op.drop_table("tax_rate_mappings")
