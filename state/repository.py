"""Queries and writes the sync engine makes, as plain functions over a Session.

Callers own the transaction: every function here runs inside the caller's unit of work,
so an outcome, its link, its processed-event row and its status commit together.

The per-event functions use prebuilt SQLAlchemy Core statements on the tables, not ORM
entity loads and unit-of-work flushes (issue 12: the ORM around them cost most of a
worker's CPU per event). Two things the ORM gave callers still hold:

- Program order. Session.execute autoflushes before a Core statement as before an ORM
  one (SQLAlchemy #9809), so what the caller added or changed through the ORM in the
  same session is seen by a Core read and lands before a Core write. (Executing on
  `s.connection()` instead would skip that: don't.)
- Mutation of returned rows. Links are returned as `LinkRow`; a column set on one (the
  engine sets `written_state`/`written_hash` on what save_link returns) is written by
  one UPDATE before the session commits, or before this module's next statement in the
  session (an ORM query of entity_links elsewhere in between does not see it yet; none
  reads what it sets). Settings and income-account mappings, which the control API edits in place,
  are returned as ORM entities attached to the session without the ORM's load.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.orm import Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.selectable import Select

from providers.taxes import BlueClerkTaxRate, ProviderTaxRate
from state.connections import Company, ConnectionInfo, connection_info
from state.db import dialect_of
from state.models import (
    Base,
    Connection,
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
from state.unnest import distinct_keys, unnest_params, unnest_rows

__all__ = [
    "FirstLook",
    "Link",
    "LinkRow",
    "SnapshotRow",
    "Switches",
    "add_dead_letter",
    "add_outbox",
    "begin_intent",
    "complete_intent",
    "first_look",
    "get_link",
    "get_mapping",
    "get_parked",
    "get_settings",
    "get_snapshot",
    "get_tax_mapping",
    "has_parked",
    "is_parked",
    "link_values",
    "mark_processed",
    "mark_published",
    "park",
    "parked_before",
    "parked_for",
    "processed_status",
    "release_intent",
    "save_link",
    "save_links",
    "save_snapshot",
    "save_snapshots",
    "save_tax_mapping",
    "snapshot_values",
    "tax_code_of",
    "unpark",
    "unpublished",
]


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


_LINKS = _table(EntityLink)
_SNAPSHOTS = _table(Snapshot)
_PROCESSED = _table(ProcessedEvent)
_INTENTS = _table(Intent)
_PARKED = _table(ParkedEvent)
_OUTBOX = _table(OutboxMessage)
_SETTINGS = _table(SyncSettings)
_MAPPINGS = _table(IncomeAccountMapping)
_CONNECTIONS = _table(Connection)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- returned rows -----------------------------------------------------------------------

class Link(Protocol):
    """What callers read (and may set) on a link: a LinkRow, or an EntityLink entity."""

    account_id: str
    entity_type: str
    entity_id: str
    provider: str
    tenant_id: str | None
    provider_id: str
    provider_version: str | None
    last_applied_version: int
    payload_hash: str | None
    written_hash: str | None
    written_state: str | None


_LINK_KEY = ("account_id", "entity_type", "entity_id")
_LINK_COLUMNS = tuple(c.name for c in _LINKS.c)
_LINK_SETTABLE = frozenset(_LINK_COLUMNS) - set(_LINK_KEY) - {"updated_at"}
_PENDING = "blueclerk.pending_link_writes"


class LinkRow:
    """An entity link read or written with Core (see the module's docstring): setting a
    column on it queues one UPDATE of the changed columns in its session."""

    __slots__ = (*_LINK_COLUMNS, "_session", "_dirty")
    account_id: str
    entity_type: str
    entity_id: str
    provider: str
    tenant_id: str | None
    provider_id: str
    provider_version: str | None
    last_applied_version: int
    payload_hash: str | None
    updated_at: dt.datetime
    written_hash: str | None
    written_state: str | None
    _session: Session
    _dirty: set[str]

    def __init__(self, session: Session, row: Mapping[Any, Any]) -> None:
        for name in _LINK_COLUMNS:
            object.__setattr__(self, name, row[name])
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_dirty", set())

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in _LINK_SETTABLE:
            raise AttributeError(f"{name} of a link cannot be set")
        object.__setattr__(self, name, value)
        self._dirty.add(name)
        self._session.info.setdefault(_PENDING, {})[id(self)] = self

    def __repr__(self) -> str:
        return (f"LinkRow({self.account_id!r}, {self.entity_type!r}, {self.entity_id!r}, "
                f"provider_id={self.provider_id!r}, "
                f"last_applied_version={self.last_applied_version!r})")


_UPDATES: dict[frozenset[str], Update] = {}  # by the set of columns written


def _write_pending(s: Session) -> None:
    pending: dict[int, LinkRow] = s.info.pop(_PENDING)
    for row in pending.values():
        columns = frozenset(row._dirty)
        if not columns:
            continue
        stmt = _UPDATES.get(columns)
        if stmt is None:
            # Built once per set of columns (the engine's is always the same one).
            stmt = _UPDATES[columns] = update(_LINKS).where(
                _LINKS.c.account_id == bindparam("k_account"),
                _LINKS.c.entity_type == bindparam("k_type"),
                _LINKS.c.entity_id == bindparam("k_id"),
            ).values({name: bindparam(f"v_{name}") for name in (*sorted(columns),
                                                                "updated_at")})
        params: dict[str, Any] = {f"v_{name}": getattr(row, name) for name in columns}
        params.update(k_account=row.account_id, k_type=row.entity_type, k_id=row.entity_id,
                      v_updated_at=_now())
        row._dirty.clear()
        s.execute(stmt, params)


@event.listens_for(Session, "before_commit")
def _before_commit(s: Session) -> None:
    if s.info.get(_PENDING):
        _write_pending(s)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(s: Session, transaction: SessionTransaction) -> None:
    # A rolled-back transaction takes its queued writes with it (a savepoint's rollback
    # does not: nothing here uses savepoints).
    if transaction.parent is None and _PENDING in s.info:
        del s.info[_PENDING]


def _sync(s: Session) -> None:
    """Before a statement of this module: the link writes queued in the session."""
    if s.info.get(_PENDING):
        _write_pending(s)


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    account_id: str
    entity_type: str
    entity_id: str
    entity_version: int
    payload: bytes
    record_created_at: dt.datetime


_M = TypeVar("_M", bound=Base)


def _attached(s: Session, model: type[_M], pk: tuple[str, ...], query: Select[Any],
              params: Mapping[str, Any]) -> _M | None:
    """The entity of `pk`, read with a Core statement and attached to the session as if
    the ORM had loaded it, so a caller's change to it is flushed as the ORM's would be."""
    key = model.__mapper__.identity_key_from_primary_key(pk)
    if key in s.identity_map:
        return s.get(model, pk)  # already in the session: that instance, as the ORM would
    row = s.execute(query, params).first()
    if row is None:
        return None
    entity = model(**row._mapping)
    make_transient_to_detached(entity)
    s.add(entity)
    return entity


def _upserts(table: Table, build: Callable[[Any], tuple[dict[str, Any],
                                                         ColumnElement[bool] | None]],
             returning: bool = False) -> dict[str, Insert]:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE for each supported dialect;
    `build(excluded)` gives the SET clause and the optional condition of the update."""
    keys = [c.name for c in table.primary_key.columns]
    out: dict[str, Insert] = {}
    for name, dialect_insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert)):
        stmt = dialect_insert(table)
        set_, where = build(stmt.excluded)
        upsert: Insert = stmt.on_conflict_do_update(index_elements=keys, set_=set_,
                                                    where=where)
        out[name] = upsert.returning(*table.c) if returning else upsert
    return out


