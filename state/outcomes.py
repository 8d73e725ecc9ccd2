"""Set-at-a-time reads and writes for a batch of one tenant's events (issue 12).

Each function is one statement (or one executemany) for the whole batch, where the
per-event functions in state/repository.py make one per event. Callers own the
transaction, as there. The statements are Core, built once (an expanding IN for the
lists): a batch's links and snapshots are written by upserts, not loaded into the
session and flushed by the ORM's unit of work, whose bookkeeping cost more CPU than
the statements themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Row, String, Table, any_, bindparam, insert, select, tuple_, update
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
from state.unnest import unnest_params, unnest_rows

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

def _any(name: str) -> Any:
    """PostgreSQL's `= ANY(:name)` over a text array: one parameter however long the
    list (an expanding IN has one per element; psycopg never caches a statement of more
    than 50)."""
    return any_(bindparam(name, type_=postgresql.ARRAY(String)))


def _in(column: Any, name: str) -> dict[str, Any]:
    """`column IN (...)` per dialect: an expanding IN on SQLite, = ANY on PostgreSQL."""
    return {"sqlite": column.in_(bindparam(name, expanding=True)),
            "postgresql": column == _any(name)}


def _per_dialect(build: Any) -> dict[str, Any]:
    return {name: build(name) for name in ("sqlite", "postgresql")}


_PROCESSED_STATUSES = _per_dialect(lambda d: select(
    _PROCESSED.c.event_id, _PROCESSED.c.status).where(
    _PROCESSED.c.account_id == bindparam("a"), _in(_PROCESSED.c.event_id, "ids")[d]))
# PostgreSQL: the types and the ids each as an array; the pairs asked for are picked from
# what comes back (another type's record of the same id may come too).
_LOAD_LINKS = {
    "sqlite": select(_LINKS).where(
        _LINKS.c.account_id == bindparam("a"),
        tuple_(_LINKS.c.entity_type, _LINKS.c.entity_id).in_(
            bindparam("pairs", expanding=True))),
    "postgresql": select(_LINKS).where(
        _LINKS.c.account_id == bindparam("a"), _LINKS.c.entity_type == _any("types"),
        _LINKS.c.entity_id == _any("ids"))}
_INCOME_ACCOUNTS = _per_dialect(lambda d: select(
    _MAPPINGS.c.item_id, _MAPPINGS.c.provider_account_id).where(
    _MAPPINGS.c.account_id == bindparam("a"), _in(_MAPPINGS.c.item_id, "ids")[d]))
# New intents inserted first; RETURNING says which were new (SQLite: an executemany with
# RETURNING, which SQLAlchemy sends as one multi-row INSERT; PostgreSQL: one INSERT from
# unnest). Only the others, retries, are read and updated.
_INTENT_COLUMNS = ("idempotency_key", "account_id", "entity_type", "entity_id", "operation",
                   "attempts", "state", "created_at")
_INSERT_INTENTS: dict[str, Insert] = {
    "sqlite": sqlite.insert(_INTENTS).on_conflict_do_nothing(
        index_elements=["idempotency_key"]).returning(_INTENTS.c.idempotency_key),
    "postgresql": postgresql.insert(_INTENTS).from_select(
        list(_INTENT_COLUMNS), unnest_rows(_INTENTS, _INTENT_COLUMNS)).on_conflict_do_nothing(
        index_elements=["idempotency_key"]).returning(_INTENTS.c.idempotency_key)}
_INTENT_STATES = _per_dialect(lambda d: select(
    _INTENTS.c.idempotency_key, _INTENTS.c.state, _INTENTS.c.attempts).where(
    _in(_INTENTS.c.idempotency_key, "keys")[d]))
_RETRY_INTENTS = update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k")).values(
    attempts=bindparam("a"), state=bindparam("st"))
_DONE = unnest_rows(_INTENTS, ("idempotency_key", "provider_id"), name="done").subquery("d")
_COMPLETE_INTENTS = {
    "sqlite": update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k")).values(
        state="done", provider_id=bindparam("p")),
    "postgresql": update(_INTENTS).where(
        _INTENTS.c.idempotency_key == _DONE.c.idempotency_key).values(
        state="done", provider_id=_DONE.c.provider_id)}
_RELEASE_INTENTS = _per_dialect(lambda d: update(_INTENTS).where(
    _in(_INTENTS.c.idempotency_key, "keys")[d], _INTENTS.c.state == "pending"
).values(state="unsent"))
_PROCESSED_COLUMNS = ("account_id", "event_id", "status", "processed_at")
_INSERT_PROCESSED = {
    "sqlite": insert(_PROCESSED),
    "postgresql": insert(_PROCESSED).from_select(
        list(_PROCESSED_COLUMNS), unnest_rows(_PROCESSED, _PROCESSED_COLUMNS))}
_INSERT_OUTBOX = insert(_OUTBOX)


def processed_statuses(s: Session, account_id: str, event_ids: Sequence[str]
                       ) -> dict[str, str]:
    """The recorded status of each event that has one."""
    if not event_ids:
        return {}
    rows = s.execute(_PROCESSED_STATUSES[dialect_of(s)],
                     {"a": account_id, "ids": list(event_ids)})
    return {event_id: status for event_id, status in rows}


def load_links(s: Session, account_id: str, records: Iterable[tuple[str, str]]
               ) -> dict[tuple[str, str], Row[Any]]:
    """The links of (entity_type, entity_id) pairs as rows (every column of
    entity_links), whatever company they point into: the caller filters, as
    repository.get_link does. Written back with repository.save_links."""
    pairs = sorted(set(records))
    if not pairs:
        return {}
    if dialect_of(s) == "sqlite":
        rows = s.execute(_LOAD_LINKS["sqlite"], {"a": account_id, "pairs": pairs})
    else:
        rows = s.execute(_LOAD_LINKS["postgresql"], {
            "a": account_id, "types": sorted({t for t, _ in pairs}),
            "ids": sorted({i for _, i in pairs})})
    wanted = set(pairs)
    return {(r.entity_type, r.entity_id): r for r in rows
            if (r.entity_type, r.entity_id) in wanted}


def income_accounts(s: Session, account_id: str, item_ids: Sequence[str]) -> dict[str, str]:
    """item id -> mapped income account, for the items that have a mapping."""
    if not item_ids:
        return {}
    rows = s.execute(_INCOME_ACCOUNTS[dialect_of(s)],
                     {"a": account_id, "ids": sorted(set(item_ids))})
    return {item_id: account for item_id, account in rows}


def begin_intents(s: Session, account_id: str,
                  intents: Sequence[tuple[str, str, str, str]]) -> dict[str, bool]:
    """Record an attempt of each (key, entity_type, entity_id, operation), as
    repository.begin_intent does one: key -> True when an earlier attempt of that intent
    may have landed (state "pending"). Keys must be distinct. First attempts (the usual
    case) cost one statement; retries one more read and one update."""
    if not intents:
        return {}
    now = dt.datetime.now(dt.UTC)
    rows = [{"idempotency_key": key, "account_id": account_id, "entity_type": entity_type,
             "entity_id": entity_id, "operation": operation, "attempts": 1,
             "state": "pending", "created_at": now}
            for key, entity_type, entity_id, operation in intents]
    dialect = dialect_of(s)
    new = set(s.execute(_INSERT_INTENTS[dialect], rows if dialect == "sqlite" else
                        unnest_params(_INTENT_COLUMNS, rows)).scalars())
    again = [key for key, *_ in intents if key not in new]
    existing: dict[str, str] = {}
    if again:
        # The caller holds the tenant lock: what is read here is still the rows' state
        # when it is written.
        found = s.execute(_INTENT_STATES[dialect], {"keys": again}).all()
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
    if not done:
        return
    if dialect_of(s) == "sqlite":
        s.execute(_COMPLETE_INTENTS["sqlite"],
                  [{"k": key, "p": provider_id} for key, provider_id in done])
    else:  # keys are distinct: each intent is begun once per batch
        s.execute(_COMPLETE_INTENTS["postgresql"], unnest_params(
            ("idempotency_key", "provider_id"),
            [{"idempotency_key": key, "provider_id": p} for key, p in done]))


def release_intents(s: Session, keys: Sequence[str]) -> None:
    """The attempts just begun sent nothing (our own limiter deferred them), as
    repository.release_intent for several (and, as there, never one begun uncertain)."""
    if keys:
        s.execute(_RELEASE_INTENTS[dialect_of(s)], {"keys": list(keys)})


def insert_processed(s: Session, rows: Sequence[dict[str, object]]) -> None:
    """New processed_events rows (account_id, event_id, status, processed_at), in one
    executemany: the caller read, under the tenant lock, that none of them exists."""
    if not rows:
        return
    if dialect_of(s) == "sqlite" or len(rows) == 1:
        s.execute(_INSERT_PROCESSED["sqlite"], rows[0] if len(rows) == 1 else list(rows))
    else:
        s.execute(_INSERT_PROCESSED["postgresql"], unnest_params(_PROCESSED_COLUMNS, rows))


def insert_outbox(s: Session, rows: Sequence[dict[str, object]]) -> None:
    """Outbox rows (the columns of repository.add_outbox) in one executemany; their ids
    follow the list's order, which is the order the publisher sends them in."""
    if rows:
        s.execute(_INSERT_OUTBOX, list(rows))
