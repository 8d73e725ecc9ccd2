"""Changes made in the accounting system, brought back to BlueClerk as events.

`InboundPoller` asks each active connection's adapter for the changes since the
account's cursor (`AccountingProvider.fetch_changes`), turns each into an
`AccountingChangeEvent` and writes the events to the outbox (topic_kind "inbound", key
the account id) in the same transaction that advances the cursor. The outbox publisher
delivers them to `Topics.inbound`. Nothing here touches Kafka directly.

It runs as its own process (`blueclerk-sync poll-changes --loop SECONDS`), not inside
the consumer loop: provider polling has its own cadence and spends the connection's
rate budget, and a slow or throttled provider must never stall event consumption.
Webhooks (control/webhooks.py) only trigger the same poll sooner.

Invariants and rules (each is tested in tests/integration/inbound and
tests/e2e/test_inbound_changes.py):

Snapshots. Every customer, item, invoice and payment event carries the record's full
current state in the books in canonical form (`schemas.inbound`, parsed from the
provider's JSON by `providers/<provider>/canonical.py`), the fields that changed since
the last state we knew and their earlier values. The last state we knew is the state
this poller last saw (`InboundRecord`, one row per record in the books, linked or not),
else what we last wrote (`EntityLink.written_state`, the fields our write determines).
A QuickBooks deletion carries no data: its snapshot is the last state known, marked
deleted. A payment's snapshot carries its invoice's balance and status after it; the
adapters add the paid invoice to the changes when the provider did not report it
(FreshBooks), so a payment recorded in the books yields an invoice/updated (balance,
status) and a payment_received on every provider.

One vocabulary. created: a record we did not know (no link of this provider and company,
and never seen before), whatever the provider's timestamps say; updated: a record we
knew; deleted: removed from the books (QuickBooks delete, Xero DELETED or GDPRREQUEST,
FreshBooks vis_state 1 or HTTP DELETE, which is also FreshBooks' only "void"); voided: an
invoice voided (QuickBooks, Xero); payment_received: a payment recorded or edited (a
deleted payment is deleted).

Cursor. `polled_through` is always a whole second and is the `since` of the next fetch.
After a poll it becomes max(previous cursor, poll start - `lag`), floored to the second.
The `lag` window (5 minutes by default) is read again on every poll, so a change that
becomes visible late (or is stamped by a provider clock a little behind ours) is still
seen. A new account starts at its `connected_at`: no retroactive inbound sync, as for
outbound; QuickBooks' CDC reaches back at most 30 days, so an older cursor is clamped.

Dedupe of re-reads. Every fetch re-reads the boundary (the lag window, the cursor's own
second, FreshBooks' whole day). Two guards keep a re-read (a second poll, a repeated
webhook) from adding anything: the cursor's bounded `boundary_keys` of (entity_type,
provider_id, changed_at) already handled, and, by content, a change whose state hashes
to the state last seen of that record is not new. Every event's `change_id` is
deterministic, uuid5(account, provider, entity_type, provider_id, changed_at), so
readers can dedupe a publish repeated by the at-least-once outbox. A record changed
twice between two polls is seen once, in its latest state, as the providers only
report that.

Echo suppression, by content (our own writes are not changes from the accounting
system). A change is ours when its record is linked and
  - QuickBooks, when the row carries a SyncToken and the link stored one: the row's
    SyncToken equals the link's `provider_version` (the version our last write produced;
    any edit in QuickBooks bumps it);
  - otherwise: the echo hash of the row's state (`schemas.inbound.echo_view`: the fields
    our write determines) equals the link's `written_hash`, the hash of what our last
    write put there (set by the engine with the link). The written hash is used once:
    whatever the poller sees next of the record is compared with that state instead.
    A person's edit of any of those fields, however soon after our write, differs and
    comes back; only an edit of a field our write does not determine (an item's income
    account, an invoice's lines with the same total) made before the poller saw our
    write is taken for ours.
  - the side effect of our own payment: an invoice whose only differences from the last
    state known are its balance and status, while this fetch holds a payment of ours
    against it and none of someone else's;
  - the wizard's income-account mapping, which rewrites linked items outside the engine
    (control/mappings.py): an item that reads exactly as BlueClerk's last applied
    snapshot, with the income account of the account's mapping.
No clock is involved. A suppressed change still updates the state last seen.

Conflicts (the policy is in the README, "Conflicts between BlueClerk and the books").
A changed field that BlueClerk has also changed and not yet written (a snapshot newer
than the link's last applied version, whose value for the field differs from the books')
is listed in `conflicting_fields`: BlueClerk's value wins, the engine writes it next.

The poller holds the tenant lock (`state.locks.TenantLocks`, the engine's) while it
fetches and commits, so it never reads a record the engine has written but not yet
linked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from producers.inbound_changes import add_change_event, change_id_for
from providers.errors import ReconnectRequired
from providers.port import AccountingProvider, InboundChange
from schemas.codec import AvroCodec
from schemas.events import event_from_avro
from schemas.inbound import (
    BooksCustomer,
    BooksInvoice,
    BooksInvoiceLine,
    BooksItem,
    BooksPayment,
    BooksRecord,
    changed_fields,
    dec,
    echo_hash,
    echo_state,
    state_hash,
)
from schemas.inbound import state as inbound_state
from schemas.records import Address, ChangeEvent, Customer, EventType, Invoice, Item, Payment
from state import repository as repo
from state.connections import ConnectionInfo, ConnectionStore
from state.db import Database
from state.locks import TenantLocks
from state.models import (
    Connection,
    EntityLink,
    InboundCursor,
    InboundRecord,
    IncomeAccountMapping,
)

__all__ = ["DEFAULT_LAG", "InboundPoller", "PollResult", "content_digest", "inbound_operation",
           "written_snapshot", "written_state"]

log = structlog.get_logger("inbound")

DEFAULT_LAG = dt.timedelta(minutes=5)
_OPERATIONS = frozenset({"imported", "linked", "created", "updated", "deleted", "voided",
                         "payment_received"})
_ENTITY_ORDER = {"customer": 0, "item": 1, "invoice": 2, "payment": 3}
# How far back each provider's change feed reaches (QuickBooks CDC: 30 days).
_MAX_LOOKBACK = {"quickbooks": dt.timedelta(days=30) - dt.timedelta(minutes=5)}

# An invoice's fields a payment moves (an own payment's side effect changes only these).
_PAYMENT_MOVES = frozenset({"balance", "status"})

# (entity_type, provider_id, changed_at ISO UTC, content digest): two changes of one
# record stamped with the same time (FreshBooks' whole seconds) differ by their content.
BoundaryKey = tuple[str, str, str, str]


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


def content_digest(change: InboundChange) -> str:
    """A short digest of the change's canonical snapshot ("deleted" when it has none)."""
    if change.snapshot is None:
        return "deleted"
    return state_hash(inbound_state(change.snapshot))[:16]