# -- processed events --------------------------------------------------------------------

_PROCESSED_STATUS = select(_PROCESSED.c.status).where(
    _PROCESSED.c.account_id == bindparam("a"), _PROCESSED.c.event_id == bindparam("e"))
_INSERT_PROCESSED = insert(_PROCESSED)
_UPSERT_PROCESSED = _upserts(_PROCESSED, lambda ex: (
    {"status": ex.status, "processed_at": ex.processed_at}, None))


def processed_status(s: Session, account_id: str, event_id: str) -> str | None:
    _sync(s)
    return cast(str | None, s.execute(_PROCESSED_STATUS,
                                      {"a": account_id, "e": event_id}).scalar())


def mark_processed(s: Session, event_id: str, account_id: str, status: str, *,
                   new: bool = False) -> None:
    """Record the event's status; `new`: the caller knows there is no row yet (it read
    none earlier under the tenant lock), so it is inserted without being looked up."""
    _sync(s)
    params = {"account_id": account_id, "event_id": event_id, "status": status,
              "processed_at": _now()}
    s.execute(_INSERT_PROCESSED if new else _UPSERT_PROCESSED[dialect_of(s)], params)


# -- links -------------------------------------------------------------------------------

_GET_LINK = select(_LINKS).where(_LINKS.c.account_id == bindparam("a"),
                                 _LINKS.c.entity_type == bindparam("t"),
                                 _LINKS.c.entity_id == bindparam("i"))


