"""connections: index on (provider, tenant_id) for webhook and wizard lookups

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_connections_provider_tenant", "connections", ["provider", "tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_connections_provider_tenant", table_name="connections")
