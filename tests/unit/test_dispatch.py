"""Unit tests for consumers.dispatch.KeyOrderedDispatcher (real threads, plain fakes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.dispatch import (
    DONE,
    NOT_TAKEN,
    BatchOutcome,
    Done,
    KeyOrderedDispatcher,
    Outcome,
    RetryLater,
)

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Work:
    key: str
    seq: int
    partition: int = 0
    delay_ms: int = 0
    retries: int = 0  # how many times the handler answers RetryLater first


class Recorder:
    """Thread-safe event log plus in-flight accounting for a fake handler."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, Work]] = []
        self.done: list[tuple[Work, Done | BaseException]] = []
        self.attempts: dict[Work, int] = {}
        self.active = 0
        self.high_water = 0
        self.active_keys: set[str] = set()
        self.key_overlap = False

    def enter(self, work: Work) -> int:
        with self.lock:
            self.events.append(("start", work))
            self.active += 1
            self.high_water = max(self.high_water, self.active)
            if work.key in self.active_keys:
                self.key_overlap = True
            self.active_keys.add(work.key)
            self.attempts[work] = self.attempts.get(work, 0) + 1
            return self.attempts[work]

    def leave(self, work: Work) -> None:
        with self.lock:
            self.active -= 1
            self.active_keys.discard(work.key)

    def on_done(self, work: Work, outcome: Done | BaseException) -> None:
        with self.lock:
            self.events.append(("done", work))
            self.done.append((work, outcome))

    def done_works(self) -> list[Work]:
        with self.lock:
            return [w for w, _ in self.done]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.002)


@pytest.fixture
def closing() -> Iterator[list[KeyOrderedDispatcher[Work]]]:
    """Dispatchers appended here are closed at teardown even if the test fails."""
    made: list[KeyOrderedDispatcher[Work]] = []
    yield made
    for dispatcher in made:
        dispatcher.close(timeout=5)


def gated_handler(rec: Recorder, gate: threading.Event) -> Callable[[Work], Outcome]:
    def handler(work: Work) -> Outcome:
        rec.enter(work)
        try:
            gate.wait(10)
        finally:
            rec.leave(work)
        return DONE

    return handler


# ------------------------------------------------------------------ ordering


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(
        st.tuples(
            st.sampled_from("abcde"),
            st.integers(min_value=0, max_value=3),
            st.integers(min_value=0, max_value=1),
        ),
        max_size=30,
    ),
    cap=st.integers(min_value=1, max_value=4),
)
def test_per_key_order_preserved_under_random_delays(
    specs: list[tuple[str, int, int]], cap: int
) -> None:
    rec = Recorder()

    def handler(work: Work) -> Outcome:
        attempt = rec.enter(work)
        try:
            time.sleep(work.delay_ms / 1000)
        finally:
            rec.leave(work)
        return RetryLater(0.001) if attempt <= work.retries else DONE

    dispatcher = KeyOrderedDispatcher(handler, cap, rec.on_done)
    try:
        submitted = [Work(key, i, delay_ms=d, retries=r) for i, (key, d, r) in enumerate(specs)]
        for work in submitted:
            dispatcher.submit(work.key, work)
        assert dispatcher.drain(timeout=20)
        assert dispatcher.pending() == 0
    finally:
        dispatcher.close(timeout=5)

    done = rec.done_works()
    assert sorted(done, key=lambda w: w.seq) == submitted  # on_done exactly once each
    assert not rec.key_overlap  # never two items of one key in the handler at once
    assert rec.high_water <= cap
    for key in "abcde":
        expected = [w.seq for w in submitted if w.key == key]
        assert [w.seq for w in done if w.key == key] == expected
        # Handler start order per key too (retries repeat an item, never reorder).
        starts = [w.seq for kind, w in rec.events if kind == "start" and w.key == key]
        assert sorted(starts) == starts
    for work in submitted:
        assert rec.attempts[work] == work.retries + 1


