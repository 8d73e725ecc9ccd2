"""inbound state: what we last wrote per link, what the poller last saw per record

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entity_links") as batch:
        batch.add_column(sa.Column("written_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("written_state", sa.Text(), nullable=True))
    op.create_table(
        "inbound_records",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "provider", "tenant_id", "entity_type",
                                "provider_id"),
    )


def downgrade() -> None:
    op.drop_table("inbound_records")
    with op.batch_alter_table("entity_links") as batch:
        batch.drop_column("written_state")
        batch.drop_column("written_hash")
