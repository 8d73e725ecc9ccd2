"""Changes made in the accounting system, brought back to BlueClerk as events.

`InboundPoller` asks each active connection's adapter for the changes since the
account's cursor (`AccountingProvider.fetch_changes`), turns each into an
`AccountingChangeEvent` and writes the events to the outbox (topic_kind "inbound", key
the account id) in the same transaction that advances the cursor. The outbox publisher
delivers them to `Topics.inbound`. Nothing here touches Kafka directly.

It runs as its own process (`blueclerk-sync poll-changes --loop SECONDS`), not inside
the consumer loop: provider polling has its own cadence and spends the connection's
rate budget, and a slow or throttled provider must never stall event consumption.

Invariants and rules (each is tested in tests/integration/inbound):

Cursor. `polled_through` is always a whole second and is the `since` of the next fetch.
After a poll it becomes max(previous cursor, poll start - `lag`), floored to the second.
The `lag` window (5 minutes by default) is read again on every poll, so a change that
becomes visible late (or is stamped by a provider clock a little behind ours) is still
seen. A new account starts at its `connected_at`: no retroactive inbound sync, as for
outbound; QuickBooks' CDC reaches back at most 30 days, so an older cursor is clamped.

Dedupe of re-reads. Every fetch re-reads the boundary: the lag window, the cursor's own
second (all three providers return changes "at or after" since), and for FreshBooks,
whose `updated_min` has day granularity, rows from earlier that day (dropped here if
older than the cursor). The cursor row keeps a bounded set `boundary_keys` of
(entity_type, provider_id, changed_at) already handled (emitted or suppressed) with
changed_at at or after the cursor; a change in it is not emitted again. The set only
holds changes of the lag window and is capped at `max_boundary_keys`. As a second line,
every event's `change_id` is deterministic, uuid5(account, provider, entity_type,
provider_id, changed_at), so should a change ever be emitted twice (the cap overflowed,
or a publish was repeated by the at-least-once outbox) readers dedupe on change_id.
A record changed twice gets two events (two change times); a record changed twice
between two polls is seen once, in its latest state, as the providers only report that.

Echo suppression (our own writes are not changes from the accounting system). A change
is ours when its record is linked (an EntityLink of this provider with that
provider_id) and
  - QuickBooks, when the row carries a SyncToken and the link stored one: the row's
    SyncToken equals the link's `provider_version` (the version our last write produced;
    any edit in QuickBooks bumps it). This is exact and needs no clock.
  - otherwise (Xero, FreshBooks, QuickBooks deletions, wizard links without a version):
    the change time is not after the link's `updated_at` + `echo_tolerance` (1 s). The
    link is saved after the provider answered, so our write's stamp is before it;
    a user edit made within the tolerance of our write (or, on second-granularity
    providers, within the same second) is taken for ours. That is the price of the rule.
  - the side effect of our own payment: an invoice created or updated (its balance
    moved) whose change time is not after that of an own payment against it (in the
    same poll) + tolerance is ours too: the provider changed it because we paid it.
The poller holds the tenant lock (`state.locks.TenantLocks`, the engine's) while it
fetches and commits, so it never reads a record the engine has written but not yet
linked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from producers.inbound_changes import add_change_event, change_id_for
from providers.errors import ReconnectRequired
from providers.port import AccountingProvider, InboundChange
from schemas.codec import AvroCodec
from state.connections import ConnectionInfo, ConnectionStore
from state.db import Database
from state.locks import TenantLocks
from state.models import Connection, EntityLink, InboundCursor

__all__ = ["DEFAULT_LAG", "InboundPoller", "PollResult", "inbound_operation"]

log = structlog.get_logger("inbound")

DEFAULT_LAG = dt.timedelta(minutes=5)
_OPERATIONS = frozenset({"imported", "linked", "created", "updated", "deleted", "voided",
                         "payment_received"})
_ENTITY_ORDER = {"customer": 0, "item": 1, "invoice": 2, "payment": 3}
# How far back each provider's change feed reaches (QuickBooks CDC: 30 days).
_MAX_LOOKBACK = {"quickbooks": dt.timedelta(days=30) - dt.timedelta(minutes=5)}

BoundaryKey = tuple[str, str, str]  # (entity_type, provider_id, changed_at ISO, UTC)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one account did."""

    account_id: str
    fetched: int = 0
    emitted: int = 0
    suppressed: int = 0  # our own writes
    repeated: int = 0  # re-reads of changes already handled
    polled_through: dt.datetime | None = None