def _key(change: InboundChange) -> BoundaryKey:
    return (change.entity_type, change.provider_id,
            change.changed_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            content_digest(change))


def _handled(key: BoundaryKey, boundary: set[BoundaryKey]) -> bool:
    # keys stored before content digests existed have an empty digest
    return key in boundary or (*key[:3], "") in boundary


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


# --------------------------------------------------------------------------- canonical


def _canonical(provider: str) -> Any:
    if provider == "quickbooks":
        from providers.quickbooks import canonical as qbo
        return qbo
    if provider == "xero":
        from providers.xero import canonical as xero
        return xero
    from providers.freshbooks import canonical as freshbooks
    return freshbooks


def written_snapshot(provider: str, event: ChangeEvent) -> BooksRecord:
    """What our write of a BlueClerk change leaves in the books, in canonical form: the
    provider's body for a customer or item read back by its canonical module; for an
    invoice its number, currency, total and whether it is void; for a payment its amount
    and date (the providers keep those as sent; the adapters check totals to the cent)."""
    record = event.record
    removed = event.event_type in (EventType.VOIDED, EventType.DELETED)
    if isinstance(record, Customer):
        if removed:
            record = replace(record, active=False)
        written: BooksRecord = _canonical(provider).written_customer(record)
        return written
    if isinstance(record, Item):
        if removed:
            record = replace(record, active=False)
        written = _canonical(provider).written_item(record)
        return written
    if isinstance(record, Invoice):
        void = removed or record.status == "void"
        # A new invoice owes its total; after an update the balance is not ours to know.
        owed = record.total if event.event_type is EventType.CREATED and not void else None
        return BooksInvoice(number=record.number, currency=record.currency,
                            total=record.total, status="void" if void else "open",
                            balance=owed)
    assert isinstance(record, Payment)
    return BooksPayment(amount=record.amount, currency=record.currency, date=record.paid_on,
                        deleted=removed)