def get_link(s: Session, company: Company, entity_type: str, entity_id: str
             ) -> Link | None:
    """The record's link, only if it points into `company`: a link made for another
    company (an earlier connection of the account) is as good as none."""
    _sync(s)
    row = s.execute(_GET_LINK, {"a": company.account_id, "t": entity_type,
                                "i": entity_id}).first()
    if row is None or (row.provider, row.tenant_id) != (company.provider, company.tenant_id):
        return None
    return LinkRow(s, row._mapping)


def _link_set(excluded: Any, written: bool) -> tuple[dict[str, Any], None]:
    same_company = and_(_LINKS.c.provider == excluded.provider,
                        _LINKS.c.tenant_id == excluded.tenant_id)
    previous = func.coalesce(_LINKS.c.last_applied_version, 0)
    set_: dict[str, Any] = {
        # Never back in version within one company; a link for another company (an
        # earlier connection) starts afresh: its history means nothing here. The SET
        # expressions read the row as it was before this statement.
        "last_applied_version": case(
            (and_(same_company, previous > excluded.last_applied_version), previous),
            else_=excluded.last_applied_version),
        **{name: excluded[name] for name in ("provider", "tenant_id", "provider_id",
                                             "provider_version", "payload_hash",
                                             "updated_at")},
    }
    if written:
        set_.update(written_state=excluded.written_state, written_hash=excluded.written_hash)
    return set_, None


_SAVE_LINK = _upserts(_LINKS, lambda ex: _link_set(ex, False), returning=True)
_SAVE_LINK_WRITTEN = _upserts(_LINKS, lambda ex: _link_set(ex, True), returning=True)
# The same upsert without RETURNING, for an executemany of a batch's links.
_SAVE_LINKS = _upserts(_LINKS, lambda ex: _link_set(ex, True))
_RECORD_KEY = ("account_id", "entity_type", "entity_id")


def _pg_upsert_many(table: Table, columns: Sequence[str],
                    build: Callable[[Any], tuple[dict[str, Any], ColumnElement[bool] | None]]
                    ) -> Insert:
    """The upsert of _upserts for PostgreSQL, its rows from unnest (state/unnest.py)."""
    stmt = postgresql.insert(table).from_select(list(columns), unnest_rows(table, columns))
    set_, where = build(stmt.excluded)
    return stmt.on_conflict_do_update(index_elements=[c.name for c in table.primary_key],
                                      set_=set_, where=where)



