"""SyncEngine.process_batch: a record's later changes in a batch go in further rounds of
batch requests, each after the round before is recorded (issue 12). On SQLite and
PostgreSQL: the batch path's statements (upserts, RETURNING, IN lists) differ by dialect."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select

from providers.errors import (
    PermanentProviderError,
    Throttled,
    TransientProviderError,
    UnknownOutcome,
)
from sandbox.scenario import build_invoice
from schemas.error_codes import ErrorCode
from schemas.records import Item
from schemas.status import SyncStatus
from state.models import Intent
from tests.unit.test_engine_batches import run, status_of, tenant
from tests.unit.test_engine_with_fakes import World


@pytest.fixture
def world(database_url: str) -> World:
    return World(database_url)


def intents(world: World) -> list[tuple[str, str, str, int]]:
    with world.db.transaction() as s:
        return sorted((i.entity_id, i.operation, i.state, i.attempts)
                      for i in s.execute(select(Intent)).scalars())


def test_later_changes_of_several_records_go_in_further_batch_requests_in_order(
        world: World) -> None:
    acct, f, fake = tenant(world)
    events = [f.customer(f"c{i}", f"C{i} v{v}") for v in (1, 2, 3) for i in (1, 2)]
    results = run(world, events)
    assert [(r.statuses[0].status, r.statuses[0].operation) for r in results] == \
        [(SyncStatus.SYNCED, "create")] * 2 + [(SyncStatus.SYNCED, "update")] * 4
    # One request per round; each round updates the record the round before created.
    assert [[(w.record.id, getattr(w.record, "display_name", None), w.link is not None)
             for w in b] for b in fake.batches] == [
        [("c1", "C1 v1", False), ("c2", "C2 v1", False)],
        [("c1", "C1 v2", True), ("c2", "C2 v2", True)],
        [("c1", "C1 v3", True), ("c2", "C2 v3", True)]]
    assert [w.link.version for w in fake.batches[2] if w.link] == ["1", "1"]
    for i in (1, 2):
        link = world.link(acct, "customer", f"c{i}")
        assert link is not None and link.last_applied_version == 3
        assert link.provider_version == "2"
    # One intent per change, each begun once and done.
    assert intents(world) == sorted(
        [(f"c{i}", "create", "done", 1) for i in (1, 2)]
        + [(f"c{i}", "update", "done", 1) for i in (1, 2)] * 2)


def test_a_later_change_behind_an_invoice_runs_alone_after_it(world: World) -> None:
    """Moving a customer's second change ahead of an invoice that arrived before it
    (a deactivation, say) could fail the invoice: it waits for the single path."""
    acct, f, fake = tenant(world)
    world.map_item(acct, "i1")
    item = f.event(Item("i1", "Drain", unit_price=Decimal("10")))
    events = [f.customer("c1", "Ada"), item,
              f.event(build_invoice("inv1", "c1", "1001", "USD", "exclusive",
                                    [("i1", "2", "10", "0", "5")])),
              f.customer("c1", "Ada L"), f.event(Item("i1", "Drain cleaning",
                                                      unit_price=Decimal("10")))]
    results = run(world, events)
    assert [status_of(r)[0] for r in results] == [SyncStatus.SYNCED] * 5
    assert fake.ops() == [("batch_customer", "c1", False), ("batch_item", "i1", False),
                          ("upsert_invoice", "inv1", False),
                          ("upsert_customer", "c1", True), ("upsert_item", "i1", True)]
    assert len(fake.batches) == 1


def test_a_retry_in_a_round_holds_the_later_rounds_unspent(world: World) -> None:
    _acct, f, fake = tenant(world)
    fake.answers = [{1: TransientProviderError("busy", status=503)}]
    events = [f.customer("c1", "A"), f.customer("c2", "B"), f.customer("c1", "A2"),
              f.customer("c2", "B2")]
    results = run(world, events)
    assert status_of(results[0]) == (SyncStatus.SYNCED, None)
    assert status_of(results[1]) == (SyncStatus.RETRYING, ErrorCode.PROVIDER_UNAVAILABLE)
    for later in results[2:]:
        assert later.statuses == () and later.spend_attempt is False
        assert later.retry_after_s is not None
    assert len(fake.batches) == 1 and len(fake.calls) == 1


def test_a_request_refused_whole_holds_the_later_changes_of_its_records(
        world: World) -> None:
    """The first request of a round fails as a whole (permanent): the round's other
    request is held unsent, and so is a later change of one of its records, which must
    not reach the books before that record's first change."""
    acct, f, fake = tenant(world)
    fake.batch_size = 2
    fake.raises = [(PermanentProviderError("refused", status=400), True)]
    events = [f.customer(f"c{i}", f"C{i}") for i in range(4)] + [f.customer("c2", "C2 v2")]
    results = run(world, events)
    assert [status_of(r)[0] for r in results[:2]] == [SyncStatus.FAILED] * 2
    for held in results[2:]:
        assert held.statuses == () and held.spend_attempt is False
        assert held.retry_after_s is not None
    assert len(fake.batches) == 1 and fake.ops() == []
    assert world.link(acct, "customer", "c2") is None