def written_state(provider: str, event: ChangeEvent) -> tuple[str, str]:
    """(`EntityLink.written_state` JSON, `written_hash`) for a change we wrote; the engine
    stores both with the link in the transaction that records the write."""
    entity_type = event.entity_type.value
    full = inbound_state(written_snapshot(provider, event))
    if entity_type == "customer":  # the adapters send every customer field
        known = dict(full)
    elif entity_type == "item":  # ... and every item field but the income account
        known = {k: v for k, v in full.items() if k != "income_account_id"}
    else:
        known = echo_state(entity_type, full)
    if entity_type == "invoice" and full.get("balance") is not None:
        known["balance"] = full["balance"]  # a new invoice: unpaid, open
    elif entity_type == "invoice" and full.get("status") == "open":
        del known["status"]  # an update: paid or not is the books' to say
    return json.dumps(known, sort_keys=True), echo_hash(entity_type, full)


def _fixed(value: Decimal | None) -> Decimal | None:
    """A decimal fit for the schema's decimal(18,4)."""
    if value is None:
        return None
    return value.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def _text_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(slots=True)
class _Avro:
    customer: dict[str, Any] | None = None
    item: dict[str, Any] | None = None
    invoice: dict[str, Any] | None = None
    payment: dict[str, Any] | None = None


def _entity(links: Mapping[tuple[str, str], EntityLink], entity_type: str,
            provider_id: str | None) -> str | None:
    link = links.get((entity_type, provider_id)) if provider_id else None
    return link.entity_id if link is not None else None


def _avro(snapshot: BooksRecord, entity_id: str | None,
          links: Mapping[tuple[str, str], EntityLink]) -> _Avro:
    if isinstance(snapshot, BooksCustomer):
        a = snapshot.billing_address
        return _Avro(customer={
            "id": entity_id or "", "display_name": snapshot.display_name,
            "given_name": snapshot.given_name, "family_name": snapshot.family_name,
            "company_name": snapshot.company_name, "email": snapshot.email,
            "phone": snapshot.phone,
            "billing_address": None if a is None else {
                "line1": a.line1, "line2": a.line2, "city": a.city, "region": a.region,
                "postal_code": a.postal_code, "country": a.country},
            "currency": snapshot.currency or "", "customer_type": None,
            "active": snapshot.active})
    if isinstance(snapshot, BooksItem):
        return _Avro(item={
            "id": entity_id or "", "name": snapshot.name, "sku": snapshot.sku,
            "description": snapshot.description,
            "unit_price": _fixed(snapshot.unit_price) or Decimal("0.0000"), "currency": "",
            "taxable": False, "active": snapshot.active,
            "income_account_id": snapshot.income_account_id})
    if isinstance(snapshot, BooksInvoice):
        return _Avro(invoice={
            "number": snapshot.number, "status": snapshot.status,
            "customer_provider_id": snapshot.customer_provider_id,
            "customer_entity_id": _entity(links, "customer", snapshot.customer_provider_id),
            "issue_date": snapshot.issue_date, "due_date": snapshot.due_date,
            "currency": snapshot.currency,
            "lines": [{"item_provider_id": line.item_provider_id,
                       "item_entity_id": _entity(links, "item", line.item_provider_id),
                       "description": line.description, "quantity": _fixed(line.quantity),
                       "unit_price": _fixed(line.unit_price), "amount": _fixed(line.amount)}
                      for line in snapshot.lines],
            "subtotal": _fixed(snapshot.subtotal), "tax_total": _fixed(snapshot.tax_total),
            "total": _fixed(snapshot.total), "balance": _fixed(snapshot.balance)})
    return _Avro(payment={
        "amount": _fixed(snapshot.amount), "currency": snapshot.currency,
        "date": snapshot.date, "method": snapshot.method, "reference": snapshot.reference,
        "invoice_provider_id": snapshot.invoice_provider_id,
        "invoice_entity_id": _entity(links, "invoice", snapshot.invoice_provider_id),
        "invoice_balance": _fixed(snapshot.invoice_balance),
        "invoice_status": snapshot.invoice_status, "deleted": snapshot.deleted})