def link_values(company: Company, entity_type: str, entity_id: str, provider_id: str,
                provider_version: str | None, applied_version: int,
                payload_hash: str | None) -> dict[str, Any]:
    """The parameters of one link's upsert (save_link, save_links)."""
    return {
        "account_id": company.account_id, "entity_type": entity_type,
        "entity_id": entity_id, "provider": company.provider, "tenant_id": company.tenant_id,
        "provider_id": provider_id, "provider_version": provider_version,
        # A new link (or one started afresh) begins at version 0.
        "last_applied_version": max(0, applied_version), "payload_hash": payload_hash,
        "updated_at": _now()}


def save_link(s: Session, company: Company, entity_type: str, entity_id: str,
              provider_id: str, provider_version: str | None, applied_version: int,
              payload_hash: str | None, *,
              written: tuple[str | None, str | None] | None = None) -> Link:
    """Create or update the link in one statement. `written`: (written_state,
    written_hash), what this write left in the books, saved in the same statement;
    without it they are kept as they were (a caller may still set them on the row
    returned, which costs a second statement)."""
    _sync(s)
    params = link_values(company, entity_type, entity_id, provider_id, provider_version,
                         applied_version, payload_hash)
    statements = _SAVE_LINK
    if written is not None:
        params["written_state"], params["written_hash"] = written
        statements = _SAVE_LINK_WRITTEN
    row = s.execute(statements[dialect_of(s)], params).one()
    return LinkRow(s, row._mapping)


