"""Queries and writes the sync engine makes, as plain functions over a Session.

Callers own the transaction: every function here runs inside the caller's unit of work,
so an outcome, its link, its processed-event row and its status commit together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from providers.taxes import BlueClerkTaxRate, ProviderTaxRate
from state.connections import Company
from state.models import (
    DeadLetter,
    EntityLink,
    IncomeAccountMapping,
    Intent,
    OutboxMessage,
    ParkedEvent,
    ProcessedEvent,
    Snapshot,
    SyncSettings,
    TaxRateMapping,
)

__all__ = [
    "add_dead_letter",
    "add_outbox",
    "begin_intent",
    "complete_intent",
    "get_link",
    "get_mapping",
    "get_parked",
    "get_settings",
    "get_snapshot",
    "get_tax_mapping",
    "has_parked",
    "is_parked",
    "mark_processed",
    "mark_published",
    "park",
    "parked_before",
    "parked_for",
    "processed_status",
    "save_link",
    "save_snapshot",
    "save_tax_mapping",
    "tax_code_of",
    "unpark",
    "unpublished",
]


def processed_status(s: Session, account_id: str, event_id: str) -> str | None:
    row = s.get(ProcessedEvent, (account_id, event_id))
    return row.status if row else None


def mark_processed(s: Session, event_id: str, account_id: str, status: str, *,
                   new: bool = False) -> None:
    """Record the event's status; `new`: the caller knows there is no row yet (it read
    none earlier under the tenant lock), so it is inserted without being looked up."""
    row = None if new else s.get(ProcessedEvent, (account_id, event_id))
    if row is None:
        s.add(ProcessedEvent(event_id=event_id, account_id=account_id, status=status))
    else:
        row.status = status
        row.processed_at = dt.datetime.now(dt.UTC)


def get_link(s: Session, company: Company, entity_type: str, entity_id: str
             ) -> EntityLink | None:
    """The record's link, only if it points into `company`: a link made for another
    company (an earlier connection of the account) is as good as none."""
    link = s.get(EntityLink, (company.account_id, entity_type, entity_id))
    if link is None or (link.provider, link.tenant_id) != (company.provider, company.tenant_id):
        return None
    return link


def save_link(s: Session, company: Company, entity_type: str, entity_id: str,
              provider_id: str, provider_version: str | None, applied_version: int,
              payload_hash: str | None) -> EntityLink:
    link = s.get(EntityLink, (company.account_id, entity_type, entity_id))
    if link is None or (link.provider, link.tenant_id) != (company.provider, company.tenant_id):
        # A new link, or one for another company whose history means nothing here.
        if link is None:
            link = EntityLink(account_id=company.account_id, entity_type=entity_type,
                              entity_id=entity_id)
            s.add(link)
        link.last_applied_version = 0
    link.provider = company.provider
    link.tenant_id = company.tenant_id
    link.provider_id = provider_id
    link.provider_version = provider_version
    link.last_applied_version = max(link.last_applied_version or 0, applied_version)
    link.payload_hash = payload_hash
    return link


def save_snapshot(s: Session, account_id: str, entity_type: str, entity_id: str, version: int,
                  payload: bytes, record_created_at: dt.datetime) -> None:
    """Keep the newest snapshot per record; an older version never overwrites a newer."""
    row = s.get(Snapshot, (account_id, entity_type, entity_id))
    if row is None:
        s.add(Snapshot(account_id=account_id, entity_type=entity_type, entity_id=entity_id,
                       entity_version=version, payload=payload,
                       record_created_at=record_created_at))
    elif version > row.entity_version:
        row.entity_version = version
        row.payload = payload
        row.record_created_at = record_created_at


def get_snapshot(s: Session, account_id: str, entity_type: str, entity_id: str) -> Snapshot | None:
    return s.get(Snapshot, (account_id, entity_type, entity_id))


def get_settings(s: Session, account_id: str) -> SyncSettings | None:
    return s.get(SyncSettings, account_id)


def get_mapping(s: Session, account_id: str, item_id: str) -> IncomeAccountMapping | None:
    return s.get(IncomeAccountMapping, (account_id, item_id))


def get_tax_mapping(s: Session, account_id: str, tax_key: str) -> TaxRateMapping | None:
    return s.get(TaxRateMapping, (account_id, tax_key))


def save_tax_mapping(s: Session, account_id: str, rate: BlueClerkTaxRate,
                     code: ProviderTaxRate, matched_by: str, reason: str) -> TaxRateMapping:
    row = s.get(TaxRateMapping, (account_id, rate.key))
    if row is None:
        row = TaxRateMapping(account_id=account_id, tax_key=rate.key)
        s.add(row)
    row.tax_name = rate.name
    row.tax_rate = f"{rate.rate.normalize():f}"
    row.provider_code = code.code
    row.provider_name = code.name
    row.provider_rate = f"{code.rate.normalize():f}" if code.rate is not None else None
    row.provider_kind = code.kind
    row.provider_compound = code.compound
    row.matched_by = matched_by
    row.reason = reason
    return row


def tax_code_of(row: TaxRateMapping) -> ProviderTaxRate:
    return ProviderTaxRate(row.provider_code, row.provider_name or row.provider_code,
                           Decimal(row.provider_rate) if row.provider_rate is not None
                           else None, row.provider_compound, row.provider_kind)


def park(s: Session, *, event_id: str, account_id: str, entity_type: str, entity_id: str,
         reason: str, waits_for: str | None, payload: bytes) -> None:
    existing = get_parked(s, account_id, event_id)
    if existing is None:
        s.add(ParkedEvent(event_id=event_id, account_id=account_id, entity_type=entity_type,
                          entity_id=entity_id, reason=reason, waits_for=waits_for,
                          payload=payload))
    else:
        existing.reason = reason
        existing.waits_for = waits_for


def parked_for(s: Session, account_id: str, *, reason: str | None = None,
               waits_for: Sequence[str] | None = None) -> list[ParkedEvent]:
    """Parked events of an account in arrival order, optionally filtered."""
    query = select(ParkedEvent).where(ParkedEvent.account_id == account_id)
    if reason is not None:
        query = query.where(ParkedEvent.reason == reason)
    if waits_for is not None:
        query = query.where(ParkedEvent.waits_for.in_(list(waits_for)))
    return list(s.execute(query.order_by(ParkedEvent.id)).scalars())


def get_parked(s: Session, account_id: str, event_id: str) -> ParkedEvent | None:
    return s.execute(select(ParkedEvent).where(ParkedEvent.account_id == account_id,
                                               ParkedEvent.event_id == event_id)
                     ).scalar_one_or_none()


def has_parked(s: Session, account_id: str) -> bool:
    """Whether any event of the account is parked (one indexed probe)."""
    return s.execute(select(ParkedEvent.id).where(ParkedEvent.account_id == account_id)
                     .limit(1)).first() is not None


def is_parked(s: Session, account_id: str, event_id: str) -> bool:
    return s.execute(select(ParkedEvent.id).where(ParkedEvent.account_id == account_id,
                                                  ParkedEvent.event_id == event_id)
                     ).first() is not None


def parked_before(s: Session, account_id: str, entity_type: str, entity_id: str,
                  event_id: str) -> bool:
    """Whether an earlier-parked event of the same record is still waiting. `event_id` is
    the asking event when it is itself parked (a re-drive), else ""."""
    mine = s.execute(select(ParkedEvent.id).where(ParkedEvent.account_id == account_id,
                                                  ParkedEvent.event_id == event_id)
                     ).scalar_one_or_none() if event_id else None
    query = select(ParkedEvent.id).where(
        ParkedEvent.account_id == account_id, ParkedEvent.entity_type == entity_type,
        ParkedEvent.entity_id == entity_id, ParkedEvent.event_id != event_id,
        ParkedEvent.reason != "pending_manual")
    if mine is not None:
        query = query.where(ParkedEvent.id < mine)
    return s.execute(query.limit(1)).first() is not None


def unpark(s: Session, account_id: str, event_id: str) -> None:
    s.execute(delete(ParkedEvent).where(ParkedEvent.account_id == account_id,
                                        ParkedEvent.event_id == event_id))


def add_outbox(s: Session, *, account_id: str, topic_kind: str, key: str, value: bytes,
               status: str | None = None, error_code: str | None = None,
               entity_type: str | None = None, entity_id: str | None = None,
               message: str | None = None) -> None:
    s.add(OutboxMessage(account_id=account_id, topic_kind=topic_kind, key=key, value=value,
                        status=status, error_code=error_code, entity_type=entity_type,
                        entity_id=entity_id, message=message))


def unpublished(s: Session, limit: int = 500, *, claim: bool = False) -> list[OutboxMessage]:
    """Unpublished messages in order; `claim` locks them (PostgreSQL: rows another
    publisher holds are skipped) until the caller's transaction ends."""
    query = (select(OutboxMessage).where(OutboxMessage.published_at.is_(None))
             .order_by(OutboxMessage.id).limit(limit))
    if claim:
        query = query.with_for_update(skip_locked=True)
    return list(s.execute(query).scalars())


