"""Unit tests for consumers.dispatch.KeyOrderedDispatcher (real threads, plain fakes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.dispatch import DONE, Done, KeyOrderedDispatcher, Outcome, RetryLater

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