def _from_state(entity_type: str, st: Mapping[str, Any]) -> BooksRecord:
    """A snapshot rebuilt from a stored state (for a deletion that carries no data)."""
    def d(name: str) -> Decimal | None:
        return dec(st.get(name))

    def day(name: str) -> dt.date | None:
        value = st.get(name)
        return dt.date.fromisoformat(value) if value else None

    if entity_type == "customer":
        parts = [st.get(f"billing_address.{p}") for p in
                 ("line1", "line2", "city", "region", "postal_code", "country")]
        return BooksCustomer(
            display_name=st.get("display_name") or "", given_name=st.get("given_name"),
            family_name=st.get("family_name"), company_name=st.get("company_name"),
            email=st.get("email"), phone=st.get("phone"),
            billing_address=Address(*parts) if any(parts) else None,
            currency=st.get("currency"), active=bool(st.get("active", True)))
    if entity_type == "item":
        return BooksItem(name=st.get("name") or "", sku=st.get("sku"),
                         description=st.get("description"), unit_price=d("unit_price"),
                         income_account_id=st.get("income_account_id"),
                         active=bool(st.get("active", True)))
    if entity_type == "invoice":
        lines = tuple(BooksInvoiceLine(
            item_provider_id=line.get("item_provider_id"),
            description=line.get("description"), quantity=dec(line.get("quantity")),
            unit_price=dec(line.get("unit_price")), amount=dec(line.get("amount")))
            for line in st.get("lines") or [])
        return BooksInvoice(
            number=st.get("number"), status=st.get("status") or "open",
            customer_provider_id=st.get("customer_provider_id"),
            issue_date=day("issue_date"), due_date=day("due_date"),
            currency=st.get("currency"), lines=lines, subtotal=d("subtotal"),
            tax_total=d("tax_total"), total=d("total"), balance=d("balance"))
    return BooksPayment(amount=d("amount"), currency=st.get("currency"), date=day("date"),
                        method=st.get("method") or "other", reference=st.get("reference"),
                        invoice_provider_id=st.get("invoice_provider_id"),
                        deleted=bool(st.get("deleted", False)))


def _removed(entity_type: str, snapshot: BooksRecord | None, operation: str
             ) -> BooksRecord | None:
    """The snapshot of a record the provider reports as deleted or voided."""
    if snapshot is None:
        return None
    if isinstance(snapshot, BooksInvoice) and snapshot.status not in ("void", "deleted"):
        return replace(snapshot, status="void" if operation == "voided" else "deleted")
    if isinstance(snapshot, BooksCustomer | BooksItem) and operation == "deleted":
        return replace(snapshot, active=False)
    if isinstance(snapshot, BooksPayment) and operation == "deleted":
        return replace(snapshot, deleted=True)
    return snapshot


# --------------------------------------------------------------------------- the poller


@dataclass(slots=True)
class _Known:
    """What the poller knows of one record before a change: the state last seen (or, when
    never seen, what we last wrote: `partial`), and the link."""

    state: dict[str, Any] | None
    state_hash: str | None
    partial: bool
    row: InboundRecord | None
    link: EntityLink | None


@dataclass(frozen=True, slots=True)
class _Decision:
    change: InboundChange
    snapshot: BooksRecord | None
    state: dict[str, Any]
    echo: bool
    repeated: bool


