"""SyncEngine and handlers over SQLite with a fake provider and a fake dead-letter sink."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from consumers.engine import EngineResult, Origin, RetryPolicy, SyncEngine
from providers.errors import (
    DuplicateName,
    ReconnectRequired,
    Throttled,
    TotalMismatch,
    TransientProviderError,
)
from providers.oauth import TokenSet
from providers.port import (
    InboundChange,
    IncomeAccount,
    ProviderRecord,
    RemoteCustomer,
    RemoteItem,
    WriteIntent,
)
from providers.taxes import BlueClerkTaxRate, ProviderTaxRate
from sandbox.scenario import EventFactory, build_invoice
from schemas.codec import AvroCodec, DecodeError
from schemas.error_codes import ErrorCode
from schemas.events import SCHEMA_BY_ENTITY, event_to_avro
from schemas.records import ChangeEvent, Customer, Invoice, Item, Payment
from schemas.status import SyncStatus, SyncStatusEvent
from state import repository as repo
from state.connections import ConnectionInfo, ConnectionStore, connection_info
from state.crypto import TokenCipher, generate_key
from state.db import Database
from state.models import EntityLink, IncomeAccountMapping, OutboxMessage, ParkedEvent, SyncSettings

CONNECTED = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
CODEC = AvroCodec()


# ---- fakes ---------------------------------------------------------------------------------

@dataclass
class Call:
    op: str  # upsert_customer | upsert_item | upsert_invoice | void_invoice | record_payment
    entity_id: str
    linked: bool
    write: WriteIntent


@dataclass
class FakeProvider:
    """An AccountingProvider that records every call; `failures` are raised first, in order."""

    name: str = "quickbooks"
    # A US company with automated sales tax unless a test gives the company's own codes.
    tax_rates: list[ProviderTaxRate] = field(default_factory=lambda: [
        ProviderTaxRate("TAX", "Automated sales tax", None, kind="automated")])
    taxes_sent: list[dict[str, ProviderTaxRate]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(100))

    def _call(self, op: str, entity_id: str, link: ProviderRecord | None,
              write: WriteIntent, total: Decimal | None = None) -> ProviderRecord:
        self.calls.append(Call(op, entity_id, link is not None, write))
        if self.failures:
            raise self.failures.pop(0)
        if link is not None:
            return ProviderRecord(link.id, str(int(link.version or "0") + 1), total)
        return ProviderRecord(str(next(self._ids)), "0", total)

    def ops(self) -> list[tuple[str, str, bool]]:
        return [(c.op, c.entity_id, c.linked) for c in self.calls]

    def upsert_customer(self, customer: Customer, link: ProviderRecord | None,
                        write: WriteIntent) -> ProviderRecord:
        return self._call("upsert_customer", customer.id, link, write)

    def upsert_item(self, item: Item, income_account_id: str | None,
                    link: ProviderRecord | None, write: WriteIntent) -> ProviderRecord:
        return self._call("upsert_item", item.id, link, write)

    def upsert_invoice(self, invoice: Invoice, customer: ProviderRecord,
                       items: Mapping[str, ProviderRecord], link: ProviderRecord | None,
                       write: WriteIntent,
                       taxes: Mapping[str, ProviderTaxRate] | None = None) -> ProviderRecord:
        self.taxes_sent.append(dict(taxes or {}))
        return self._call("upsert_invoice", invoice.id, link, write, invoice.total)

    def void_invoice(self, invoice: Invoice, link: ProviderRecord,
                     write: WriteIntent) -> ProviderRecord:
        return self._call("void_invoice", invoice.id, link, write)

    def record_payment(self, payment: Payment, invoice: ProviderRecord,
                       customer: ProviderRecord, link: ProviderRecord | None,
                       write: WriteIntent) -> ProviderRecord:
        return self._call("record_payment", payment.id, link, write)

    def list_customers(self) -> list[RemoteCustomer]:
        return []

    def list_items(self) -> list[RemoteItem]:
        return []

    def list_income_accounts(self) -> list[IncomeAccount]:
        return []

    def list_tax_rates(self) -> list[ProviderTaxRate]:
        return list(self.tax_rates)

    def fetch_changes(self, since: dt.datetime) -> list[InboundChange]:
        return []


@dataclass
class FakeDeadLetters:
    sent: list[tuple[bytes | None, str | None, Origin | None, BaseException, ErrorCode]] = \
        field(default_factory=list)

    def dead_letter(self, payload: bytes | None, key: str | None, origin: Origin | None,
                    error: BaseException, code: ErrorCode) -> None:
        self.sent.append((payload, key, origin, error, code))


class World:
    """One engine over one SQLite database; accounts are connected on demand."""

    def __init__(self, url: str, provider_name: str = "quickbooks") -> None:
        self.db = Database(url)
        self.connections = ConnectionStore(self.db, TokenCipher(generate_key()))
        self.providers: dict[str, FakeProvider] = {}
        self.sink = FakeDeadLetters()
        self.provider_name = provider_name
        self.engine = SyncEngine(self.db, self.connections, self._adapter, CODEC, self.sink,
                                 retry=RetryPolicy(max_attempts=3, base_delay_s=0.01,
                                                   max_delay_s=0.05))
        self._offsets = itertools.count()

    def _adapter(self, info: ConnectionInfo) -> FakeProvider:
        return self.providers.setdefault(info.account_id, FakeProvider(info.provider))

    def account(self, connect: bool = True, **setting: bool) -> tuple[str, EventFactory]:
        account_id = f"acct-{uuid.uuid4().hex[:8]}"
        if connect:
            self.connections.connect(
                account_id, self.provider_name, f"realm-{account_id}",
                TokenSet("at", "rt", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
                connected_at=CONNECTED)
            if setting:
                self.settings(account_id, **setting)
        return account_id, EventFactory(account_id, created_at=CONNECTED + dt.timedelta(days=1))

    def provider(self, account_id: str) -> FakeProvider:
        return self.providers.setdefault(account_id, FakeProvider(self.provider_name))

    def settings(self, account_id: str, **values: bool) -> None:
        with self.db.transaction() as s:
            row = s.get(SyncSettings, account_id)
            assert row is not None
            for key, value in values.items():
                setattr(row, key, value)

    def map_item(self, account_id: str, item_id: str, income_account: str = "79") -> None:
        with self.db.transaction() as s:
            s.add(IncomeAccountMapping(account_id=account_id, item_id=item_id,
                                       provider_account_id=income_account))

    def origin(self) -> Origin:
        return Origin("blueclerk.customers", 0, next(self._offsets))

    def process(self, event: ChangeEvent, *, attempt: int = 1,
                origin: Origin | None = None) -> EngineResult:
        return self.engine.process(event, payload(event), attempt=attempt,
                                   origin=origin or self.origin())

    def redrive(self, event_id: str) -> EngineResult:
        with self.db.transaction() as s:
            row = s.execute(select(ParkedEvent).where(ParkedEvent.event_id == event_id)
                            ).scalar_one()
            data = row.payload
        return self.engine.process(self.engine.decode(data), data, redrive=True)

    def statuses(self, event_id: str) -> list[SyncStatusEvent]:
        with self.db.transaction() as s:
            rows = s.execute(select(OutboxMessage).where(OutboxMessage.topic_kind == "status")
                             .order_by(OutboxMessage.id)).scalars().all()
            decoded = [SyncStatusEvent.from_avro(CODEC.decode(r.value).value) for r in rows]
        return [d for d in decoded if d.source_event_id == event_id]

    def link(self, account_id: str, entity_type: str, entity_id: str) -> EntityLink | None:
        with self.db.transaction() as s:
            company = connection_info(s, account_id)
            assert company is not None
            return repo.get_link(s, company, entity_type, entity_id)

    def parked(self, event_id: str) -> ParkedEvent | None:
        with self.db.transaction() as s:
            return s.execute(select(ParkedEvent).where(ParkedEvent.event_id == event_id)
                             ).scalar_one_or_none()


def payload(event: ChangeEvent) -> bytes:
    return CODEC.encode(SCHEMA_BY_ENTITY[event.entity_type], event_to_avro(event))


def only(result: EngineResult) -> SyncStatusEvent:
    assert len(result.statuses) == 1, result
    return result.statuses[0]


@pytest.fixture
def world(sqlite_url: str) -> World:
    return World(sqlite_url)


# ---- deduplication and gates ----------------------------------------------------------------

def test_customer_create_then_update(world: World) -> None:
    acct, f = world.account()
    first = only(world.process(f.customer("c1", "Ada")))
    assert (first.status, first.operation, first.provider) == (
        SyncStatus.SYNCED, "create", "quickbooks")
    second = only(world.process(f.customer("c1", "Ada Lovelace")))
    assert (second.status, second.operation) == (SyncStatus.SYNCED, "update")
    assert second.provider_record_id == first.provider_record_id
    assert world.provider(acct).ops() == [("upsert_customer", "c1", False),
                                          ("upsert_customer", "c1", True)]
    link = world.link(acct, "customer", "c1")
    assert link is not None and link.last_applied_version == 2 and link.provider_version == "1"


def test_duplicate_event_id_is_a_no_op(world: World) -> None:
    acct, f = world.account()
    event = f.customer("c1", "Ada")
    assert only(world.process(event)).status is SyncStatus.SYNCED
    again = world.process(event)
    assert again.statuses == () and again.retry_after_s is None
    assert len(world.provider(acct).calls) == 1
    assert len(world.statuses(event.event_id)) == 1


def test_stale_version_is_skipped(world: World) -> None:
    acct, f = world.account()
    world.process(f.event(Customer("c1", "Ada v3"), version=3))
    stale = only(world.process(f.event(Customer("c1", "Ada v2"), version=2)))
    same = only(world.process(f.event(Customer("c1", "Ada v3 again"), version=3)))
    for status in (stale, same):
        assert (status.status, status.error_code) == (SyncStatus.SKIPPED, ErrorCode.STALE_VERSION)
    assert len(world.provider(acct).calls) == 1


def test_identical_payload_is_not_sent_again(world: World) -> None:
    acct, f = world.account()
    world.process(f.customer("c1", "Ada", email="a@example.com"))
    unchanged = only(world.process(f.customer("c1", "Ada", email="a@example.com")))
    assert (unchanged.status, unchanged.error_code) == (SyncStatus.SKIPPED, ErrorCode.UNCHANGED)
    assert len(world.provider(acct).calls) == 1
    link = world.link(acct, "customer", "c1")
    assert link is not None and link.last_applied_version == 2


def test_not_connected(world: World) -> None:
    acct, f = world.account(connect=False)
    status = only(world.process(f.customer("c1", "Ada")))
    assert (status.status, status.error_code) == (SyncStatus.SKIPPED, ErrorCode.NOT_CONNECTED)
    assert status.provider is None
    assert acct not in world.providers


def test_sync_setting_off(world: World) -> None:
    acct, f = world.account(sync_customers=False)
    status = only(world.process(f.customer("c1", "Ada")))
    assert (status.status, status.error_code) == (SyncStatus.SKIPPED, ErrorCode.SYNC_DISABLED)
    assert world.provider(acct).calls == []


def test_pre_connection_record_is_skipped(world: World) -> None:
    acct, f = world.account()
    before = f.event(Customer("c1", "Old"), created_at=CONNECTED - dt.timedelta(days=30))
    status = only(world.process(before))
    assert (status.status, status.error_code) == (SyncStatus.SKIPPED, ErrorCode.PRE_CONNECTION)
    assert world.provider(acct).calls == []


def test_auto_sync_off_parks_then_sync_now_runs_in_order(world: World) -> None:
    acct, f = world.account(auto_sync=False)
    events = [f.customer("c1", "Ada"), f.customer("c2", "Bob"), f.customer("c1", "Ada L.")]
    for event in events:
        status = only(world.process(event))
        assert status.status is SyncStatus.PENDING_MANUAL
        parked = world.parked(event.event_id)
        assert parked is not None and parked.reason == "pending_manual"
    assert world.provider(acct).calls == []
    statuses = world.engine.drive_parked(acct, {"pending_manual"})
    assert [(s.source_event_id, s.status) for s in statuses] == [
        (e.event_id, SyncStatus.SYNCED) for e in events]
    assert world.provider(acct).ops() == [("upsert_customer", "c1", False),
                                          ("upsert_customer", "c2", False),
                                          ("upsert_customer", "c1", True)]
    assert all(world.parked(e.event_id) is None for e in events)
    assert world.engine.drive_parked(acct, {"pending_manual"}) == []  # nothing left


# ---- dependencies ---------------------------------------------------------------------------

def _invoice_events(world: World, acct: str, f: EventFactory,
                    customer_id: str = "c1") -> ChangeEvent:
    world.map_item(acct, "i1")
    assert only(world.process(f.event(Item("i1", "Drain", unit_price=Decimal("10"))))
                ).status is SyncStatus.SYNCED
    inv = build_invoice("inv1", customer_id, "1001", "USD", "exclusive",
                        [("i1", "2", "10", "0", "5")])
    return f.event(inv)


def test_invoice_before_its_customer_waits_then_is_redriven(world: World) -> None:
    acct, f = world.account()
    invoice_event = _invoice_events(world, acct, f)
    waiting = only(world.process(invoice_event))
    assert (waiting.status, waiting.error_code) == (
        SyncStatus.WAITING_DEPENDENCY, ErrorCode.MISSING_DEPENDENCY)
    parked = world.parked(invoice_event.event_id)
    assert parked is not None and parked.waits_for == "customer:c1"

    customer = world.process(f.customer("c1", "Ada"))
    assert only(customer).status is SyncStatus.SYNCED
    assert invoice_event.event_id in customer.redrive

    synced = only(world.redrive(invoice_event.event_id))
    assert (synced.status, synced.operation) == (SyncStatus.SYNCED, "create")
    assert world.parked(invoice_event.event_id) is None
    assert [c.op for c in world.provider(acct).calls] == [
        "upsert_item", "upsert_customer", "upsert_invoice"]
    assert [s.status for s in world.statuses(invoice_event.event_id)] == [
        SyncStatus.WAITING_DEPENDENCY, SyncStatus.SYNCED]


def test_known_but_unlinked_customer_is_created_from_its_snapshot(world: World) -> None:
    acct, f = world.account(sync_customers=False)
    skipped = only(world.process(f.customer("c1", "Ada")))
    assert skipped.error_code is ErrorCode.SYNC_DISABLED
    world.settings(acct, sync_customers=True)
    invoice_event = _invoice_events(world, acct, f)
    status = only(world.process(invoice_event))
    assert status.status is SyncStatus.SYNCED
    assert world.provider(acct).ops() == [("upsert_item", "i1", False),
                                          ("upsert_customer", "c1", False),
                                          ("upsert_invoice", "inv1", False)]
    link = world.link(acct, "customer", "c1")
    assert link is not None and link.last_applied_version == 1


def test_unmapped_item_waits_on_quickbooks(world: World) -> None:
    acct, f = world.account()
    item_event = f.event(Item("i9", "Unmapped thing", unit_price=Decimal("5")))
    status = only(world.process(item_event))
    assert (status.status, status.error_code) == (
        SyncStatus.WAITING_DEPENDENCY, ErrorCode.UNMAPPED_ITEM)
    parked = world.parked(item_event.event_id)
    assert parked is not None and parked.waits_for == "mapping:i9"
    assert world.provider(acct).calls == []
    world.map_item(acct, "i9")
    statuses = world.engine.drive_parked(acct, {"unmapped_item"}, {"mapping:i9"})
    assert [s.status for s in statuses] == [SyncStatus.SYNCED]


def test_unmapped_item_does_not_block_freshbooks(sqlite_url: str) -> None:
    world = World(sqlite_url, provider_name="freshbooks")
    _acct, f = world.account()
    assert only(world.process(f.event(Item("i9", "Thing")))).status is SyncStatus.SYNCED


# ---- provider failures ----------------------------------------------------------------------

def test_transient_error_retries_then_dead_letters(world: World) -> None:
    acct, f = world.account()
    event = f.customer("c1", "Ada")
    provider = world.provider(acct)
    provider.failures = [TransientProviderError("503 from provider", status=503)] * 3
    origin = Origin("blueclerk.customers", 2, 41)

    first = world.process(event, attempt=1, origin=origin)
    assert first.retry_after_s is not None and 0 <= first.retry_after_s <= 0.05
    assert (only(first).status, only(first).error_code) == (
        SyncStatus.RETRYING, ErrorCode.PROVIDER_UNAVAILABLE)
    second = world.process(event, attempt=2, origin=origin)
    assert only(second).status is SyncStatus.RETRYING and only(second).attempt == 2
    assert world.sink.sent == []

    last = world.process(event, attempt=3, origin=origin)
    final = only(last)
    assert last.retry_after_s is None
    assert (final.status, final.error_code, final.attempt) == (
        SyncStatus.DEAD_LETTERED, ErrorCode.RETRY_BUDGET_EXHAUSTED, 3)
    ((data, key, sent_origin, error, code),) = world.sink.sent
    assert data == payload(event) and key == acct and sent_origin == origin
    assert isinstance(error, TransientProviderError)
    assert code is ErrorCode.RETRY_BUDGET_EXHAUSTED
    assert [s.status for s in world.statuses(event.event_id)] == [
        SyncStatus.RETRYING, SyncStatus.RETRYING, SyncStatus.DEAD_LETTERED]
    assert world.process(event, attempt=4, origin=origin).statuses == ()  # final: no-op


def test_retry_honours_the_providers_retry_after(world: World) -> None:
    acct, f = world.account()
    world.provider(acct).failures = [Throttled("429", retry_after=60)]
    result = world.process(f.customer("c1", "Ada"))
    assert result.retry_after_s is not None and result.retry_after_s >= 60
    assert only(result).error_code is ErrorCode.THROTTLED


def test_local_throttle_defers_without_spending_an_attempt(world: World) -> None:
    acct, f = world.account()
    world.provider(acct).failures = [Throttled("local", retry_after=0.3, status=None)]
    event = f.customer("c1", "Ada")
    result = world.process(event)
    assert result.statuses == () and result.spend_attempt is False
    assert result.retry_after_s == pytest.approx(0.3)
    assert only(world.process(event)).status is SyncStatus.SYNCED


def test_permanent_error_fails_at_once(world: World) -> None:
    acct, f = world.account()
    world.provider(acct).failures = [DuplicateName("name taken", status=400)]
    event = f.customer("c1", "Ada")
    status = only(world.process(event))
    assert (status.status, status.error_code) == (SyncStatus.FAILED, ErrorCode.DUPLICATE_NAME)
    assert world.sink.sent == []  # not a retry-budget dead letter
    assert world.link(acct, "customer", "c1") is None


def test_reconnect_required_fails_and_parks_for_reconnect(world: World) -> None:
    acct, f = world.account()
    world.provider(acct).failures = [ReconnectRequired("invalid_grant")]
    event = f.customer("c1", "Ada")
    status = only(world.process(event))
    assert (status.status, status.error_code) == (SyncStatus.FAILED,
                                                  ErrorCode.RECONNECT_REQUIRED)
    parked = world.parked(event.event_id)
    assert parked is not None
    assert (parked.reason, parked.waits_for) == ("reconnect_required", "connection")
    # After the user reconnects, the parked event syncs.
    statuses = world.engine.drive_parked(acct, {"reconnect_required"})
    assert [s.status for s in statuses] == [SyncStatus.SYNCED]


def test_account_marked_reconnect_required_parks_new_events(world: World) -> None:
    acct, f = world.account()
    world.connections.set_status(acct, "reconnect_required", "refresh refused")
    event = f.customer("c1", "Ada")
    status = only(world.process(event))
    assert (status.status, status.error_code) == (SyncStatus.FAILED,
                                                  ErrorCode.RECONNECT_REQUIRED)
    assert world.provider(acct).calls == []
    parked = world.parked(event.event_id)
    assert parked is not None and parked.reason == "reconnect_required"


def test_undecodable_record_is_dead_lettered(world: World) -> None:
    origin = Origin("blueclerk.invoices", 1, 7)
    status = world.engine.reject(b"\x07junk", "acct-x", origin,
                                 DecodeError("bad_magic", "unrecognised"))
    assert (status.status, status.error_code) == (SyncStatus.DEAD_LETTERED,
                                                  ErrorCode.UNDECODABLE)
    assert status.source_event_id == "blueclerk.invoices/1/7"
    ((data, key, sent_origin, _error, code),) = world.sink.sent
    assert (data, key, sent_origin, code) == (b"\x07junk", "acct-x", origin,
                                              ErrorCode.UNDECODABLE)


def test_void_of_a_synced_invoice(world: World) -> None:
    acct, f = world.account()
    world.process(f.customer("c1", "Ada"))
    invoice_event = _invoice_events(world, acct, f)
    world.process(invoice_event)
    assert isinstance(invoice_event.record, Invoice)
    void = only(world.process(f.void(invoice_event.record)))
    assert (void.status, void.operation) == (SyncStatus.SYNCED, "void")
    # a redelivered void (new event id, same content) does not void twice
    again = f.event(replace(invoice_event.record, status="void"))
    assert only(world.process(again)).error_code is ErrorCode.UNCHANGED
    assert [c.op for c in world.provider(acct).calls].count("void_invoice") == 1


# ---- property: one customer's event stream, shuffled and redelivered ------------------------

_step = st.tuples(st.integers(min_value=1, max_value=8), st.sampled_from(["Ada", "Ada L."]),
                  st.booleans())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_step, min_size=1, max_size=12))
def test_event_streams_converge(world: World,
                                steps: list[tuple[int, str, bool]]) -> None:
    acct, f = world.account()
    delivered: list[ChangeEvent] = []
    for version, name, redeliver in steps:
        if redeliver and delivered:
            event = delivered[version % len(delivered)]  # an old event, delivered again
        else:
            event = f.event(Customer("c1", f"{name} {version % 3}"), version=version)
            delivered.append(event)
        result = world.process(event)
        assert result.retry_after_s is None
        assert all(s.status in (SyncStatus.SYNCED, SyncStatus.SKIPPED) for s in result.statuses)
    link = world.link(acct, "customer", "c1")
    assert link is not None
    assert link.last_applied_version == max(e.entity_version for e in delivered)
    ops = world.provider(acct).ops()
    assert [op for op in ops if not op[2]] == [("upsert_customer", "c1", False)]
    # one status per distinct event, never two
    for event in delivered:
        assert len(world.statuses(event.event_id)) == 1


def test_a_saved_mapping_re_drives_the_whole_chain_waiting_on_it(world: World) -> None:
    """Item waits for its mapping, the invoice for the item, the payment for the invoice:
    saving the mapping must bring all three into the books, not just the first two."""
    acct, f = world.account()
    assert only(world.process(f.customer("c1", "Ada"))).status is SyncStatus.SYNCED
    inv = build_invoice("inv1", "c1", "1001", "USD", "exclusive", [("i9", "1", "5", "0", "0")])
    invoice_event = f.event(inv)
    assert only(world.process(invoice_event)).status is SyncStatus.WAITING_DEPENDENCY
    payment_event = f.event(Payment("p1", "inv1", "c1", inv.total, "USD",
                                    dt.date(2026, 11, 6)))
    assert only(world.process(payment_event)).status is SyncStatus.WAITING_DEPENDENCY
    item_event = f.event(Item("i9", "Unmapped thing", unit_price=Decimal("5")))
    assert only(world.process(item_event)).error_code is ErrorCode.UNMAPPED_ITEM

    world.map_item(acct, "i9")
    statuses = world.engine.drive_parked(acct, {"unmapped_item"}, {"mapping:i9"})
    assert [(s.entity_type, s.status) for s in statuses] == [
        ("item", SyncStatus.SYNCED), ("invoice", SyncStatus.SYNCED),
        ("payment", SyncStatus.SYNCED)]
    assert world.parked(payment_event.event_id) is None


# ---- items linked from the books without an income account (issue 9) -----------------------

def _import_item_without_account(world: World, acct: str, item_id: str = "imp-i7") -> None:
    """What the wizard's step 2 does for a provider item that has no income account: a link
    (version 0, nothing synced) and no mapping."""
    with world.db.transaction() as s:
        company = connection_info(s, acct)
        assert company is not None
        repo.save_link(s, company, "item", item_id, "P-7", None, 0, None)


@pytest.mark.parametrize("provider", ["quickbooks", "xero"])
def test_invoice_using_an_imported_item_without_account_waits_for_its_mapping(
        sqlite_url: str, provider: str) -> None:
    world = World(sqlite_url, provider_name=provider)
    acct, f = world.account()
    _import_item_without_account(world, acct)
    assert only(world.process(f.customer("c1", "Ada"))).status is SyncStatus.SYNCED
    inv = build_invoice("inv7", "c1", "1007", "USD", "exclusive", [("imp-i7", "1", "5", "0", "0")])
    invoice_event = f.event(inv)

    waiting = only(world.process(invoice_event))
    assert (waiting.status, waiting.error_code) == (
        SyncStatus.WAITING_DEPENDENCY, ErrorCode.UNMAPPED_ITEM)
    assert waiting.message is not None
    assert f"blueclerk-sync wizard map --account {acct} --item imp-i7" in waiting.message
    assert f"/v1/accounts/{acct}/mappings/imp-i7" in waiting.message
    assert "step 3" in waiting.message
    parked = world.parked(invoice_event.event_id)
    assert parked is not None and parked.reason == "unmapped_item"
    assert parked.waits_for == "mapping:imp-i7"
    assert "upsert_invoice" not in [c.op for c in world.provider(acct).calls]
    assert world.sink.sent == []  # not failed, not dead-lettered

    world.map_item(acct, "imp-i7")
    statuses = world.engine.drive_parked(acct, {"unmapped_item"}, {"mapping:imp-i7"})
    assert [(s.entity_type, s.status) for s in statuses] == [("invoice", SyncStatus.SYNCED)]
    assert world.parked(invoice_event.event_id) is None


def test_invoice_using_an_imported_item_without_account_syncs_on_freshbooks(
        sqlite_url: str) -> None:
    world = World(sqlite_url, provider_name="freshbooks")
    acct, f = world.account()
    _import_item_without_account(world, acct)
    assert only(world.process(f.customer("c1", "Ada"))).status is SyncStatus.SYNCED
    inv = build_invoice("inv7", "c1", "1007", "USD", "exclusive", [("imp-i7", "1", "5", "0", "0")])
    assert only(world.process(f.event(inv))).status is SyncStatus.SYNCED


def test_unmapped_item_event_says_what_to_map_and_where(world: World) -> None:
    acct, f = world.account()
    status = only(world.process(f.event(Item("i9", "Unmapped thing"))))
    assert status.error_code is ErrorCode.UNMAPPED_ITEM and status.message is not None
    assert f"blueclerk-sync wizard map --account {acct} --item i9" in status.message
    assert f"/v1/accounts/{acct}/mappings/i9" in status.message


UK_VAT = [ProviderTaxRate("20.0% S", "20.0% S", Decimal("20")),
          ProviderTaxRate("20.0% ECG", "20.0% ECG", Decimal("20")),
          ProviderTaxRate("5.0% R", "5.0% R", Decimal("5"))]


def _taxed_invoice(world: World, acct: str, f: EventFactory, rate: str, key: str | None,
                   name: str | None) -> ChangeEvent:
    world.map_item(acct, "i1")
    assert only(world.process(f.event(Item("i1", "Drain", unit_price=Decimal("10"))))
                ).status is SyncStatus.SYNCED
    assert only(world.process(f.customer("c1", "Ada"))).status is SyncStatus.SYNCED
    inv = build_invoice("inv1", "c1", "1001", "GBP", "exclusive",
                        [("i1", "2", "10", "0", rate)])
    lines = tuple(dataclasses.replace(li, tax_rate_id=key, tax_rate_name=name)
                  for li in inv.lines)
    return f.event(dataclasses.replace(inv, lines=lines))


def test_an_ambiguous_tax_rate_waits_for_its_mapping_then_is_sent(world: World) -> None:
    """Two company codes at 20% and no name to choose by: the invoice waits with
    unmapped_tax_rate, naming the line, the rate and what to run; the saved mapping
    re-drives it and the chosen code reaches the adapter."""
    acct, f = world.account()
    world.provider(acct).tax_rates = list(UK_VAT)
    event = _taxed_invoice(world, acct, f, "20", "vat-std", "VAT")
    waiting = only(world.process(event))
    assert (waiting.status, waiting.error_code) == (SyncStatus.WAITING_DEPENDENCY,
                                                    ErrorCode.UNMAPPED_TAX_RATE)
    assert waiting.message is not None
    for words in ("line 1", "VAT 20%", "vat-std", "20.0% S", "20.0% ECG", "wizard map-tax"):
        assert words in waiting.message, waiting.message
    parked = world.parked(event.event_id)
    assert parked is not None and parked.waits_for == "taxrate:vat-std"
    assert "upsert_invoice" not in [c.op for c in world.provider(acct).calls]

    with world.db.transaction() as s:
        repo.save_tax_mapping(s, acct, BlueClerkTaxRate("vat-std", "VAT", Decimal("20")),
                              UK_VAT[0], "user", "chosen by the user")
    statuses = world.engine.drive_parked(acct, {"unmapped_tax_rate"}, {"taxrate:vat-std"})
    assert [s.status for s in statuses] == [SyncStatus.SYNCED]
    assert world.provider(acct).taxes_sent[-1] == {"vat-std": UK_VAT[0]}


def test_a_tax_rate_matching_one_code_is_mapped_automatically_with_its_reason(
        world: World) -> None:
    acct, f = world.account()
    world.provider(acct).tax_rates = list(UK_VAT)
    event = _taxed_invoice(world, acct, f, "5", "vat-reduced", "Reduced rate")
    assert only(world.process(event)).status is SyncStatus.SYNCED
    assert world.provider(acct).taxes_sent[-1] == {"vat-reduced": UK_VAT[2]}
    with world.db.transaction() as s:
        row = repo.get_tax_mapping(s, acct, "vat-reduced")
        assert row is not None and row.matched_by == "auto"
        assert row.reason is not None and "5%" in row.reason and "5.0% R" in row.reason


def test_a_producer_without_tax_rate_ids_maps_by_percent(world: World) -> None:
    """v1 producers send only a percent: the rate is keyed by it ("rate:8.25")."""
    acct, f = world.account()  # US automated sales tax: every taxed line uses TAX
    event = _taxed_invoice(world, acct, f, "8.25", None, None)
    assert only(world.process(event)).status is SyncStatus.SYNCED
    sent = world.provider(acct).taxes_sent[-1]
    assert list(sent) == ["rate:8.25"] and sent["rate:8.25"].code == "TAX"


def test_a_payment_waiting_for_an_invoice_version_that_failed_ends_failed(
        world: World) -> None:
    """A payment taken against invoice version 2 waits while v2 is not in the books; when
    v2 fails for good, the payment ends with a final status instead of waiting for ever."""
    acct, f = world.account()
    v1 = _invoice_events(world, acct, f)
    assert only(world.process(f.customer("c1", "Ada"))).status is SyncStatus.SYNCED
    assert only(world.process(v1)).status is SyncStatus.SYNCED
    v2 = f.event(dataclasses.replace(v1.record, memo="second version"))
    payment = f.event(Payment("p1", "inv1", "c1", Decimal("5"), "USD", dt.date(2026, 11, 3),
                              invoice_version=v2.entity_version))
    waiting = only(world.process(payment))
    assert (waiting.status, waiting.error_code) == (SyncStatus.WAITING_DEPENDENCY,
                                                    ErrorCode.MISSING_DEPENDENCY)
    world.provider(acct).failures = [TotalMismatch(Decimal("21"), Decimal("22"), "USD", "")]
    failed = world.process(v2)
    assert only(failed).status is SyncStatus.FAILED
    assert payment.event_id in failed.redrive
    final = only(world.redrive(payment.event_id))
    assert (final.status, final.error_code) == (SyncStatus.FAILED,
                                                ErrorCode.MISSING_DEPENDENCY)
    assert final.message is not None and "version 2" in final.message
    assert world.parked(payment.event_id) is None


# ---- database work per event (issue 12) ------------------------------------------------------

def test_an_event_does_no_repeated_or_needless_database_work(world: World) -> None:
    """A customer create then update of an account with nothing parked: no DELETE of a
    parked row that was never there, no second read of the processed event or intent,
    no parked-event queries, and last_sync_at written for the first event only."""
    from sqlalchemy import event

    _acct, f = world.account()
    statements: list[str] = []
    event.listen(world.db.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: statements.append(" ".join(sql.split())))
    per_event: list[list[str]] = []
    for e in (f.customer("c1", "Ada"), f.customer("c1", "Ada Lovelace")):
        statements.clear()
        assert only(world.process(e)).status == SyncStatus.SYNCED
        per_event.append([s for s in statements if not s.startswith("BEGIN")])
    first, second = per_event

    def count(sql: list[str], prefix: str) -> int:
        return sum(s.startswith(prefix) for s in sql)

    for sql in per_event:
        assert count(sql, "DELETE FROM parked_events") == 0, sql
        # The dedupe read only (inside the first statement, repository.first_look).
        assert sum("FROM processed_events" in s for s in sql) == 1, sql
        # begin_intent inserts a first attempt without reading it first.
        assert count(sql, "SELECT intents") == 0, sql
        assert count(sql, "INSERT INTO intents") == 1, sql
        assert sum("FROM parked_events" in s for s in sql) == 1, sql  # one probe
    assert count(first, "UPDATE connections") == 1
    assert count(second, "UPDATE connections") == 0
    assert sum("FROM connections" in s for s in first + second) == 2  # once per event
    assert len(first) <= 8 and len(second) <= 7, (first, second)
