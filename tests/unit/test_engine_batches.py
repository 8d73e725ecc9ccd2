"""SyncEngine.process_batch over SQLite with a fake provider that has a batch endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from consumers.engine import BatchEvent, EngineResult
from providers import http
from providers.errors import (
    DuplicateName,
    ProviderError,
    Throttled,
    TransientProviderError,
    UnknownOutcome,
)
from providers.port import BatchWrite, ProviderRecord
from sandbox.scenario import EventFactory, build_invoice
from schemas.error_codes import ErrorCode
from schemas.records import ChangeEvent, Item
from schemas.status import SyncStatus
from state.models import DeadLetter, Intent
from tests.unit.test_engine_with_fakes import FakeProvider, World, payload


@dataclass
class BatchFake(FakeProvider):
    """FakeProvider plus write_batch. `answers`: per batch call, the outcome of each write
    by position (None: the record); `raises`: raised by the next batch calls, in order;
    `sends`: whether a raised error happens after the request went out (writes_sent)."""

    batch_size: int = 30
    batches: list[list[BatchWrite]] = field(default_factory=list)
    answers: list[dict[int, ProviderError]] = field(default_factory=list)
    raises: list[tuple[ProviderError, bool]] = field(default_factory=list)

    def write_batch(self, writes: Sequence[BatchWrite]) -> list[ProviderRecord | ProviderError]:
        self.batches.append(list(writes))
        if self.raises:
            error, sent = self.raises.pop(0)
            if sent:
                http._sent.count = http.writes_sent() + 1
            raise error
        http._sent.count = http.writes_sent() + 1
        errors = self.answers.pop(0) if self.answers else {}
        out: list[ProviderRecord | ProviderError] = []
        for n, w in enumerate(writes):
            if n in errors:
                out.append(errors[n])
                continue
            op = "batch_item" if isinstance(w.record, Item) else "batch_customer"
            out.append(self._call(op, w.record.id, w.link, w.write))
        return out


@pytest.fixture
def world(sqlite_url: str) -> World:
    return World(sqlite_url)


def tenant(world: World, **settings: bool) -> tuple[str, EventFactory, BatchFake]:
    acct, f = world.account(**settings)
    fake = BatchFake()
    world.providers[acct] = fake
    return acct, f, fake


def run(world: World, events: Sequence[ChangeEvent], attempt: int = 1) -> list[EngineResult]:
    return world.engine.process_batch([BatchEvent(e, payload(e), attempt, world.origin())
                                       for e in events])


def status_of(result: EngineResult) -> tuple[SyncStatus, ErrorCode | None]:
    (status,) = result.statuses
    return status.status, status.error_code


def intent_rows(world: World) -> dict[str, Intent]:
    with world.db.transaction() as s:
        return {i.entity_id: i for i in s.execute(select(Intent)).scalars()}


# ---- grouping and order ---------------------------------------------------------------------

def test_customers_and_items_of_a_burst_go_in_one_batch_request(world: World) -> None:
    acct, f, fake = tenant(world)
    for i in range(3):
        world.map_item(acct, f"i{i}")
    events = [f.customer(f"c{i}", f"Customer {i}") for i in range(5)] + \
        [f.event(Item(f"i{i}", f"Item {i}", unit_price=Decimal("2.50"))) for i in range(3)]
    results = run(world, events)
    assert [status_of(r) for r in results] == [(SyncStatus.SYNCED, None)] * 8
    assert [[w.record.id for w in b] for b in fake.batches] == [
        ["c0", "c1", "c2", "c3", "c4", "i0", "i1", "i2"]]
    assert [w.income_account_id for w in fake.batches[0]][5:] == ["79"] * 3
    assert fake.ops() == [("batch_customer", f"c{i}", False) for i in range(5)] + \
        [("batch_item", f"i{i}", False) for i in range(3)]
    for i in range(5):
        link = world.link(acct, "customer", f"c{i}")
        assert link is not None and link.last_applied_version == 1
    intents = intent_rows(world)
    assert {k: (v.state, v.attempts, v.operation) for k, v in intents.items()} == {
        **{f"c{i}": ("done", 1, "create") for i in range(5)},
        **{f"i{i}": ("done", 1, "create") for i in range(3)}}


def test_writes_go_in_requests_of_batch_size_and_a_lone_rest_is_sent_alone(
        world: World) -> None:
    _acct, f, fake = tenant(world)
    fake.batch_size = 3
    results = run(world, [f.customer(f"c{i}", f"C{i}") for i in range(7)])
    assert all(status_of(r) == (SyncStatus.SYNCED, None) for r in results)
    assert [len(b) for b in fake.batches] == [3, 3]
    assert fake.ops()[-1] == ("upsert_customer", "c6", False)  # the seventh, alone


def test_a_record_twice_in_a_batch_ends_with_its_second_change(world: World) -> None:
    acct, f, fake = tenant(world)
    first = f.customer("c1", "Ada")
    other = f.customer("c2", "Grace")
    second = f.customer("c1", "Ada Lovelace")
    results = run(world, [first, other, second])
    assert [(r.statuses[0].status, r.statuses[0].operation) for r in results] == [
        (SyncStatus.SYNCED, "create"), (SyncStatus.SYNCED, "create"),
        (SyncStatus.SYNCED, "update")]
    # The first change went in the batch, the second after it, on the record it created.
    assert fake.ops() == [("batch_customer", "c1", False), ("batch_customer", "c2", False),
                          ("upsert_customer", "c1", True)]
    link = world.link(acct, "customer", "c1")
    assert link is not None and link.last_applied_version == 2
    assert link.provider_version == "1"  # created at 0, updated once


def test_an_invoice_before_its_customer_in_the_batch_finds_it_linked(world: World) -> None:
    acct, f, fake = tenant(world)
    world.map_item(acct, "i1")
    invoice = f.event(build_invoice("inv1", "c1", "1001", "USD", "exclusive",
                                    [("i1", "2", "10", "0", "5")]))
    customer = f.customer("c1", "Ada")
    item = f.event(Item("i1", "Drain", unit_price=Decimal("10")))
    results = run(world, [invoice, customer, item])
    assert [status_of(r)[0] for r in results] == [SyncStatus.SYNCED] * 3
    # Customer and item once each (in the batch), then the invoice on their ids.
    assert fake.ops() == [("batch_customer", "c1", False), ("batch_item", "i1", False),
                          ("upsert_invoice", "inv1", False)]


def test_redelivered_events_in_a_batch_are_no_ops(world: World) -> None:
    _acct, f, fake = tenant(world)
    events = [f.customer(f"c{i}", f"C{i}") for i in range(4)]
    run(world, events)
    calls = len(fake.calls)
    again = run(world, [*events, events[0]])
    assert [r.statuses for r in again] == [()] * 5
    assert all(r.retry_after_s is None for r in again)
    assert len(fake.calls) == calls and len(fake.batches) == 1


def test_gates_and_parks_are_decided_for_each_event_of_a_batch(world: World) -> None:
    acct, f, fake = tenant(world)
    world.map_item(acct, "i1")
    run(world, [f.customer("c1", "Ada"), f.customer("c2", "Grace")])
    stale = f.event(f.customer("c1", "x").record, version=1)
    unchanged = f.customer("c2", "Grace")
    unmapped = f.event(Item("i2", "Pipe"))
    mapped = f.event(Item("i1", "Drain"))
    fresh = f.customer("c3", "Edsger")
    results = run(world, [stale, unchanged, unmapped, mapped, fresh])
    assert [status_of(r) for r in results] == [
        (SyncStatus.SKIPPED, ErrorCode.STALE_VERSION),
        (SyncStatus.SKIPPED, ErrorCode.UNCHANGED),
        (SyncStatus.WAITING_DEPENDENCY, ErrorCode.UNMAPPED_ITEM),
        (SyncStatus.SYNCED, None), (SyncStatus.SYNCED, None)]
    assert [w.record.id for w in fake.batches[-1]] == ["i1", "c3"]
    parked = world.parked(unmapped.event_id)
    assert parked is not None and parked.waits_for == "mapping:i2"


def test_a_turned_off_entity_is_skipped_in_a_batch(world: World) -> None:
    _acct, f, fake = tenant(world, sync_items=False)
    results = run(world, [f.customer("c1", "A"), f.event(Item("i1", "X")),
                          f.customer("c2", "B")])
    assert [status_of(r) for r in results] == [
        (SyncStatus.SYNCED, None), (SyncStatus.SKIPPED, ErrorCode.SYNC_DISABLED),
        (SyncStatus.SYNCED, None)]
    assert [[w.record.id for w in b] for b in fake.batches] == [["c1", "c2"]]


# ---- outcomes and failures ------------------------------------------------------------------

def test_per_record_outcomes_each_take_their_own_path(world: World) -> None:
    """Applied, refused (permanent: failed + dead-letter row), transient (retry); the
    event behind them in the batch (an invoice) waits for the retry, unspent."""
    acct, f, fake = tenant(world)
    fake.answers = [{1: DuplicateName("name taken", status=400),
                     2: TransientProviderError("busy", status=503)}]
    events = [f.customer("c1", "A"), f.customer("c2", "B"), f.customer("c3", "C"),
              f.customer("c1", "A2")]
    results = run(world, events)
    assert status_of(results[0]) == (SyncStatus.SYNCED, None)
    assert status_of(results[1]) == (SyncStatus.FAILED, ErrorCode.DUPLICATE_NAME)
    assert status_of(results[2]) == (SyncStatus.RETRYING, ErrorCode.PROVIDER_UNAVAILABLE)
    assert results[2].retry_after_s is not None and results[2].spend_attempt
    assert results[3].statuses == () and results[3].spend_attempt is False
    assert results[3].retry_after_s is not None
    assert fake.ops() == [("batch_customer", "c1", False)]  # c1's update did not run
    with world.db.transaction() as s:
        (dead,) = s.execute(select(DeadLetter)).scalars()
        assert (dead.entity_id, dead.error_code) == ("c2", "duplicate_name")
    assert world.link(acct, "customer", "c2") is None


def test_a_whole_call_failure_retries_the_batch_and_the_retry_looks_records_up(
        world: World) -> None:
    _acct, f, fake = tenant(world)
    fake.raises = [(UnknownOutcome("timed out; may have been applied"), True)]
    events = [f.customer(f"c{i}", f"C{i}") for i in range(3)]
    first = run(world, events)
    assert [status_of(r) for r in first] == [(SyncStatus.RETRYING, ErrorCode.TIMEOUT)] * 3
    assert all(r.retry_after_s is not None and r.spend_attempt for r in first)
    second = run(world, events, attempt=2)
    assert [status_of(r)[0] for r in second] == [SyncStatus.SYNCED] * 3
    assert [w.write.after_unknown_outcome for w in fake.batches[1]] == [True] * 3


def test_our_own_limiter_defers_a_batch_without_spending_a_lookup(world: World) -> None:
    _acct, f, fake = tenant(world)
    fake.raises = [(Throttled("local", retry_after=0.2, status=None), False)]
    events = [f.customer(f"c{i}", f"C{i}") for i in range(3)]
    first = run(world, events)
    assert [(r.statuses, r.spend_attempt) for r in first] == [((), False)] * 3
    assert first[0].retry_after_s == pytest.approx(0.2)
    assert {i.state for i in intent_rows(world).values()} == {"unsent"}
    run(world, events)
    assert [w.write.after_unknown_outcome for w in fake.batches[1]] == [False] * 3
    assert {i.state for i in intent_rows(world).values()} == {"done"}


def test_a_single_event_own_throttle_releases_its_intent_but_a_timeout_does_not(
        world: World) -> None:
    acct, f = world.account()
    provider: FakeProvider = world.provider(acct)
    provider.failures = [Throttled("local", retry_after=0.1, status=None)]
    event = f.customer("c1", "Ada")
    assert world.process(event).spend_attempt is False
    world.process(event)
    assert [c.write.after_unknown_outcome for c in provider.calls] == [False, False]

    timed_out = f.customer("c2", "Grace")
    provider.failures = [UnknownOutcome("timed out")]
    world.process(timed_out)
    world.process(timed_out, attempt=2)
    assert [c.write.after_unknown_outcome for c in provider.calls[2:]] == [False, True]


def test_a_record_our_limiter_held_back_inside_a_batch_is_not_looked_up(
        world: World) -> None:
    """A batch taking several requests (Xero: contacts, then items) whose later request
    our own limiter stopped: those records carry Throttled(status=None), were never sent,
    and their retry must not look them up as if they might have landed."""
    _acct, f, fake = tenant(world)
    fake.answers = [{1: Throttled("local", retry_after=0.1, status=None)}]
    events = [f.customer("c0", "C0"), f.customer("c1", "C1")]
    first = run(world, events)
    assert status_of(first[0]) == (SyncStatus.SYNCED, None)
    assert first[1].statuses == () and first[1].spend_attempt is False
    assert intent_rows(world)["c1"].state == "unsent"
    world.engine.process(events[1], payload(events[1]))
    assert fake.calls[-1].write.after_unknown_outcome is False


def test_an_own_throttle_after_a_write_went_out_keeps_the_intent_uncertain(
        world: World) -> None:
    _acct, f, fake = tenant(world)
    fake.raises = [(Throttled("local", retry_after=0.1, status=None), True)]
    events = [f.customer(f"c{i}", f"C{i}") for i in range(2)]
    run(world, events)
    run(world, events)
    assert [w.write.after_unknown_outcome for w in fake.batches[1]] == [True, True]


# ---- database work ---------------------------------------------------------------------------

def test_a_batch_costs_a_few_statements_not_a_few_per_event(world: World) -> None:
    """20 new customers: the planning transaction reads connection, processed events,
    parked probe, settings, links, snapshots and intents once each and inserts snapshots
    and intents; the outcome transaction reads links and writes links, intents, processed
    events, statuses and last_sync_at: 14 statements besides the statuses, whatever the
    size (the single path makes about 15 per event)."""
    _acct, f, _fake = tenant(world)
    statements: list[str] = []
    sa_event.listen(world.db.engine, "before_cursor_execute",
                    lambda _c, _cur, sql, *_: statements.append(" ".join(sql.split())))
    results = run(world, [f.customer(f"c{i}", f"C{i}") for i in range(20)])
    assert all(status_of(r)[0] is SyncStatus.SYNCED for r in results)
    work = [s for s in statements if not s.startswith(("BEGIN", "COMMIT"))]
    # The statuses too: one executemany into the outbox for the batch, not one per event.
    per_batch = [s for s in work if not s.startswith("INSERT INTO outbox")]
    assert len(per_batch) <= 14, per_batch
    assert len(work) - len(per_batch) == 1
    assert sum(s.startswith("INSERT INTO processed_events") for s in work) == 1, work
    assert sum(s.startswith("INSERT INTO entity_links") for s in work) == 1, work
    assert sum(s.startswith("SELECT processed_events") for s in work) == 1, work