def _whole_second(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(microsecond=0)


def _key(change: InboundChange) -> BoundaryKey:
    return (change.entity_type, change.provider_id,
            change.changed_at.astimezone(dt.UTC).isoformat(timespec="microseconds"))


def _key_time(key: Sequence[str]) -> dt.datetime:
    return dt.datetime.fromisoformat(key[2])


def inbound_operation(change: InboundChange) -> str:
    """The contract's operation: a payment made or edited in the books is a payment
    received; a voided invoice is voided; the rest keep the adapter's operation."""
    if change.entity_type == "payment" and change.operation in ("created", "updated"):
        return "payment_received"
    return change.operation if change.operation in _OPERATIONS else "updated"


# --------------------------------------------------------------------------- details


def _decimal_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        number = number.quantize(Decimal("0.01"))
    return f"{number:f}"


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _dig(row: Mapping[str, Any], *path: str) -> Any:
    current: Any = row
    for part in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _quickbooks_facts(entity: str, row: Mapping[str, Any]) -> dict[str, str | None]:
    if entity == "customer":
        return {"display_name": _text(row.get("DisplayName"))}
    if entity == "item":
        return {"name": _text(row.get("Name")), "sku": _text(row.get("Sku"))}
    if entity == "invoice":
        return {"number": _text(row.get("DocNumber")),
                "total": _decimal_text(row.get("TotalAmt")),
                "balance": _decimal_text(row.get("Balance")),
                "currency": _text(_dig(row, "CurrencyRef", "value"))}
    invoices = [str(t.get("TxnId")) for line in row.get("Line") or []
                for t in (line.get("LinkedTxn") or []) if t.get("TxnType") == "Invoice"]
    return {"amount": _decimal_text(row.get("TotalAmt")),
            "currency": _text(_dig(row, "CurrencyRef", "value")),
            "date": _text(row.get("TxnDate")),
            "invoice_provider_id": invoices[0] if invoices else None,
            "invoice_provider_ids": ",".join(invoices) if len(invoices) > 1 else None}


def _xero_date(value: Any) -> str | None:
    from providers.xero.translate import parse_xero_date

    parsed = parse_xero_date(value)
    return parsed.date().isoformat() if parsed is not None else None


def _xero_facts(entity: str, row: Mapping[str, Any]) -> dict[str, str | None]:
    if entity == "customer":
        return {"display_name": _text(row.get("Name")),
                "status": _text(row.get("ContactStatus"))}
    if entity == "item":
        return {"name": _text(row.get("Name")), "sku": _text(row.get("Code"))}
    if entity == "invoice":
        return {"number": _text(row.get("InvoiceNumber")),
                "total": _decimal_text(row.get("Total")),
                "balance": _decimal_text(row.get("AmountDue")),
                "currency": _text(row.get("CurrencyCode")),
                "status": _text(row.get("Status"))}
    return {"amount": _decimal_text(row.get("Amount")),
            "currency": _text(_dig(row, "Invoice", "CurrencyCode")),
            "date": _xero_date(row.get("Date")),
            "invoice_provider_id": _text(_dig(row, "Invoice", "InvoiceID")),
            "status": _text(row.get("Status"))}


def _freshbooks_facts(entity: str, row: Mapping[str, Any]) -> dict[str, str | None]:
    if entity == "customer":
        person = " ".join(str(p) for p in (row.get("fname"), row.get("lname")) if p)
        return {"display_name": _text(row.get("organization")) or _text(person)}
    if entity == "item":
        return {"name": _text(row.get("name")), "sku": _text(row.get("sku"))}
    if entity == "invoice":
        return {"number": _text(row.get("invoice_number")),
                "total": _decimal_text(_dig(row, "amount", "amount")),
                "balance": _decimal_text(_dig(row, "outstanding", "amount")),
                "currency": _text(row.get("currency_code")) or _text(_dig(row, "amount", "code")),
                "status": _text(row.get("v3_status"))}
    return {"amount": _decimal_text(_dig(row, "amount", "amount")),
            "currency": _text(_dig(row, "amount", "code")),
            "date": _text(row.get("date")),
            "invoice_provider_id": _text(row.get("invoiceid"))}


# The adapters hand back the provider's raw row in InboundChange.data; these read the few
# facts the event's `details` carry (amount, invoice, date, number, name).
_FACTS: dict[str, Callable[[str, Mapping[str, Any]], dict[str, str | None]]] = {
    "quickbooks": _quickbooks_facts, "xero": _xero_facts, "freshbooks": _freshbooks_facts,
}


def _facts(provider: str, change: InboundChange) -> dict[str, str]:
    reader = _FACTS.get(provider)
    if reader is None or change.entity_type not in _ENTITY_ORDER:
        return {}
    try:
        raw = reader(change.entity_type, change.data)
    except (AttributeError, TypeError, ValueError) as exc:  # an unexpected row shape
        log.warning("inbound_details_unreadable", provider=provider,
                    entity_type=change.entity_type, provider_id=change.provider_id,
                    error=str(exc))
        return {}
    return {k: v for k, v in raw.items() if v is not None}


# --------------------------------------------------------------------------- the poller


class InboundPoller:
    """Polls each connected accounting system for changes and writes them as events."""

    def __init__(self, db: Database, connections: ConnectionStore,
                 adapters: Callable[[ConnectionInfo], AccountingProvider], codec: AvroCodec,
                 *, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 lag: dt.timedelta = DEFAULT_LAG,
                 echo_tolerance: dt.timedelta = dt.timedelta(seconds=1),
                 max_boundary_keys: int = 10_000,
                 locks: TenantLocks | None = None) -> None:
        self._db = db
        self._connections = connections
        self._adapters = adapters
        self._codec = codec
        self._clock = clock
        self._lag = lag
        self._tolerance = echo_tolerance
        self._max_keys = max_boundary_keys
        self._locks = locks or TenantLocks(db)

    @classmethod
    def from_services(cls, services: Any, **options: Any) -> InboundPoller:
        """Wire from `service.bootstrap.Services` (db, connections, providers, codec)."""
        return cls(services.db, services.connections, services.providers.adapter,
                   services.codec, **options)

    # -- entry points ----------------------------------------------------------------

    def poll_all(self) -> int:
        """Poll every active connection; a failing tenant is logged and skipped."""
        with self._db.transaction() as s:
            accounts = list(s.execute(select(Connection.account_id)
                                      .where(Connection.status == "active")
                                      .order_by(Connection.account_id)).scalars())
        total = 0
        for account_id in accounts:
            try:
                total += self.poll_account(account_id)
            except Exception as exc:  # one tenant's failure never stops the others
                log.warning("inbound_poll_failed", account_id=account_id,
                            error=str(exc), error_type=type(exc).__name__)
        return total

    def poll_account(self, account_id: str) -> int:
        """Fetch, map and record one account's new changes; returns the events written."""
        return self.poll(account_id).emitted

    def poll(self, account_id: str) -> PollResult:
        info = self._connections.get(account_id)
        if info is None or info.status != "active":
            log.info("inbound_poll_skipped", account_id=account_id,
                     status=info.status if info else "not_connected")
            return PollResult(account_id)
        with self._locks.hold(account_id):
            return self._poll(info)

    # -- one poll --------------------------------------------------------------------

    def _poll(self, info: ConnectionInfo) -> PollResult:
        started = self._clock()
        with self._db.transaction() as s:
            row = s.get(InboundCursor, info.account_id)
            since = row.polled_through if row is not None else info.connected_at
            boundary = self._load_keys(row)
            token = row.updated_at if row is not None else None
        since = _whole_second(since)
        lookback = _MAX_LOOKBACK.get(info.provider)
        if lookback is not None and since < started - lookback:
            log.warning("inbound_cursor_clamped", account_id=info.account_id,
                        cursor=since.isoformat(), reach_days=lookback.days)
            since = _whole_second(started - lookback)
        try:
            changes = self._adapters(info).fetch_changes(since)
        except ReconnectRequired as exc:
            self._connections.set_status(info.account_id, "reconnect_required", str(exc))
            log.warning("inbound_reconnect_required", account_id=info.account_id,
                        error=str(exc))
            return PollResult(info.account_id)
        changes = sorted((c for c in changes if c.changed_at >= since),
                         key=lambda c: (c.changed_at, _ENTITY_ORDER.get(c.entity_type, 9),
                                        c.provider_id))
        new_cursor = max(since, _whole_second(started - self._lag))
        with self._db.transaction() as s:
            if not self._still_ours(s, info.account_id, token):
                log.warning("inbound_cursor_moved", account_id=info.account_id)
                return PollResult(info.account_id, fetched=len(changes))
            fresh = [c for c in changes if _key(c) not in boundary]
            links = self._links(s, info, fresh)
            echoes = self._echoes(info, fresh, links)
            emitted = 0
            for change in fresh:
                if _key(change) in echoes:
                    log.debug("inbound_echo_suppressed", account_id=info.account_id,
                              entity_type=change.entity_type, provider_id=change.provider_id)
                    continue
                self._emit(s, info, change, links)
                emitted += 1
            handled = boundary | {_key(c) for c in fresh}
            self._save_cursor(s, info.account_id, new_cursor, handled)
        result = PollResult(info.account_id, fetched=len(changes), emitted=emitted,
                            suppressed=len(echoes), repeated=len(changes) - len(fresh),
                            polled_through=new_cursor)
        log.info("inbound_polled", account_id=info.account_id, provider=info.provider,
                 since=since.isoformat(), fetched=result.fetched, emitted=emitted,
                 suppressed=result.suppressed, repeated=result.repeated,
                 polled_through=new_cursor.isoformat())
        return result

    # -- cursor ----------------------------------------------------------------------

    @staticmethod
    def _load_keys(row: InboundCursor | None) -> set[BoundaryKey]:
        if row is None or not row.boundary_keys:
            return set()
        return {(str(k[0]), str(k[1]), str(k[2])) for k in json.loads(row.boundary_keys)}

    @staticmethod
    def _still_ours(s: Session, account_id: str, token: dt.datetime | None) -> bool:
        """The cursor is unchanged since we read it (a second poller lost its race)."""
        row = s.execute(select(InboundCursor).where(InboundCursor.account_id == account_id)
                        .with_for_update()).scalar_one_or_none()
        if row is None:
            return token is None
        return token is not None and row.updated_at == token

    def _save_cursor(self, s: Session, account_id: str, cursor: dt.datetime,
                     handled: Iterable[BoundaryKey]) -> None:
        # Only keys the next fetch can return again (at or after the cursor) are kept;
        # newest first under the cap, older overflow falls back to change_id dedupe.
        kept = sorted((k for k in handled if _key_time(k) >= cursor), key=lambda k: k[2],
                      reverse=True)[: self._max_keys]
        row = s.get(InboundCursor, account_id)
        if row is None:
            row = InboundCursor(account_id=account_id)
            s.add(row)
        row.polled_through = cursor
        row.boundary_keys = json.dumps(sorted(kept, key=lambda k: k[2]))
        row.updated_at = self._clock()

    # -- links and echoes ------------------------------------------------------------

    @staticmethod
    def _links(s: Session, info: ConnectionInfo, changes: Sequence[InboundChange]
               ) -> dict[tuple[str, str], EntityLink]:
        """Links of this provider for the changed records and the invoices they pay."""
        wanted: set[str] = {c.provider_id for c in changes}
        for change in changes:
            if change.entity_type == "payment":
                invoice = _facts(info.provider, change).get("invoice_provider_id")
                if invoice:
                    wanted.add(invoice)
        if not wanted:
            return {}
        rows = s.execute(select(EntityLink).where(
            EntityLink.account_id == info.account_id, EntityLink.provider == info.provider,
            EntityLink.tenant_id == info.tenant_id,
            EntityLink.provider_id.in_(sorted(wanted)))).scalars()
        links: dict[tuple[str, str], EntityLink] = {}
        for link in rows:
            key = (link.entity_type, link.provider_id)
            known = links.get(key)
            if known is None or link.updated_at > known.updated_at:
                links[key] = link
        return links

    def _own_write(self, info: ConnectionInfo, change: InboundChange,
                   link: EntityLink | None) -> bool:
        if link is None:
            return False
        sync_token = change.data.get("SyncToken") if info.provider == "quickbooks" else None
        if sync_token is not None and link.provider_version is not None:
            return str(sync_token) == link.provider_version
        return change.changed_at <= link.updated_at + self._tolerance

    def _echoes(self, info: ConnectionInfo, changes: Sequence[InboundChange],
                links: Mapping[tuple[str, str], EntityLink]) -> set[BoundaryKey]:
        echoes: set[BoundaryKey] = set()
        paid_by_us: dict[str, dt.datetime] = {}  # invoice provider id -> our payment's time
        for change in changes:
            link = links.get((change.entity_type, change.provider_id))
            if not self._own_write(info, change, link):
                continue
            echoes.add(_key(change))
            if change.entity_type == "payment":
                invoice = _facts(info.provider, change).get("invoice_provider_id")
                if invoice:
                    latest = paid_by_us.get(invoice)
                    paid_by_us[invoice] = max(latest, change.changed_at) if latest else \
                        change.changed_at
        for change in changes:
            if change.entity_type != "invoice" or change.operation not in ("created",
                                                                           "updated"):
                continue
            paid = paid_by_us.get(change.provider_id)
            if paid is not None and change.changed_at <= paid + self._tolerance:
                echoes.add(_key(change))
        return echoes

    # -- events ----------------------------------------------------------------------

    def _emit(self, s: Session, info: ConnectionInfo, change: InboundChange,
              links: Mapping[tuple[str, str], EntityLink]) -> None:
        link = links.get((change.entity_type, change.provider_id))
        details = _facts(info.provider, change)
        details["source"] = "accounting_system"
        details["provider_operation"] = change.operation
        invoice = details.get("invoice_provider_id")
        if change.entity_type == "payment" and invoice:
            invoice_link = links.get(("invoice", invoice))
            if invoice_link is not None:
                details["invoice_entity_id"] = invoice_link.entity_id
        add_change_event(
            s, self._codec,
            change_id=change_id_for(info.account_id, info.provider, change.entity_type,
                                    change.provider_id, change.changed_at),
            account_id=info.account_id, provider=info.provider,
            entity_type=change.entity_type, provider_id=change.provider_id,
            entity_id=link.entity_id if link is not None else None,
            operation=inbound_operation(change), changed_at=change.changed_at,
            details=details)
