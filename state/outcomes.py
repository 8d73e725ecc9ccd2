"""Set-at-a-time reads and writes for a batch of one tenant's events (issue 12).

Each function is one statement (or one executemany) for the whole batch, where the
per-event functions in state/repository.py make one per event. Callers own the
transaction, as there. The statements are Core, built once (an expanding IN for the
lists): a batch's links and snapshots are written by upserts, not loaded into the
session and flushed by the ORM's unit of work, whose bookkeeping cost more CPU than
the statements themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from state.db import dialect_of
from state.models import (
    EntityLink,
    IncomeAccountMapping,
    Intent,
    OutboxMessage,
    ProcessedEvent,
)

_INTENTS = cast(Table, Intent.__table__)
_PROCESSED = cast(Table, ProcessedEvent.__table__)
_OUTBOX = cast(Table, OutboxMessage.__table__)
_LINKS = cast(Table, EntityLink.__table__)
_MAPPINGS = cast(Table, IncomeAccountMapping.__table__)

__all__ = [
    "begin_intents",
    "complete_intents",
    "income_accounts",
    "insert_outbox",
    "insert_processed",
    "load_links",
    "processed_statuses",
    "release_intents",
]

_PROCESSED_STATUSES = select(_PROCESSED.c.event_id, _PROCESSED.c.status).where(
    _PROCESSED.c.account_id == bindparam("a"),
    _PROCESSED.c.event_id.in_(bindparam("ids", expanding=True)))
_LOAD_LINKS = select(_LINKS).where(
    _LINKS.c.account_id == bindparam("a"),
    tuple_(_LINKS.c.entity_type, _LINKS.c.entity_id).in_(bindparam("pairs", expanding=True)))
_INCOME_ACCOUNTS = select(_MAPPINGS.c.item_id, _MAPPINGS.c.provider_account_id).where(
    _MAPPINGS.c.account_id == bindparam("a"),
    _MAPPINGS.c.item_id.in_(bindparam("ids", expanding=True)))
# New intents inserted first; RETURNING says which were new (an executemany with
# RETURNING is one multi-row INSERT, SQLAlchemy's "insertmanyvalues"). Only the others,
# retries, are read and updated.
_INSERT_INTENTS: dict[str, Insert] = {
    name: dialect_insert(_INTENTS).on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(_INTENTS.c.idempotency_key)
    for name, dialect_insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))}
_INTENT_STATES = select(_INTENTS.c.idempotency_key, _INTENTS.c.state, _INTENTS.c.attempts
                        ).where(_INTENTS.c.idempotency_key.in_(bindparam("keys",
                                                                         expanding=True)))
_RETRY_INTENTS = update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k")).values(
    attempts=bindparam("a"), state=bindparam("st"))
_COMPLETE_INTENTS = update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k")
                                           ).values(state="done", provider_id=bindparam("p"))
_RELEASE_INTENTS = update(_INTENTS).where(
    _INTENTS.c.idempotency_key.in_(bindparam("keys", expanding=True)),
    _INTENTS.c.state == "pending").values(state="unsent")
_INSERT_PROCESSED = insert(_PROCESSED)
_INSERT_OUTBOX = insert(_OUTBOX)


def processed_statuses(s: Session, account_id: str, event_ids: Sequence[str]
                       ) -> dict[str, str]:
    """The recorded status of each event that has one."""
    if not event_ids:
        return {}
    rows = s.execute(_PROCESSED_STATUSES, {"a": account_id, "ids": list(event_ids)})
    return {event_id: status for event_id, status in rows}


def load_links(s: Session, account_id: str, records: Iterable[tuple[str, str]]
               ) -> dict[tuple[str, str], Row[Any]]:
    """The links of (entity_type, entity_id) pairs as rows (every column of
    entity_links), whatever company they point into: the caller filters, as
    repository.get_link does. Written back with repository.save_links."""
    pairs = sorted(set(records))
    if not pairs:
        return {}
    rows = s.execute(_LOAD_LINKS, {"a": account_id, "pairs": pairs})
    return {(r.entity_type, r.entity_id): r for r in rows}


def income_accounts(s: Session, account_id: str, item_ids: Sequence[str]) -> dict[str, str]:
    """item id -> mapped income account, for the items that have a mapping."""
    if not item_ids:
        return {}
    rows = s.execute(_INCOME_ACCOUNTS, {"a": account_id, "ids": sorted(set(item_ids))})
    return {item_id: account for item_id, account in rows}


def begin_intents(s: Session, account_id: str,
                  intents: Sequence[tuple[str, str, str, str]]) -> dict[str, bool]:
    """Record an attempt of each (key, entity_type, entity_id, operation), as
    repository.begin_intent does one: key -> True when an earlier attempt of that intent
    may have landed (state "pending"). Keys must be distinct. First attempts (the usual
    case) cost one statement; retries one more read and one update."""
    if not intents:
        return {}
    rows = [{"idempotency_key": key, "account_id": account_id, "entity_type": entity_type,
             "entity_id": entity_id, "operation": operation, "attempts": 1,
             "state": "pending"}
            for key, entity_type, entity_id, operation in intents]
    new = set(s.execute(_INSERT_INTENTS[dialect_of(s)], rows).scalars())
    again = [key for key, *_ in intents if key not in new]
    existing: dict[str, str] = {}
    if again:
        # The caller holds the tenant lock: what is read here is still the rows' state
        # when it is written.
        found = s.execute(_INTENT_STATES, {"keys": again}).all()
        existing = {key: state for key, state, _attempts in found}
        s.execute(_RETRY_INTENTS, [
            {"k": key, "a": attempts + 1,
             # "unsent" (release_intents): every attempt so far stopped before sending;
             # this one may send. "done" stays done.
             "st": "pending" if state in ("pending", "unsent") else state}
            for key, state, attempts in found])
    return {key: existing.get(key) == "pending" for key, *_ in intents}


def complete_intents(s: Session, done: Sequence[tuple[str, str | None]]) -> None:
    """Mark each (key, provider id) done, in one executemany."""
    if done:
        s.execute(_COMPLETE_INTENTS, [{"k": key, "p": provider_id} for key, provider_id in done])


def release_intents(s: Session, keys: Sequence[str]) -> None:
    """The attempts just begun sent nothing (our own limiter deferred them), as
    repository.release_intent for several (and, as there, never one begun uncertain)."""
    if keys:
        s.execute(_RELEASE_INTENTS, {"keys": list(keys)})


def insert_processed(s: Session, rows: Sequence[dict[str, object]]) -> None:
    """New processed_events rows (account_id, event_id, status, processed_at), in one
    executemany: the caller read, under the tenant lock, that none of them exists."""
    if rows:
        s.execute(_INSERT_PROCESSED, list(rows))


def insert_outbox(s: Session, rows: Sequence[dict[str, object]]) -> None:
    """Outbox rows (the columns of repository.add_outbox) in one executemany; their ids
    follow the list's order, which is the order the publisher sends them in."""
    if rows:
        s.execute(_INSERT_OUTBOX, list(rows))
