"""tenancy: links know their company, event ids are unique per account, OAuth states are
bound to their starter and keep no plain-text verifier, disconnected connections keep no
tokens

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def _processed_events(name: str, pk: tuple[str, ...]) -> None:
    op.create_table(
        name,
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("processed_at", _UTC, nullable=False),
        sa.PrimaryKeyConstraint(*pk, name=f"pk_{name}"),
    )


def _oauth_states(*, secure: bool) -> None:
    columns: list[sa.schema.SchemaItem] = [
        sa.Column("state", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("code_verifier", sa.LargeBinary() if secure else sa.String(length=128),
                  nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("expires_at", _UTC, nullable=False),
        sa.Column("used_at", _UTC, nullable=True),
        sa.PrimaryKeyConstraint("state"),
    ]
    if secure:
        columns += [sa.Column("binding_hash", sa.String(length=64), nullable=False),
                    sa.Column("pending_tokens", sa.LargeBinary(), nullable=True),
                    sa.Column("tenant_choices", sa.Text(), nullable=True)]
    op.create_table("oauth_states", *columns)
    op.create_index("ix_oauth_states_account_id", "oauth_states", ["account_id"])


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("tenant_name", sa.Text(), nullable=True))
        batch.alter_column("access_token", existing_type=sa.LargeBinary(), nullable=True)
        batch.alter_column("refresh_token", existing_type=sa.LargeBinary(), nullable=True)

    with op.batch_alter_table("entity_links") as batch:
        batch.add_column(sa.Column("tenant_id", sa.String(length=128), nullable=True))
    # Existing links were made for the company the account is connected to now.
    op.execute("UPDATE entity_links SET tenant_id = (SELECT c.tenant_id FROM connections c "
               "WHERE c.account_id = entity_links.account_id "
               "AND c.provider = entity_links.provider)")

    _processed_events("processed_events_v5", ("account_id", "event_id"))
    op.execute("INSERT INTO processed_events_v5 (account_id, event_id, status, processed_at) "
               "SELECT account_id, event_id, status, processed_at FROM processed_events")
    op.drop_index("ix_processed_events_account_id", table_name="processed_events")
    op.drop_table("processed_events")
    op.rename_table("processed_events_v5", "processed_events")

    with op.batch_alter_table("parked_events") as batch:
        batch.drop_constraint("uq_parked_event", type_="unique")
        batch.create_unique_constraint("uq_parked_event", ["account_id", "event_id"])

    # Pending authorizations live ten minutes; the old ones (plain verifiers, no binding)
    # are dropped rather than carried over.
    op.drop_index("ix_oauth_states_account_id", table_name="oauth_states")
    op.drop_table("oauth_states")
    _oauth_states(secure=True)


def downgrade() -> None:
    op.drop_index("ix_oauth_states_account_id", table_name="oauth_states")
    op.drop_table("oauth_states")
    _oauth_states(secure=False)

    with op.batch_alter_table("parked_events") as batch:
        batch.drop_constraint("uq_parked_event", type_="unique")
        batch.create_unique_constraint("uq_parked_event", ["event_id"])

    _processed_events("processed_events_v4", ("event_id",))
    op.execute("INSERT INTO processed_events_v4 (account_id, event_id, status, processed_at) "
               "SELECT account_id, event_id, status, processed_at FROM processed_events")
    op.drop_table("processed_events")
    op.rename_table("processed_events_v4", "processed_events")
    op.create_index("ix_processed_events_account_id", "processed_events", ["account_id"])

    with op.batch_alter_table("entity_links") as batch:
        batch.drop_column("tenant_id")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("tenant_name")
        batch.alter_column("access_token", existing_type=sa.LargeBinary(), nullable=False)
        batch.alter_column("refresh_token", existing_type=sa.LargeBinary(), nullable=False)