def test_on_done_completes_before_next_item_of_key_starts(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()

    def slow_on_done(work: Work, outcome: Done | BaseException) -> None:
        time.sleep(0.02)
        rec.on_done(work, outcome)

    def handler(work: Work) -> Outcome:
        rec.enter(work)
        rec.leave(work)
        return DONE

    dispatcher = KeyOrderedDispatcher(handler, 4, slow_on_done)
    closing.append(dispatcher)
    works = [Work("k", i) for i in range(5)]
    for work in works:
        dispatcher.submit("k", work)
    assert dispatcher.drain(10)
    expected: list[tuple[str, Work]] = []
    for work in works:
        expected += [("start", work), ("done", work)]
    assert rec.events == expected


# --------------------------------------------------------------------- cap


def test_in_flight_never_exceeds_cap_and_reaches_it(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 3, rec.on_done)
    closing.append(dispatcher)
    for i in range(24):
        dispatcher.submit(f"key{i % 12}", Work(f"key{i % 12}", i))

    wait_until(lambda: rec.active == 3)
    time.sleep(0.1)  # give a 4th item every chance to start if the cap leaked
    assert rec.active == 3
    assert dispatcher.in_flight() == 3
    assert dispatcher.pending() == 24
    gate.set()
    assert dispatcher.drain(10)
    assert rec.high_water == 3
    assert len(rec.done) == 24


# ------------------------------------------------------------------- retry


def test_retrying_key_does_not_delay_other_keys(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    """cap=1: if a deferred retry held the only worker, nothing else could run."""
    rec = Recorder()
    slow_first = Work("slow", 0, retries=2)
    slow_second = Work("slow", 1)
    fast = [Work(f"fast{i}", 10 + i) for i in range(10)]

    def handler(work: Work) -> Outcome:
        attempt = rec.enter(work)
        rec.leave(work)
        return RetryLater(0.5) if attempt <= work.retries else DONE

    dispatcher = KeyOrderedDispatcher(handler, 1, rec.on_done)
    closing.append(dispatcher)
    dispatcher.submit("slow", slow_first)
    dispatcher.submit("slow", slow_second)
    wait_until(lambda: rec.attempts.get(slow_first) == 1)
    for work in fast:
        dispatcher.submit(work.key, work)
    assert dispatcher.pending_for("slow") == 2  # blocked, still pending while deferred
    assert dispatcher.drain(10)

    order = rec.done_works()
    assert order[-2:] == [slow_first, slow_second]  # key order kept across retries
    assert set(order[:-2]) == set(fast)  # everything else finished while "slow" waited
    assert rec.attempts[slow_first] == 3
    # slow_second was not even started until slow_first completed.
    first_done = rec.events.index(("done", slow_first))
    assert rec.events.index(("start", slow_second)) > first_done


def test_retry_later_validates_delay() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            RetryLater(bad)
    assert RetryLater(0).delay_s == 0


# ----------------------------------------------------------------- abandon


def test_abandon_removes_queued_work_only(closing: list[KeyOrderedDispatcher[Work]]) -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 1, rec.on_done)
    closing.append(dispatcher)
    blocker = Work("A", 0, partition=1)
    dispatcher.submit("A", blocker)
    wait_until(lambda: rec.active == 1)
    queued = [
        Work("A", 1, partition=1),
        Work("A", 2, partition=0),
        Work("A", 3, partition=1),
        Work("B", 4, partition=1),
        Work("B", 5, partition=1),
        Work("C", 6, partition=0),
    ]
    for work in queued:
        dispatcher.submit(work.key, work)
    assert dispatcher.pending() == 7

    abandoned = dispatcher.abandon(lambda w: w.partition == 1)
    assert abandoned == [queued[0], queued[2], queued[3], queued[4]]  # in-flight blocker kept
    assert dispatcher.pending() == 3
    assert dispatcher.pending_for("A") == 2
    assert dispatcher.pending_for("B") == 0

    gate.set()
    assert dispatcher.drain(10)
    assert sorted(rec.done_works(), key=lambda w: w.seq) == [blocker, queued[1], queued[5]]


def test_abandon_with_raising_predicate_changes_nothing(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 1, rec.on_done)
    closing.append(dispatcher)
    for i in range(3):
        dispatcher.submit("A", Work("A", i))
    wait_until(lambda: rec.active == 1)

    def predicate(work: Work) -> bool:
        if work.seq == 2:
            raise RuntimeError("boom")
        return True

    with pytest.raises(RuntimeError):
        dispatcher.abandon(predicate)
    assert dispatcher.pending() == 3
    gate.set()
    assert dispatcher.drain(10)
    assert [w.seq for w in rec.done_works()] == [0, 1, 2]


def test_abandon_removes_deferred_work_and_unblocks_key(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    throttled = Work("A", 0, retries=100)
    after = Work("A", 1)

    def handler(work: Work) -> Outcome:
        attempt = rec.enter(work)
        rec.leave(work)
        return RetryLater(30) if attempt <= work.retries else DONE

    dispatcher = KeyOrderedDispatcher(handler, 2, rec.on_done)
    closing.append(dispatcher)
    dispatcher.submit("A", throttled)
    dispatcher.submit("A", after)
    wait_until(lambda: rec.attempts.get(throttled) == 1 and dispatcher.in_flight() == 0)
    assert dispatcher.pending() == 2

    assert dispatcher.abandon(lambda w: w is throttled) == [throttled]
    assert dispatcher.drain(5)  # would take 30 s if the deferred item were still there
    assert rec.done_works() == [after]
    assert rec.attempts[throttled] == 1


# ----------------------------------------------------- drain / idle / quiesce


def test_drain_times_out_then_succeeds(closing: list[KeyOrderedDispatcher[Work]]) -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 2, rec.on_done)
    closing.append(dispatcher)
    assert dispatcher.drain(0) is True  # nothing submitted
    dispatcher.submit("A", Work("A", 0))
    assert dispatcher.drain(0.05) is False
    gate.set()
    assert dispatcher.drain(5) is True
    assert dispatcher.pending() == 0
    assert len(rec.done) == 1


def test_wait_idle_waits_for_matching_in_flight_work(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 2, rec.on_done)
    closing.append(dispatcher)
    revoked = Work("A", 0, partition=1)
    dispatcher.submit("A", revoked)
    wait_until(lambda: rec.active == 1)
    assert dispatcher.wait_idle(lambda w: w.partition == 1, timeout=0.05) is False
    assert dispatcher.wait_idle(lambda w: w.partition == 0, timeout=0) is True
    threading.Timer(0.05, gate.set).start()
    assert dispatcher.wait_idle(lambda w: w.partition == 1, timeout=5) is True
    assert rec.done_works() == [revoked]  # on_done already returned


def test_quiesce_also_abandons_in_flight_work_that_asks_to_retry(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    gate = threading.Event()

    def handler(work: Work) -> Outcome:
        attempt = rec.enter(work)
        try:
            gate.wait(10)
        finally:
            rec.leave(work)
        return RetryLater(0.2) if attempt <= work.retries else DONE

    dispatcher = KeyOrderedDispatcher(handler, 2, rec.on_done)
    closing.append(dispatcher)
    in_flight_retry = Work("A", 0, partition=1, retries=5)
    queued_revoked = Work("A", 1, partition=1)
    kept = Work("A", 2, partition=0)
    dispatcher.submit("A", in_flight_retry)
    dispatcher.submit("A", queued_revoked)
    dispatcher.submit("A", kept)
    wait_until(lambda: rec.active == 1)

    threading.Timer(0.05, gate.set).start()
    result = dispatcher.quiesce(lambda w: w.partition == 1, timeout=5)
    assert result.idle is True
    assert result.abandoned == [queued_revoked, in_flight_retry]
    assert dispatcher.drain(5)
    assert rec.done_works() == [kept]  # never on_done for withdrawn work


def test_quiesce_times_out(closing: list[KeyOrderedDispatcher[Work]]) -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 1, rec.on_done)
    closing.append(dispatcher)
    dispatcher.submit("A", Work("A", 0))
    wait_until(lambda: rec.active == 1)
    result = dispatcher.quiesce(lambda w: True, timeout=0.05)
    assert result.idle is False
    assert result.abandoned == []
    gate.set()


# ------------------------------------------------------------ failure modes


def test_handler_exception_and_bad_return_reach_on_done(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()

    def handler(work: Work) -> Outcome:
        if work.seq == 0:
            raise KeyError("boom")
        if work.seq == 1:
            return None  # type: ignore[return-value]  # a handler that forgot to return
        return Done(result=work.seq * 10)

    dispatcher = KeyOrderedDispatcher(handler, 2, rec.on_done)
    closing.append(dispatcher)
    for i in range(3):
        dispatcher.submit("A", Work("A", i))
    assert dispatcher.drain(5)
    outcomes = [outcome for _, outcome in rec.done]
    assert isinstance(outcomes[0], KeyError)
    assert isinstance(outcomes[1], TypeError)
    assert outcomes[2] == Done(result=20)


def test_on_done_exception_does_not_wedge_dispatcher(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    calls: list[int] = []

    def on_done(work: Work, outcome: Done | BaseException) -> None:
        calls.append(work.seq)
        raise RuntimeError("callback bug")

    dispatcher = KeyOrderedDispatcher(lambda w: DONE, 1, on_done)
    closing.append(dispatcher)
    for i in range(3):
        dispatcher.submit("A", Work("A", i))
    assert dispatcher.drain(5)
    assert calls == [0, 1, 2]


# ------------------------------------------------------------------- close


def test_close_abandons_queued_waits_for_in_flight_and_rejects_submit() -> None:
    rec = Recorder()
    gate = threading.Event()
    dispatcher = KeyOrderedDispatcher(gated_handler(rec, gate), 1, rec.on_done)
    running = Work("A", 0)
    dispatcher.submit("A", running)
    wait_until(lambda: rec.active == 1)
    queued = [Work("A", 1), Work("B", 2)]
    for work in queued:
        dispatcher.submit(work.key, work)

    threading.Timer(0.05, gate.set).start()
    result = dispatcher.close(timeout=5)
    assert result.idle is True
    assert result.abandoned == queued
    assert rec.done_works() == [running]
    assert dispatcher.pending() == 0
    with pytest.raises(RuntimeError):
        dispatcher.submit("A", Work("A", 3))
    assert dispatcher.close().abandoned == []  # idempotent


def test_context_manager_and_invalid_cap() -> None:
    rec = Recorder()
    with KeyOrderedDispatcher(lambda w: DONE, 2, rec.on_done) as dispatcher:
        dispatcher.submit("A", Work("A", 0))
        assert dispatcher.drain(5)
    assert len(rec.done) == 1
    with pytest.raises(ValueError):
        KeyOrderedDispatcher(lambda w: DONE, 0, rec.on_done)


# ------------------------------------------------------------------- batches


@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(st.tuples(st.sampled_from("abc"), st.integers(min_value=0, max_value=2)),
                   max_size=30),
    answers=st.lists(st.sampled_from(["done", "retry", "not_taken"]), min_size=1,
                     max_size=40),
    cap=st.integers(min_value=1, max_value=3),
    max_batch=st.integers(min_value=2, max_value=5),
)
def test_batches_keep_per_key_order_and_complete_each_item_once(
    specs: list[tuple[str, int]], answers: list[str], cap: int, max_batch: int
) -> None:
    """Whatever a batch handler answers per item, every item completes exactly once, an
    item is first offered only after every earlier item of its key was, and nothing is
    completed before every earlier item of its key was offered."""
    rec = Recorder()
    offered: dict[str, list[int]] = {}  # per key: seq of each first offer, in time order
    answer_no = iter(range(10**6))
    submitted: list[Work] = []
    out_of_order: list[list[Work]] = []

    def check_prefix(works: list[Work]) -> None:
        # A run takes the key's oldest unfinished items, in order: an item put back (retry
        # or not taken) is never overtaken by one behind it.
        with rec.lock:
            finished = {w for w, _ in rec.done}
            waiting = [w for w in submitted if w.key == works[0].key and w not in finished]
            if waiting[: len(works)] != works:
                out_of_order.append(works)

    def first_offer(work: Work) -> None:
        with rec.lock:
            seen = offered.setdefault(work.key, [])
            if work.seq not in seen:
                seen.append(work.seq)

    def handler(work: Work) -> Outcome:
        check_prefix([work])
        first_offer(work)
        attempt = rec.enter(work)
        rec.leave(work)
        return RetryLater(0.001) if attempt <= work.retries else DONE

    def batch_handler(works: list[Work]) -> list[BatchOutcome]:
        assert len({w.key for w in works}) == 1 and 1 < len(works) <= max_batch
        check_prefix(works)
        outcomes: list[BatchOutcome] = []
        for n, work in enumerate(works):
            first_offer(work)
            attempt = rec.enter(work)
            rec.leave(work)
            answer = answers[next(answer_no) % len(answers)]
            if attempt > work.retries + 3 or (answer == "not_taken" and n == 0):
                answer = "done"  # every item finishes eventually
            outcomes.append(DONE if answer == "done" else
                            RetryLater(0.001) if answer == "retry" else NOT_TAKEN)
        return outcomes

    dispatcher = KeyOrderedDispatcher(handler, cap, rec.on_done, max_batch=max_batch,
                                      batch_handler=batch_handler)
    try:
        for i, (key, r) in enumerate(specs):
            work = Work(key, i, retries=r)
            with rec.lock:
                submitted.append(work)
            dispatcher.submit(work.key, work)
        assert dispatcher.drain(timeout=20)
    finally:
        dispatcher.close(timeout=5)

    done = rec.done_works()
    assert sorted(done, key=lambda w: w.seq) == submitted  # on_done exactly once each
    assert out_of_order == []
    assert not rec.key_overlap
    assert rec.high_water <= max(cap, 1) * max_batch
    for key in "abc":
        expected = [w.seq for w in submitted if w.key == key]
        assert offered.get(key, []) == expected
    for kind_work in [e for e in rec.events if e[0] == "done"]:
        work = kind_work[1]
        position = rec.events.index(kind_work)
        earlier = [w for w in submitted if w.key == work.key and w.seq < work.seq]
        for before in earlier:
            assert ("start", before) in rec.events[:position]


def test_a_batch_with_a_deferred_item_keeps_per_key_order(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    """[a0 a1 a2 a3] in one batch: a0 must wait (RetryLater), a1 is done, a2 and a3 are
    not taken. a1 completes at once; a2, a3 and a4 (submitted while a0 waits) run only
    after a0 ran again, in order."""
    rec = Recorder()
    calls: list[list[int]] = []
    hold = threading.Event()
    deferred = threading.Event()
    answers: dict[int, list[BatchOutcome]] = {
        0: [RetryLater(0.2), DONE], 1: [DONE], 2: [NOT_TAKEN, DONE], 3: [NOT_TAKEN, DONE],
        4: [DONE]}

    def batch_handler(works: list[Work]) -> list[BatchOutcome]:
        calls.append([w.seq for w in works])
        outcomes = [answers[w.seq].pop(0) for w in works]
        if len(calls) == 2:
            deferred.set()
        return outcomes

    def handler(work: Work) -> Outcome:
        calls.append([work.seq])
        hold.wait(5)
        return DONE

    dispatcher = KeyOrderedDispatcher(handler, 1, rec.on_done, max_batch=4,
                                      batch_handler=batch_handler)
    closing.append(dispatcher)
    dispatcher.submit("blocker", Work("blocker", 99))
    wait_until(lambda: calls == [[99]])
    for i in range(4):
        dispatcher.submit("a", Work("a", i))
    hold.set()
    wait_until(deferred.is_set)
    wait_until(lambda: Work("a", 1) in rec.done_works())
    dispatcher.submit("a", Work("a", 4))
    assert dispatcher.drain(5)
    assert calls == [[99], [0, 1, 2, 3], [0, 2, 3, 4]]
    assert [w.seq for w in rec.done_works()] == [99, 1, 0, 2, 3, 4]


def test_a_deferred_batch_holds_no_thread_and_keeps_later_items_behind(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    """cap=1: while a batch's items wait for their retry, another key runs; the waiting
    items then run again together, in order, the untaken one behind them."""
    rec = Recorder()
    seen: list[list[int]] = []
    first = threading.Event()
    hold = threading.Event()

    def batch_handler(works: list[Work]) -> list[BatchOutcome]:
        seen.append([w.seq for w in works])
        if not first.is_set():
            first.set()
            return [RetryLater(0.5), RetryLater(0.1), NOT_TAKEN]
        return [DONE] * len(works)

    def handler(work: Work) -> Outcome:
        seen.append([work.seq])
        hold.wait(5)
        return DONE

    dispatcher = KeyOrderedDispatcher(handler, 1, rec.on_done, max_batch=3,
                                      batch_handler=batch_handler)
    closing.append(dispatcher)
    dispatcher.submit("blocker", Work("blocker", 99))  # holds the only thread...
    wait_until(lambda: seen == [[99]])
    for i in range(3):
        dispatcher.submit("a", Work("a", i))  # ...so these three start as one batch
    hold.set()
    wait_until(first.is_set)
    dispatcher.submit("b", Work("b", 10))
    assert dispatcher.drain(5)
    done = [(w.key, w.seq) for w in rec.done_works()]
    assert done == [("blocker", 99), ("b", 10), ("a", 0), ("a", 1), ("a", 2)]
    assert seen == [[99], [0, 1, 2], [10], [0, 1, 2]]  # the longest delay, then together


def test_quiesce_during_a_batch_waits_for_it_and_abandons_what_it_put_back(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    hold = threading.Event()
    gate = threading.Event()
    started = threading.Event()

    def batch_handler(works: list[Work]) -> list[BatchOutcome]:
        started.set()
        gate.wait(10)
        # a0 done, a1 (revoked partition) must retry, a2 (kept partition) not taken.
        return [DONE, RetryLater(0.2), NOT_TAKEN]

    def handler(work: Work) -> Outcome:
        hold.wait(10)
        return DONE

    dispatcher = KeyOrderedDispatcher(handler, 1, rec.on_done, max_batch=3,
                                      batch_handler=batch_handler)
    closing.append(dispatcher)
    dispatcher.submit("blocker", Work("blocker", 99))  # the only thread, until `hold`
    works = [Work("a", 0, partition=1), Work("a", 1, partition=1), Work("a", 2, partition=0)]
    for work in works:
        dispatcher.submit("a", work)
    hold.set()
    wait_until(started.is_set)
    threading.Timer(0.05, gate.set).start()
    result = dispatcher.quiesce(lambda w: w.partition == 1, timeout=5)
    assert result.idle is True
    # a0 completed in the batch; a1 asked for a retry while we waited and is withdrawn;
    # a2, of a partition still owned, stays and runs.
    assert result.abandoned == [works[1]]
    assert dispatcher.drain(5)
    assert [(w.key, w.seq) for w in rec.done_works()] == [("blocker", 99), ("a", 0), ("a", 2)]


def test_batch_handler_failures_complete_every_item_and_single_runs_use_handler(
    closing: list[KeyOrderedDispatcher[Work]],
) -> None:
    rec = Recorder()
    single: list[int] = []
    gate = threading.Event()

    def handler(work: Work) -> Outcome:
        single.append(work.seq)
        gate.wait(5)
        return DONE

    def batch_handler(works: list[Work]) -> list[BatchOutcome]:
        if works[0].seq == 1:
            raise KeyError("boom")
        if works[0].seq == 5:
            return [NOT_TAKEN, DONE]  # the first item must be taken
        return [DONE]  # too few outcomes

    dispatcher = KeyOrderedDispatcher(handler, 1, rec.on_done, max_batch=2,
                                      batch_handler=batch_handler)
    closing.append(dispatcher)
    for i in range(7):
        dispatcher.submit("a", Work("a", i))
    gate.set()
    assert dispatcher.drain(5)
    outcomes = {w.seq: o for w, o in rec.done}
    assert single == [0]  # alone when it started; the rest ran in pairs
    assert isinstance(outcomes[1], KeyError) and isinstance(outcomes[2], KeyError)
    assert isinstance(outcomes[3], TypeError) and isinstance(outcomes[4], TypeError)
    assert isinstance(outcomes[5], TypeError) and outcomes[6] == DONE
    assert [w.seq for w in rec.done_works()] == list(range(7))
    with pytest.raises(ValueError):
        KeyOrderedDispatcher(handler, 1, rec.on_done, max_batch=2)
