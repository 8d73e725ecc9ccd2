"""SQLAlchemy 2 models: everything the service must remember between events.

Every table is keyed by the BlueClerk account (tenant) first, so one tenant's rows
cluster together and a tenant can be removed or migrated on its own.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Connection",
    "DeadLetter",
    "EntityLink",
    "IncomeAccountMapping",
    "Intent",
    "OutboxMessage",
    "ParkedEvent",
    "ProcessedEvent",
    "Snapshot",
    "SyncSettings",
    "TaxRateMapping",
    "WizardProgress",
]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None,
                             dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime()}


class Connection(Base):
    """One accounting system per BlueClerk account; tokens are encrypted at rest."""

    __tablename__ = "connections"
    # Webhooks and the wizard find accounts by the provider's tenant id.
    __table_args__ = (Index("ix_connections_provider_tenant", "provider", "tenant_id"),)
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    # The provider company (QuickBooks realm, Xero organisation, FreshBooks account) this
    # connection writes to; links made for one company are never used for another.
    tenant_id: Mapped[str] = mapped_column(String(128))
    tenant_name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), default="active")
    connected_at: Mapped[dt.datetime]
    # Encrypted; None once the connection is disconnected (the tokens are deleted).
    access_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    refresh_token: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_expires_at: Mapped[dt.datetime]
    # Grows by one at every token rotation; a refresh commits only if the version it
    # read is still current, so two workers never both spend one refresh token.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    last_sync_at: Mapped[dt.datetime | None]
    status_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow, onupdate=_utcnow)


class SyncSettings(Base):
    __tablename__ = "sync_settings"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sync_customers: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_items: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_invoices: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_payments: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_sync: Mapped[bool] = mapped_column(Boolean, default=True)


class IncomeAccountMapping(Base):
    __tablename__ = "income_account_mappings"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider_account_id: Mapped[str] = mapped_column(String(128))
    provider_account_name: Mapped[str | None] = mapped_column(Text)


class TaxRateMapping(Base):
    """A BlueClerk tax rate (InvoiceLine.tax_key) -> the connected company's tax code."""

    __tablename__ = "tax_rate_mappings"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tax_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    tax_name: Mapped[str | None] = mapped_column(Text)  # BlueClerk's name, for the wizard
    tax_rate: Mapped[str] = mapped_column(String(32))  # BlueClerk's percent, as text
    provider_code: Mapped[str] = mapped_column(String(128))
    provider_name: Mapped[str | None] = mapped_column(Text)
    provider_rate: Mapped[str | None] = mapped_column(String(32))  # None: computed (US AST)
    provider_kind: Mapped[str] = mapped_column(String(16), default="rate")
    provider_compound: Mapped[bool] = mapped_column(Boolean, default=False)
    matched_by: Mapped[str] = mapped_column(String(8))  # auto | user
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow, onupdate=_utcnow)


class EntityLink(Base):
    """BlueClerk record <-> provider record, with what was last applied to it."""

    __tablename__ = "entity_links"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    # The company the provider record lives in; a link is used only while the account's
    # connection points at this same company.
    tenant_id: Mapped[str | None] = mapped_column(String(128))
    provider_id: Mapped[str] = mapped_column(String(128))
    provider_version: Mapped[str | None] = mapped_column(String(64))
    last_applied_version: Mapped[int] = mapped_column(BigInteger, default=0)
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow, onupdate=_utcnow)
    # What our last write put in the books, in canonical form (schemas/inbound.py): the
    # fields it determines (`written_state`, JSON) and their echo hash. The inbound poller
    # takes a change whose echo hash equals it for our own write, once, then clears it.
    written_hash: Mapped[str | None] = mapped_column(String(64))
    written_state: Mapped[str | None] = mapped_column(Text)


class Snapshot(Base):
    """The latest snapshot seen per record, used to create dependencies on demand."""

    __tablename__ = "snapshots"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_version: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the encoded change event
    record_created_at: Mapped[dt.datetime]


class ProcessedEvent(Base):
    """Event ids are unique per account: another tenant's producer reusing an id can never
    make this account's event look like a duplicate."""

    __tablename__ = "processed_events"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(24))
    processed_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class Intent(Base):
    """Written before a provider call; its key is what the provider dedupes on."""

    __tablename__ = "intents"
    idempotency_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(128))
    operation: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class ParkedEvent(Base):
    """An event that waits: for a dependency, an income-account mapping, or Sync Now."""

    __tablename__ = "parked_events"
    __table_args__ = (
        UniqueConstraint("account_id", "event_id", name="uq_parked_event"),
        Index("ix_parked_wait", "account_id", "reason", "waits_for"),
        # repository.parked_before: earlier parked changes of one record (migration 0008).
        Index("ix_parked_record", "account_id", "entity_type", "entity_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(128))
    # missing_dependency | unmapped_item | pending_manual | reconnect_required
    reason: Mapped[str] = mapped_column(String(24))
    waits_for: Mapped[str | None] = mapped_column(String(160))  # "customer:c-1", "item:i-2"
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    parked_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class OutboxMessage(Base):
    """Status events written in the same transaction as the outcome, published after."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    topic_kind: Mapped[str] = mapped_column(String(16))  # status | inbound
    key: Mapped[str] = mapped_column(String(320))
    status: Mapped[str | None] = mapped_column(String(24))
    error_code: Mapped[str | None] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str | None] = mapped_column(Text)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(index=True)


class DeadLetter(Base):
    """A copy of every dead-lettered event, so an operator can replay it after a fix."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str | None] = mapped_column(String(64), index=True)
    entity_type: Mapped[str | None] = mapped_column(String(16))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    error_code: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    replayed_at: Mapped[dt.datetime | None]


class WizardProgress(Base):
    __tablename__ = "wizard_progress"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(Text, default="{}")  # JSON: steps done/skipped, counts
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow, onupdate=_utcnow)


class OAuthState(Base):
    """A pending OAuth2 authorization: checked on the callback, usable once, for 10 minutes."""

    __tablename__ = "oauth_states"
    state: Mapped[str] = mapped_column(String(128), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    code_verifier: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted like tokens
    # SHA-256 of the one-time browser binding handed to whoever started the connection;
    # the callback must present it, so a consent completed by someone else attaches nothing.
    binding_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    # When the consent authorised several organisations: the encrypted grant and the
    # choices, kept until the user picks one (or the state expires).
    pending_tokens: Mapped[bytes | None] = mapped_column(LargeBinary)
    tenant_choices: Mapped[str | None] = mapped_column(Text)


__all__ += ["OAuthState"]


class InboundCursor(Base):
    """How far the inbound poller has read an account's changes in the accounting system.

    `polled_through` is the `since` of the next fetch; `boundary_keys` (JSON) holds the
    changes already handled with a change time at or after it, which the next fetch
    reads again and must not emit twice. Both move in the transaction that writes the
    changes' events to the outbox.
    """

    __tablename__ = "inbound_cursors"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    polled_through: Mapped[dt.datetime]
    boundary_keys: Mapped[str] = mapped_column(Text, default="[]")
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow, onupdate=_utcnow)


class InboundRecord(Base):
    """The last state the inbound poller saw of one record in the books (linked or not),
    in canonical form: how it tells created from updated, which fields changed, and
    that a re-read or a repeated notification brings nothing new."""

    __tablename__ = "inbound_records"
    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    provider_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(Text)  # JSON
    changed_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow, onupdate=_utcnow)


__all__ += ["InboundCursor", "InboundRecord"]