def test_a_later_change_of_a_parked_record_parks_behind_it_in_its_round(
        world: World) -> None:
    acct, f, fake = tenant(world)
    world.map_item(acct, "i2")
    events = [f.event(Item("i1", "Pipe")), f.event(Item("i2", "Drain")),
              f.event(Item("i1", "Pipe 2")), f.event(Item("i2", "Drain 2"))]
    results = run(world, events)
    assert [status_of(r) for r in results] == [
        (SyncStatus.WAITING_DEPENDENCY, ErrorCode.UNMAPPED_ITEM),
        (SyncStatus.SYNCED, None),
        (SyncStatus.WAITING_DEPENDENCY, ErrorCode.MISSING_DEPENDENCY),
        (SyncStatus.SYNCED, None)]
    assert fake.ops() == [("upsert_item", "i2", False), ("upsert_item", "i2", True)]
    parked = world.parked(events[2].event_id)
    assert parked is not None and parked.waits_for == "item:i1"


def test_creates_then_updates_cost_a_few_statements_per_round(world: World) -> None:
    """The throughput benchmark's shape: 20 creates, then an update of each, in one
    batch: two rounds of a few statements each, not the single path's per update."""
    _acct, f, fake = tenant(world)
    statements: list[str] = []
    sa_event.listen(world.db.engine, "before_cursor_execute",
                    lambda _c, _cur, sql, *_: statements.append(" ".join(sql.split())))
    events = [f.customer(f"c{i}", f"C{i}") for i in range(20)] + \
        [f.customer(f"c{i}", f"C{i} moved") for i in range(20)]
    results = run(world, events)
    assert [status_of(r)[0] for r in results] == [SyncStatus.SYNCED] * 40
    assert [len(b) for b in fake.batches] == [20, 20]
    work = [s for s in statements if not s.startswith(("BEGIN", "COMMIT"))]
    assert len(work) <= 2 * 15, work


def test_a_retried_round_begins_its_intents_again_as_the_single_path_does(
        world: World) -> None:
    """After a whole-call unknown outcome the retry's writes are uncertain (looked up);
    after our own limiter stopped the call before sending, they are not; every attempt
    counts once."""
    _acct, f, fake = tenant(world)
    fake.raises = [(UnknownOutcome("timed out; may have been applied"), True),
                   (Throttled("local", retry_after=0.1, status=None), False)]
    events = [f.customer(f"c{i}", f"C{i}") for i in range(3)]
    run(world, events)
    assert intents(world) == [(f"c{i}", "create", "pending", 1) for i in range(3)]
    run(world, events, attempt=2)
    assert [w.write.after_unknown_outcome for w in fake.batches[1]] == [True] * 3
    assert intents(world) == [(f"c{i}", "create", "pending", 2) for i in range(3)]
    results = run(world, events, attempt=2)
    assert [status_of(r)[0] for r in results] == [SyncStatus.SYNCED] * 3
    assert [w.write.after_unknown_outcome for w in fake.batches[2]] == [True] * 3
    assert intents(world) == [(f"c{i}", "create", "done", 3) for i in range(3)]

    others = [f.customer(f"d{i}", f"D{i}") for i in range(2)]
    fake.raises = [(Throttled("local", retry_after=0.1, status=None), False)]
    run(world, others)
    assert [i[2:] for i in intents(world) if i[0].startswith("d")] == [("unsent", 1)] * 2
    run(world, others)
    assert [w.write.after_unknown_outcome for w in fake.batches[-1]] == [False, False]
    assert [i[2:] for i in intents(world) if i[0].startswith("d")] == [("done", 2)] * 2


def test_an_uncertain_intent_stays_uncertain_when_a_later_attempt_sends_nothing(
        world: World) -> None:
    """Attempt 1 times out (it may have landed); attempt 2 is stopped by our own limiter
    before sending; attempt 3 must still look the record up before creating it."""
    acct, f = world.account()
    provider = world.provider(acct)
    provider.failures = [UnknownOutcome("timed out"),
                         Throttled("local", retry_after=0.1, status=None)]
    event = f.customer("c1", "Ada")
    for attempt in (1, 2, 3):
        world.process(event, attempt=attempt)
    assert [c.write.after_unknown_outcome for c in provider.calls] == [False, True, True]

    _acct, f, fake = tenant(world)
    fake.raises = [(UnknownOutcome("timed out"), True),
                   (Throttled("local", retry_after=0.1, status=None), False)]
    events = [f.customer(f"c{i}", f"C{i}") for i in range(2)]
    for attempt in (1, 2, 3):
        run(world, events, attempt=attempt)
    assert [[w.write.after_unknown_outcome for w in b] for b in fake.batches] == [
        [False, False], [True, True], [True, True]]