def save_links(s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """save_link(..., written=...) for several links: each row is link_values() plus
    written_state and written_hash. An executemany on both databases: from unnest the
    12 columns (a JSON written_state among them) cost psycopg more to quote, element by
    element, than the executemany's pipeline (measured: 1.6-2.1 against 1.3-1.5 ms per
    25 links)."""
    _save_many(s, rows, _SAVE_LINKS, None, (), _RECORD_KEY)


def _save_many(s: Session, rows: Sequence[Mapping[str, Any]], upserts: dict[str, Insert],
               pg_many: Insert | None, columns: Sequence[str], key: Sequence[str]) -> None:
    """One row: one plain upsert (an executemany of one costs more on psycopg). Several:
    on PostgreSQL with `pg_many`, one upsert of them all from unnest when no two share a
    key (the callers' rows are of distinct records; else row after row); otherwise an
    executemany."""
    _sync(s)
    if not rows:
        return
    dialect = dialect_of(s)
    if len(rows) == 1:
        s.execute(upserts[dialect], rows[0])
    elif dialect == "postgresql" and pg_many is not None and distinct_keys(rows, key):
        s.execute(pg_many, unnest_params(columns, rows))
    else:
        s.execute(upserts[dialect], list(rows))


# -- snapshots ---------------------------------------------------------------------------

_UPSERT_SNAPSHOT = _upserts(_SNAPSHOTS, lambda ex: (
    {"entity_version": ex.entity_version, "payload": ex.payload,
     "record_created_at": ex.record_created_at},
    _SNAPSHOTS.c.entity_version < ex.entity_version))
_SNAPSHOT_COLUMNS = ("account_id", "entity_type", "entity_id", "entity_version", "payload",
                     "record_created_at")
_UPSERT_SNAPSHOTS_PG = _pg_upsert_many(_SNAPSHOTS, _SNAPSHOT_COLUMNS, lambda ex: (
    {"entity_version": ex.entity_version, "payload": ex.payload,
     "record_created_at": ex.record_created_at},
    _SNAPSHOTS.c.entity_version < ex.entity_version))
_GET_SNAPSHOT = select(_SNAPSHOTS).where(_SNAPSHOTS.c.account_id == bindparam("a"),
                                         _SNAPSHOTS.c.entity_type == bindparam("t"),
                                         _SNAPSHOTS.c.entity_id == bindparam("i"))


def snapshot_values(account_id: str, entity_type: str, entity_id: str, version: int,
                    payload: bytes, record_created_at: dt.datetime) -> dict[str, Any]:
    """The parameters of one snapshot's upsert (save_snapshot, save_snapshots)."""
    return {"account_id": account_id, "entity_type": entity_type, "entity_id": entity_id,
            "entity_version": version, "payload": payload,
            "record_created_at": record_created_at}


def save_snapshot(s: Session, account_id: str, entity_type: str, entity_id: str, version: int,
                  payload: bytes, record_created_at: dt.datetime) -> None:
    """Keep the newest snapshot per record; an older version never overwrites a newer
    (one statement: the update's condition)."""
    _sync(s)
    s.execute(_UPSERT_SNAPSHOT[dialect_of(s)], snapshot_values(
        account_id, entity_type, entity_id, version, payload, record_created_at))


def save_snapshots(s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """save_snapshot for several records (rows of snapshot_values), in one statement."""
    _save_many(s, rows, _UPSERT_SNAPSHOT, _UPSERT_SNAPSHOTS_PG, _SNAPSHOT_COLUMNS,
               _RECORD_KEY)


def get_snapshot(s: Session, account_id: str, entity_type: str, entity_id: str
                 ) -> SnapshotRow | None:
    _sync(s)
    row = s.execute(_GET_SNAPSHOT, {"a": account_id, "t": entity_type,
                                    "i": entity_id}).first()
    if row is None:
        return None
    return SnapshotRow(row.account_id, row.entity_type, row.entity_id, row.entity_version,
                       bytes(row.payload), row.record_created_at)


# -- settings and mappings ---------------------------------------------------------------

_GET_SETTINGS = select(_SETTINGS).where(_SETTINGS.c.account_id == bindparam("a"))
_GET_MAPPING = select(_MAPPINGS).where(_MAPPINGS.c.account_id == bindparam("a"),
                                       _MAPPINGS.c.item_id == bindparam("i"))


def get_settings(s: Session, account_id: str) -> SyncSettings | None:
    _sync(s)
    return _attached(s, SyncSettings, (account_id,), _GET_SETTINGS, {"a": account_id})


def get_mapping(s: Session, account_id: str, item_id: str) -> IncomeAccountMapping | None:
    _sync(s)
    return _attached(s, IncomeAccountMapping, (account_id, item_id), _GET_MAPPING,
                     {"a": account_id, "i": item_id})


@dataclass(frozen=True, slots=True)
class Switches:
    """An account's sync settings as values (a read-only copy of SyncSettings)."""

    sync_customers: bool = True
    sync_items: bool = True
    sync_invoices: bool = True
    sync_payments: bool = True
    auto_sync: bool = True


@dataclass(frozen=True, slots=True)
class FirstLook:
    """What the engine reads first about an event, in one statement (first_look)."""

    info: ConnectionInfo | None
    prior: str | None  # the event's processed status, if any
    any_parked: bool  # whether any event of the account is parked
    settings: Switches | None  # None: the account has no settings row
    link: Link | None  # the record's link, only if it points into the connection's company


_SWITCHES = ("sync_customers", "sync_items", "sync_invoices", "sync_payments", "auto_sync")
_FIRST_LOOK = (
    select(
        _CONNECTIONS.c.account_id, _CONNECTIONS.c.provider, _CONNECTIONS.c.tenant_id,
        _CONNECTIONS.c.status, _CONNECTIONS.c.connected_at, _CONNECTIONS.c.status_reason,
        _CONNECTIONS.c.tenant_name,
        select(_PROCESSED.c.status).where(_PROCESSED.c.account_id == bindparam("a"),
                                          _PROCESSED.c.event_id == bindparam("e"))
        .scalar_subquery().label("prior"),
        select(_PARKED.c.id).where(_PARKED.c.account_id == bindparam("a"))
        .exists().label("any_parked"),
        _SETTINGS.c.account_id.label("s_account_id"),
        *(_SETTINGS.c[name].label(f"s_{name}") for name in _SWITCHES),
        *(c.label(f"l_{c.name}") for c in _LINKS.c))
    .select_from(
        _CONNECTIONS
        .outerjoin(_SETTINGS, _SETTINGS.c.account_id == _CONNECTIONS.c.account_id)
        .outerjoin(_LINKS, and_(_LINKS.c.account_id == _CONNECTIONS.c.account_id,
                                _LINKS.c.entity_type == bindparam("t"),
                                _LINKS.c.entity_id == bindparam("i"))))
    .where(_CONNECTIONS.c.account_id == bindparam("a")))


def first_look(s: Session, account_id: str, event_id: str, entity_type: str,
               entity_id: str) -> FirstLook:
    """The connection, the event's processed status, whether the account has parked
    events, its settings and the record's link (as get_link filters it), in one
    statement for a connected account (each was a statement of its own; issue 12)."""
    _sync(s)
    row = s.execute(_FIRST_LOOK, {"a": account_id, "e": event_id, "t": entity_type,
                                  "i": entity_id}).first()
    if row is None:  # no connection: nothing else is joined to it
        return FirstLook(connection_info(s, account_id),
                         processed_status(s, account_id, event_id),
                         has_parked(s, account_id), None, None)
    m = row._mapping
    info = ConnectionInfo(*row[:7])
    settings = None if m["s_account_id"] is None else Switches(
        *(bool(m[f"s_{name}"]) for name in _SWITCHES))
    link: Link | None = None
    if m["l_account_id"] is not None and \
            (m["l_provider"], m["l_tenant_id"]) == (info.provider, info.tenant_id):
        link = LinkRow(s, {name: m[f"l_{name}"] for name in _LINK_COLUMNS})
    return FirstLook(info, m["prior"], bool(m["any_parked"]), settings, link)


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


_HAS_PARKED = select(_PARKED.c.id).where(_PARKED.c.account_id == bindparam("a")).limit(1)
_PARKED_ID = select(_PARKED.c.id).where(_PARKED.c.account_id == bindparam("a"),
                                        _PARKED.c.event_id == bindparam("e"))
_PARKED_BEFORE_WHERE = (
    _PARKED.c.account_id == bindparam("a"), _PARKED.c.entity_type == bindparam("t"),
    _PARKED.c.entity_id == bindparam("i"), _PARKED.c.event_id != bindparam("e"),
    _PARKED.c.reason != "pending_manual")
_PARKED_BEFORE = select(_PARKED.c.id).where(*_PARKED_BEFORE_WHERE).limit(1)
_PARKED_BEFORE_MINE = select(_PARKED.c.id).where(
    *_PARKED_BEFORE_WHERE, _PARKED.c.id < bindparam("mine")).limit(1)
_UNPARK = delete(_PARKED).where(_PARKED.c.account_id == bindparam("a"),
                                _PARKED.c.event_id == bindparam("e"))


def has_parked(s: Session, account_id: str) -> bool:
    """Whether any event of the account is parked (one indexed probe)."""
    _sync(s)
    return s.execute(_HAS_PARKED, {"a": account_id}).first() is not None


def is_parked(s: Session, account_id: str, event_id: str) -> bool:
    _sync(s)
    return s.execute(_PARKED_ID, {"a": account_id, "e": event_id}).first() is not None


def parked_before(s: Session, account_id: str, entity_type: str, entity_id: str,
                  event_id: str) -> bool:
    """Whether an earlier-parked event of the same record is still waiting. `event_id` is
    the asking event when it is itself parked (a re-drive), else ""."""
    _sync(s)
    mine = s.execute(_PARKED_ID, {"a": account_id, "e": event_id}).scalar() \
        if event_id else None
    params: dict[str, Any] = {"a": account_id, "t": entity_type, "i": entity_id,
                              "e": event_id}
    if mine is None:
        return s.execute(_PARKED_BEFORE, params).first() is not None
    params["mine"] = mine
    return s.execute(_PARKED_BEFORE_MINE, params).first() is not None


def unpark(s: Session, account_id: str, event_id: str) -> None:
    _sync(s)
    s.execute(_UNPARK, {"a": account_id, "e": event_id})


_INSERT_OUTBOX = insert(_OUTBOX)


def add_outbox(s: Session, *, account_id: str, topic_kind: str, key: str, value: bytes,
               status: str | None = None, error_code: str | None = None,
               entity_type: str | None = None, entity_id: str | None = None,
               message: str | None = None) -> None:
    _sync(s)
    # Every column but the id (the database's) and published_at (set on publishing), so
    # one compiled statement serves every call.
    s.execute(_INSERT_OUTBOX, {
        "account_id": account_id, "topic_kind": topic_kind, "key": key, "value": value,
        "status": status, "error_code": error_code, "entity_type": entity_type,
        "entity_id": entity_id, "message": message, "created_at": _now()})


def unpublished(s: Session, limit: int = 500, *,
                claim: bool = False) -> list[Row[int, str, str, bytes]]:
    """Unpublished messages in order, as (id, topic_kind, key, value) rows (plain rows:
    the publisher reads each once, ORM objects cost it a third of its time); `claim`
    locks them (PostgreSQL: rows another publisher holds are skipped) until the caller's
    transaction ends."""
    query = (select(OutboxMessage.id, OutboxMessage.topic_kind, OutboxMessage.key,
                    OutboxMessage.value)
             .where(OutboxMessage.published_at.is_(None))
             .order_by(OutboxMessage.id).limit(limit))
    if claim:
        query = query.with_for_update(skip_locked=True)
    return list(s.execute(query).all())


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


_INTENT_STATE = select(_INTENTS.c.state).where(_INTENTS.c.idempotency_key == bindparam("k"))
# A first attempt (the usual case) is one INSERT; only on conflict is the row read. Its
# rowcount says which (SQLAlchemy keeps an INSERT's rowcount only when asked to).
_INSERT_INTENT = {name: dialect_insert(_INTENTS).on_conflict_do_nothing(
    index_elements=["idempotency_key"]).execution_options(preserve_rowcount=True)
    for name, dialect_insert in (("sqlite", sqlite.insert), ("postgresql", postgresql.insert))}
_RETRY_INTENT = update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k")).values(
    attempts=_INTENTS.c.attempts + 1, state=bindparam("st"))
_RELEASE_INTENT = update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k"),
                                         _INTENTS.c.state == "pending").values(state="unsent")