class InboundPoller:
    """Polls each connected accounting system for changes and writes them as events."""

    def __init__(self, db: Database, connections: ConnectionStore,
                 adapters: Callable[[ConnectionInfo], AccountingProvider], codec: AvroCodec,
                 *, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 lag: dt.timedelta = DEFAULT_LAG,
                 max_boundary_keys: int = 10_000,
                 locks: TenantLocks | None = None) -> None:
        self._db = db
        self._connections = connections
        self._adapters = adapters
        self._codec = codec
        self._clock = clock
        self._lag = lag
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
            fresh = [c for c in changes if not _handled(_key(c), boundary)]
            links = self._links(s, info, fresh)
            known = self._known(s, info, fresh, links)
            decisions = self._decide(s, info, fresh, known)
            emitted = suppressed = same = 0
            for decision in decisions:
                entry = known[(decision.change.entity_type, decision.change.provider_id)]
                if decision.repeated:
                    same += 1
                    continue
                if decision.echo:
                    log.debug("inbound_echo_suppressed", account_id=info.account_id,
                              entity_type=decision.change.entity_type,
                              provider_id=decision.change.provider_id)
                    suppressed += 1
                else:
                    self._emit(s, info, decision, entry, links)
                    emitted += 1
                self._remember(s, info, decision, entry)
            handled = boundary | {_key(c) for c in fresh}
            self._save_cursor(s, info.account_id, new_cursor, handled)
        result = PollResult(info.account_id, fetched=len(changes), emitted=emitted,
                            suppressed=suppressed,
                            repeated=len(changes) - len(fresh) + same,
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
        return {(str(k[0]), str(k[1]), str(k[2]), str(k[3]) if len(k) > 3 else "")
                for k in json.loads(row.boundary_keys)}

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
        # newest first under the cap, older overflow falls back to the content check.
        kept = sorted((k for k in handled if _key_time(k) >= cursor), key=lambda k: k[2],
                      reverse=True)[: self._max_keys]
        row = s.get(InboundCursor, account_id)
        if row is None:
            row = InboundCursor(account_id=account_id)
            s.add(row)
        row.polled_through = cursor
        row.boundary_keys = json.dumps(sorted(kept, key=lambda k: k[2]))
        row.updated_at = self._clock()

    # -- what we knew ----------------------------------------------------------------

    @staticmethod
    def _links(s: Session, info: ConnectionInfo, changes: Sequence[InboundChange]
               ) -> dict[tuple[str, str], EntityLink]:
        """Links of this provider and company for the changed records and the records
        their snapshots name (a payment's invoice, an invoice's customer and items)."""
        wanted: set[str] = {c.provider_id for c in changes}
        for change in changes:
            snap = change.snapshot
            if isinstance(snap, BooksPayment) and snap.invoice_provider_id:
                wanted.add(snap.invoice_provider_id)
            elif isinstance(snap, BooksInvoice):
                if snap.customer_provider_id:
                    wanted.add(snap.customer_provider_id)
                wanted.update(line.item_provider_id for line in snap.lines
                              if line.item_provider_id)
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

    @staticmethod
    def _known(s: Session, info: ConnectionInfo, changes: Sequence[InboundChange],
               links: Mapping[tuple[str, str], EntityLink]) -> dict[tuple[str, str], _Known]:
        keys = {(c.entity_type, c.provider_id) for c in changes}
        rows: dict[tuple[str, str], InboundRecord] = {}
        ids = sorted({pid for _, pid in keys})
        for chunk in range(0, len(ids), 500):
            for seen in s.execute(select(InboundRecord).where(
                    InboundRecord.account_id == info.account_id,
                    InboundRecord.provider == info.provider,
                    InboundRecord.tenant_id == (info.tenant_id or ""),
                    InboundRecord.provider_id.in_(ids[chunk:chunk + 500]))).scalars():
                rows[(seen.entity_type, seen.provider_id)] = seen
        out: dict[tuple[str, str], _Known] = {}
        for key in keys:
            link = links.get(key)
            row = rows.get(key)
            if row is not None and link is not None and link.written_hash is not None \
                    and link.written_state:
                # We wrote the record after the poller last saw it: the last state we
                # knew is what we saw, with what we wrote on top.
                merged = {**json.loads(row.state), **json.loads(link.written_state)}
                out[key] = _Known(merged, row.state_hash, False, row, link)
            elif row is not None:
                out[key] = _Known(json.loads(row.state), row.state_hash, False, row, link)
            elif link is not None and link.written_state:
                out[key] = _Known(json.loads(link.written_state), None, True, None, link)
            else:
                out[key] = _Known(None, None, False, None, link)
        return out

    # -- decisions -------------------------------------------------------------------

    def _decide(self, s: Session, info: ConnectionInfo, changes: Sequence[InboundChange],
                known: dict[tuple[str, str], _Known]) -> list[_Decision]:
        # The invoices' states after this fetch, for the payments' balance and status.
        after: dict[str, BooksInvoice] = {}
        for change in changes:
            if change.entity_type == "invoice":
                snap = self._snapshot(change, known[("invoice", change.provider_id)])
                if isinstance(snap, BooksInvoice):
                    after[change.provider_id] = snap
        # Payments first: whose are they (an invoice paid only by us moved because of us).
        ours_paid: set[str] = set()
        theirs_paid: set[str] = set()
        payments: dict[str, _Decision] = {}
        for change in changes:
            if change.entity_type == "payment":
                decision = self._one(info, change, known[("payment", change.provider_id)],
                                     after)
                payments[change.provider_id] = decision
                invoice = getattr(decision.snapshot, "invoice_provider_id", None)
                if invoice and not decision.repeated:
                    (ours_paid if decision.echo else theirs_paid).add(invoice)
        decisions = []
        for change in changes:
            if change.entity_type == "payment":
                decisions.append(payments[change.provider_id])
                continue
            entry = known[(change.entity_type, change.provider_id)]
            decision = self._one(info, change, entry, after)
            if change.entity_type == "invoice" and change.provider_id in theirs_paid:
                # someone else's payment moved it: never only ours
                decision = _Decision(change, decision.snapshot, decision.state, False,
                                     decision.repeated)
            elif not decision.echo and not decision.repeated and (
                    # moved only by a payment of ours
                    (change.entity_type == "invoice" and change.provider_id in ours_paid
                     and entry.state is not None
                     and set(changed_fields(entry.state, decision.state,
                                            entry.state if entry.partial else None))
                     <= _PAYMENT_MOVES)
                    # rewritten by the wizard's mapping step
                    or (change.entity_type == "item" and entry.link is not None
                        and self._item_as_blueclerk_has_it(s, info, entry.link,
                                                           decision.state))):
                decision = _Decision(change, decision.snapshot, decision.state, True, False)
            decisions.append(decision)
        return decisions

    def _item_as_blueclerk_has_it(self, s: Session, info: ConnectionInfo, link: EntityLink,
                                  current: Mapping[str, Any]) -> bool:
        """A linked item that reads exactly as BlueClerk's last applied snapshot with the
        account's income-account mapping was written by us: the setup wizard's mapping
        step rewrites linked items outside the engine (control/mappings.py)."""
        mapping = s.get(IncomeAccountMapping, (info.account_id, link.entity_id))
        if mapping is not None and current.get("income_account_id") not in (
                None, mapping.provider_account_id):
            return False
        if mapping is None and current.get("income_account_id") is not None:
            return False
        snapshot = repo.get_snapshot(s, info.account_id, "item", link.entity_id)
        if snapshot is None or snapshot.entity_version != link.last_applied_version:
            return False
        try:
            decoded = self._codec.decode(snapshot.payload)
            event = event_from_avro(decoded.schema_name, decoded.value)
            full = inbound_state(written_snapshot(info.provider, event))
        except Exception:  # an unreadable snapshot: not ours to claim
            return False
        return echo_hash("item", full) == echo_hash("item", current)

    @staticmethod
    def _snapshot(change: InboundChange, entry: _Known) -> BooksRecord | None:
        snap = change.snapshot
        if snap is None and entry.state is not None:  # a deletion without data
            snap = _from_state(change.entity_type, entry.state)
        if change.operation in ("deleted", "voided"):
            snap = _removed(change.entity_type, snap, change.operation)
        return snap

    def _one(self, info: ConnectionInfo, change: InboundChange, entry: _Known,
             after: Mapping[str, BooksInvoice]) -> _Decision:
        snap = self._snapshot(change, entry)
        paid_id = snap.invoice_provider_id if isinstance(snap, BooksPayment) else None
        if isinstance(snap, BooksPayment) and paid_id is not None and paid_id in after:
            paid = after[paid_id]
            snap = replace(snap, invoice_balance=paid.balance, invoice_status=paid.status)
        current = inbound_state(snap) if snap is not None else {}
        if entry.state_hash is not None and state_hash(current) == entry.state_hash:
            return _Decision(change, snap, current, False, True)
        return _Decision(change, snap, current, self._own_write(info, change, entry, current),
                         False)

    @staticmethod
    def _own_write(info: ConnectionInfo, change: InboundChange, entry: _Known,
                   current: Mapping[str, Any]) -> bool:
        link = entry.link
        if link is None:
            return False
        sync_token = change.data.get("SyncToken") if info.provider == "quickbooks" else None
        if sync_token is not None and link.provider_version is not None:
            return str(sync_token) == link.provider_version
        return link.written_hash is not None and \
            echo_hash(change.entity_type, current) == link.written_hash

    # -- recording -------------------------------------------------------------------

    @staticmethod
    def _remember(s: Session, info: ConnectionInfo, decision: _Decision,
                  entry: _Known) -> None:
        """The state just seen becomes the last state known; what we wrote is used up."""
        change = decision.change
        digest = state_hash(decision.state)
        row = entry.row
        if row is None:
            row = InboundRecord(account_id=info.account_id, provider=info.provider,
                                tenant_id=info.tenant_id or "",
                                entity_type=change.entity_type,
                                provider_id=change.provider_id)
            s.add(row)
            entry.row = row
        row.state = json.dumps(decision.state, sort_keys=True)
        row.state_hash = digest
        row.changed_at = change.changed_at
        entry.state, entry.state_hash, entry.partial = dict(decision.state), digest, False
        if entry.link is not None and entry.link.written_hash is not None:
            entry.link.written_hash = None

    def _pending(self, s: Session, info: ConnectionInfo, link: EntityLink | None
                 ) -> dict[str, Any] | None:
        """BlueClerk's change of a linked record not yet written to the books, as the
        state our write of it would leave (None: nothing pending)."""
        if link is None:
            return None
        snapshot = repo.get_snapshot(s, info.account_id, link.entity_type, link.entity_id)
        if snapshot is None or snapshot.entity_version <= link.last_applied_version:
            return None
        try:
            decoded = self._codec.decode(snapshot.payload)
            event = event_from_avro(decoded.schema_name, decoded.value)
            full = inbound_state(written_snapshot(info.provider, event))
        except Exception as exc:  # an unreadable snapshot only loses the conflict flag
            log.warning("inbound_pending_unreadable", account_id=info.account_id,
                        entity_type=link.entity_type, entity_id=link.entity_id,
                        error=str(exc))
            return None
        return echo_state(link.entity_type, full)

    def _emit(self, s: Session, info: ConnectionInfo, decision: _Decision, entry: _Known,
              links: Mapping[tuple[str, str], EntityLink]) -> None:
        change, current = decision.change, decision.state
        link = entry.link
        operation = inbound_operation(change)
        if operation in ("updated", "created"):
            operation = "created" if link is None and entry.state is None else "updated"
        before = entry.state
        changed = changed_fields(before, current, before if entry.partial else None)
        previous = {name: _text_of(before.get(name)) for name in changed} \
            if before is not None else {}
        pending = self._pending(s, info, link)
        conflicting = [name for name in changed if pending is not None and name in pending
                       and pending[name] != current.get(name)
                       and (before is None or pending[name] != before.get(name))]
        details = _facts(info.provider, change)
        details["source"] = "accounting_system"
        details["provider_operation"] = change.operation
        snap = decision.snapshot
        invoice = getattr(snap, "invoice_provider_id", None) or \
            details.get("invoice_provider_id")
        if change.entity_type == "payment" and invoice:
            invoice_link = links.get(("invoice", invoice))
            if invoice_link is not None:
                details["invoice_entity_id"] = invoice_link.entity_id
        if conflicting:
            details["conflict"] = "blueclerk_wins"
        entity_id = link.entity_id if link is not None else None
        avro = _avro(snap, entity_id, links) if snap is not None else _Avro()
        add_change_event(
            s, self._codec,
            change_id=change_id_for(info.account_id, info.provider, change.entity_type,
                                    change.provider_id, change.changed_at,
                                    content_digest(change)),
            account_id=info.account_id, provider=info.provider,
            entity_type=change.entity_type, provider_id=change.provider_id,
            entity_id=entity_id, operation=operation, changed_at=change.changed_at,
            details=details, customer=avro.customer, item=avro.item, invoice=avro.invoice,
            payment=avro.payment, changed_fields=changed, previous=previous,
            conflicting_fields=conflicting)