def mark_published(s: Session, ids: Sequence[int]) -> None:
    if ids:
        s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(list(ids)))
                  .values(published_at=dt.datetime.now(dt.UTC)))


def add_dead_letter(s: Session, *, account_id: str | None, entity_type: str | None,
                    entity_id: str | None, topic: str, partition: int, offset: int,
                    error_code: str, reason: str, payload: bytes | None) -> None:
    s.add(DeadLetter(account_id=account_id, entity_type=entity_type, entity_id=entity_id,
                     topic=topic, partition=partition, offset=offset, error_code=error_code,
                     reason=reason, payload=payload))


def begin_intent(s: Session, *, key: str, account_id: str, entity_type: str, entity_id: str,
                 operation: str) -> bool:
    """Record an attempt; True when an earlier attempt of this intent may have landed."""
    intent = s.get(Intent, key)
    if intent is None:
        s.add(Intent(idempotency_key=key, account_id=account_id, entity_type=entity_type,
                     entity_id=entity_id, operation=operation, attempts=1, state="pending"))
        return False
    intent.attempts += 1
    # "pending": an attempt may have reached the provider; "unsent" (release_intent):
    # every attempt so far was stopped before sending. This attempt may send.
    uncertain = intent.state == "pending"
    if intent.state == "unsent":
        intent.state = "pending"
    return uncertain


def release_intent(s: Session, key: str) -> None:
    """The attempt just begun sent nothing (our own limiter deferred it): the next
    attempt need not look the record up first."""
    s.execute(update(Intent).where(Intent.idempotency_key == key, Intent.state == "pending")
              .values(state="unsent"))


def complete_intent(s: Session, key: str, provider_id: str | None) -> None:
    # One UPDATE (no row: nothing to complete), not a read then a write.
    s.execute(update(Intent).where(Intent.idempotency_key == key)
              .values(state="done", provider_id=provider_id))