_COMPLETE_INTENT = update(_INTENTS).where(_INTENTS.c.idempotency_key == bindparam("k")
                                          ).values(state="done", provider_id=bindparam("p"))


def begin_intent(s: Session, *, key: str, account_id: str, entity_type: str, entity_id: str,
                 operation: str) -> bool:
    """Record an attempt; True when an earlier attempt of this intent may have landed."""
    _sync(s)
    inserted = s.execute(_INSERT_INTENT[dialect_of(s)], {
        "idempotency_key": key, "account_id": account_id, "entity_type": entity_type,
        "entity_id": entity_id, "operation": operation, "attempts": 1,
        "state": "pending", "created_at": _now()})
    if cast(CursorResult[Any], inserted).rowcount == 1:
        return False  # the first attempt
    state = s.execute(_INTENT_STATE, {"k": key}).scalar()
    # "pending": an attempt may have reached the provider; "unsent" (release_intent):
    # every attempt so far was stopped before sending. This attempt may send. The caller
    # holds the tenant lock, so the state read is still the row's when it is written.
    s.execute(_RETRY_INTENT, {"k": key, "st": "pending" if state == "unsent" else state})
    return bool(state == "pending")


def release_intent(s: Session, key: str) -> None:
    """The attempt just begun sent nothing (our own limiter deferred it): the next
    attempt need not look the record up first. Only for an intent this attempt began
    certain (begin_intent returned False): one an earlier attempt left uncertain must
    stay so (that attempt may have landed), and the engine never releases it."""
    _sync(s)
    s.execute(_RELEASE_INTENT, {"k": key})


def complete_intent(s: Session, key: str, provider_id: str | None) -> None:
    # One UPDATE (no row: nothing to complete), not a read then a write.
    _sync(s)
    s.execute(_COMPLETE_INTENT, {"k": key, "p": provider_id})
