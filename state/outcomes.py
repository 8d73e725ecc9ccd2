"""Set-at-a-time reads and writes for a batch of one tenant's events (issue 12).

Each function is one statement (or one executemany) for the whole batch, where the
per-event functions in state/repository.py make one per event. Callers own the
transaction, as there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import Table, bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

from state.connections import Company
from state.models import (
    EntityLink,
    IncomeAccountMapping,
    Intent,
    OutboxMessage,
    ProcessedEvent,
    Snapshot,
)

# Core table for executemany: an ORM update() with a list of parameters would be the
# ORM's bulk-update-by-primary-key, which refuses WHERE criteria of ours.
_INTENTS: Table = Intent.__table__  # type: ignore[assignment]
_PROCESSED: Table = ProcessedEvent.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]

__all__ = [
    "begin_intents",
    "complete_intents",
    "income_accounts",
    "insert_outbox",
    "insert_processed",
    "load_links",
    "load_snapshots",
    "processed_statuses",
    "release_intents",
    "save_link",
    "save_snapshot",
]


def processed_statuses(s: Session, account_id: str, event_ids: Sequence[str]
                       ) -> dict[str, str]:
    """The recorded status of each event that has one."""
    if not event_ids:
        return {}
    rows = s.execute(select(ProcessedEvent.event_id, ProcessedEvent.status).where(
        ProcessedEvent.account_id == account_id,
        ProcessedEvent.event_id.in_(list(event_ids))))
    return {event_id: status for event_id, status in rows}


def load_links(s: Session, account_id: str, records: Iterable[tuple[str, str]]
               ) -> dict[tuple[str, str], EntityLink]:
    """The links of (entity_type, entity_id) pairs, whatever company they point into
    (the caller filters, as repository.get_link does). Loaded into the session, so a
    later `s.get` of one of them (repository.save_link) reads no row again."""
    pairs = sorted(set(records))
    if not pairs:
        return {}
    rows = s.execute(select(EntityLink).where(
        EntityLink.account_id == account_id,
        tuple_(EntityLink.entity_type, EntityLink.entity_id).in_(pairs))).scalars()
    return {(r.entity_type, r.entity_id): r for r in rows}


def load_snapshots(s: Session, account_id: str, records: Iterable[tuple[str, str]]
                   ) -> dict[tuple[str, str], Snapshot]:
    """The snapshots kept of the records, by (entity_type, entity_id)."""
    pairs = sorted(set(records))
    if not pairs:
        return {}
    rows = s.execute(select(Snapshot).where(
        Snapshot.account_id == account_id,
        tuple_(Snapshot.entity_type, Snapshot.entity_id).in_(pairs))).scalars()
    return {(r.entity_type, r.entity_id): r for r in rows}


def save_snapshot(s: Session, known: dict[tuple[str, str], Snapshot], account_id: str,
                  entity_type: str, entity_id: str, version: int, payload: bytes,
                  record_created_at: dt.datetime) -> None:
    """repository.save_snapshot over snapshots loaded by load_snapshots (`known`, kept up
    to date): no read per record, and the new rows are inserted together at flush."""
    row = known.get((entity_type, entity_id))
    if row is None:
        row = Snapshot(account_id=account_id, entity_type=entity_type, entity_id=entity_id,
                       entity_version=version, payload=payload,
                       record_created_at=record_created_at)
        s.add(row)
        known[(entity_type, entity_id)] = row
    elif version > row.entity_version:  # an older version never overwrites a newer
        row.entity_version = version
        row.payload = payload
        row.record_created_at = record_created_at


def save_link(s: Session, known: dict[tuple[str, str], EntityLink], company: Company,
              entity_type: str, entity_id: str, provider_id: str,
              provider_version: str | None, applied_version: int,
              payload_hash: str | None) -> EntityLink:
    """repository.save_link over links loaded by load_links (`known`, kept up to date)."""
    link = known.get((entity_type, entity_id))
    if link is None or (link.provider, link.tenant_id) != (company.provider, company.tenant_id):
        # A new link, or one for another company whose history means nothing here.
        if link is None:
            link = EntityLink(account_id=company.account_id, entity_type=entity_type,
                              entity_id=entity_id)
            s.add(link)
            known[(entity_type, entity_id)] = link
        link.last_applied_version = 0
    link.provider = company.provider
    link.tenant_id = company.tenant_id
    link.provider_id = provider_id
    link.provider_version = provider_version
    link.last_applied_version = max(link.last_applied_version or 0, applied_version)
    link.payload_hash = payload_hash
    return link


def income_accounts(s: Session, account_id: str, item_ids: Sequence[str]) -> dict[str, str]:
    """item id -> mapped income account, for the items that have a mapping."""
    if not item_ids:
        return {}
    rows = s.execute(select(IncomeAccountMapping.item_id,
                            IncomeAccountMapping.provider_account_id).where(
        IncomeAccountMapping.account_id == account_id,
        IncomeAccountMapping.item_id.in_(sorted(set(item_ids)))))
    return {item_id: account for item_id, account in rows}


def begin_intents(s: Session, account_id: str,
                  intents: Sequence[tuple[str, str, str, str]]) -> dict[str, bool]:
    """Record an attempt of each (key, entity_type, entity_id, operation), as
    repository.begin_intent does one: key -> True when an earlier attempt of that intent
    may have landed (state "pending"). Keys must be distinct."""
    if not intents:
        return {}
    keys = [i[0] for i in intents]
    existing = {key: (state, attempts) for key, state, attempts in s.execute(
        select(Intent.idempotency_key, Intent.state, Intent.attempts)
        .where(Intent.idempotency_key.in_(keys)))}
    new = [{"idempotency_key": key, "account_id": account_id, "entity_type": entity_type,
            "entity_id": entity_id, "operation": operation, "attempts": 1,
            "state": "pending"}
           for key, entity_type, entity_id, operation in intents if key not in existing]
    if new:
        s.execute(insert(_INTENTS), new)
    again = [{"k": key, "a": attempts + 1,
              # "unsent" (release_intents): every attempt so far stopped before sending;
              # this one may send. "done" stays done.
              "st": "pending" if state in ("pending", "unsent") else state}
             for key, (state, attempts) in existing.items()]
    if again:
        s.execute(update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k"))
                  .values(attempts=bindparam("a"), state=bindparam("st")), again)
    return {key: existing.get(key, ("", 0))[0] == "pending" for key in keys}


def complete_intents(s: Session, done: Sequence[tuple[str, str | None]]) -> None:
    """Mark each (key, provider id) done, in one executemany."""
    if done:
        s.execute(update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k"))
                  .values(state="done", provider_id=bindparam("p")),
                  [{"k": key, "p": provider_id} for key, provider_id in done])


def release_intents(s: Session, keys: Sequence[str]) -> None:
    """The attempts just begun sent nothing (our own limiter deferred them), as
    repository.release_intent for several."""
    if keys:
        s.execute(update(Intent).where(Intent.idempotency_key.in_(list(keys)),
                                       Intent.state == "pending").values(state="unsent"))


def insert_processed(s: Session, rows: Sequence[dict[str, object]]) -> None:
    """New processed_events rows (account_id, event_id, status, processed_at), in one
    executemany: the caller read, under the tenant lock, that none of them exists."""
    if rows:
        s.execute(insert(_PROCESSED), list(rows))


def insert_outbox(s: Session, rows: Sequence[dict[str, object]]) -> None:
    """Outbox rows (the columns of repository.add_outbox) in one executemany; their ids
    follow the list's order, which is the order the publisher sends them in."""
    if rows:
        s.execute(insert(_OUTBOX), list(rows))
