"""Key-ordered concurrent dispatch of work items on a thread pool.

``KeyOrderedDispatcher`` runs work with these guarantees:

* **Per-key order.** Items submitted under one key are handled one at a time
  (or one batch at a time, see below), in submission order, and their
  ``on_done`` callbacks run in submission order (``on_done`` for item *n*
  returns before item *n+1* of that key starts).
* **Global cap.** At most ``max_in_flight`` handler calls (plus their
  ``on_done`` calls) run at any moment, across all keys.
* **Retries do not hold threads.** A handler may return ``RetryLater(delay_s)``:
  the same item is retried after the delay, the key stays blocked meanwhile
  (later items of that key wait, preserving order) but the worker thread and
  the in-flight slot are released, so a throttled key never holds up others.
* **Exactly-once completion callback.** ``on_done(work, outcome)`` is called
  exactly once for every submitted item that completes -- with ``Done`` or
  with the exception the handler raised -- and never for abandoned items.
* **Batches (optional).** With ``max_batch > 1`` and a ``batch_handler``, a key
  that has several items queued when it starts hands up to ``max_batch`` of
  them, consecutive and in submission order, to one ``batch_handler(works)``
  call, which returns one outcome per item: ``Done``, ``RetryLater`` or
  ``NOT_TAKEN``. Items answered ``Done`` (or all of them, if the call raises)
  complete, their ``on_done`` in submission order; the others go back to the
  front of the key's queue in their order, and if any asked for ``RetryLater``
  the key waits for the longest such delay (holding no thread). So the items
  after a retried or untaken one never run before it, but ``on_done`` of an
  item the batch handler completed may precede that of an earlier item of its
  batch that waits for a retry: the handler completes such an item only when
  it does not depend on the earlier one. A run of one item calls ``handler``.
  The first item of a batch must be taken (``NOT_TAKEN`` there is reported as
  a ``TypeError``), so every run makes progress.

Concurrency model: one ``threading.Condition`` (``_cv``) guards all state. The
handler and ``on_done`` are always called *without* the lock held, from pool
threads; predicates passed to ``abandon``/``wait_idle``/``quiesce`` are called
*with* the lock held and must be quick and must not call back into the
dispatcher. A single scheduler thread moves deferred items back to the ready
queue when their delay expires.

This module knows nothing about Kafka.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeAlias, TypeVar

__all__ = [
    "DONE",
    "NOT_TAKEN",
    "BatchOutcome",
    "Done",
    "KeyOrderedDispatcher",
    "NotTaken",
    "Outcome",
    "RetryLater",
    "Withdrawal",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Done:
    """The handler finished with the item (success or a handled failure)."""

    result: object = None


DONE = Done()


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Run the same item again after ``delay_s`` seconds; its key stays blocked."""

    delay_s: float
    reason: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ValueError(f"delay_s must be finite and >= 0, got {self.delay_s!r}")


Outcome: TypeAlias = Done | RetryLater


@dataclass(frozen=True, slots=True)
class NotTaken:
    """Batch handlers only: the item was not handled; it goes back to the front of its
    key's queue, in order, and runs again later."""


NOT_TAKEN = NotTaken()

BatchOutcome: TypeAlias = Done | RetryLater | NotTaken


@dataclass(frozen=True, slots=True)
class Withdrawal(Generic[T]):
    """Result of ``quiesce``/``close``.

    ``idle``: no matching item is in flight any more (``False`` on timeout).
    ``abandoned``: the matching items removed without completing, per key in
    submission order; ``on_done`` is never called for them.
    """

    idle: bool
    abandoned: list[T]


class _Status(Enum):
    READY = "ready"  # waiting for a pool slot; key is in ``_ready`` exactly once
    RUNNING = "running"  # ``head`` is being handled (or its on_done is running)
    DEFERRED = "deferred"  # ``head`` waits for its retry time; one entry in ``_timers``


@dataclass(slots=True, eq=False)
class _Item(Generic[T]):
    work: T
    attempts: int = 0


@dataclass(slots=True, eq=False)
class _KeyState(Generic[T]):
    """Pending work of one key.

    ``head`` is the item that has been taken off ``queue``: running, deferred,
    or (status READY) due for retry. The next item to run is ``head`` if set,
    else ``queue[0]``. At most one item per key is running or deferred.
    ``batch``: the items taken off ``queue`` to run with ``head`` in one batch
    (empty unless RUNNING).
    """

    status: _Status
    queue: deque[T] = field(default_factory=deque)
    head: _Item[T] | None = None
    batch: list[T] = field(default_factory=list)

    def count(self) -> int:
        return len(self.queue) + (self.head is not None) + len(self.batch)


class KeyOrderedDispatcher(Generic[T]):
    """Run ``handler`` over submitted work, one item at a time per key.

    ``handler(work)`` returns ``Done(...)`` or ``RetryLater(delay_s)``; if it
    raises, or returns anything else (reported as ``TypeError``), the item is
    complete and ``on_done`` receives the exception. ``on_done(work, outcome)``
    runs on the pool thread that ran the handler, concurrently with other
    keys' callbacks; exceptions it raises are logged and swallowed. Handlers
    and ``on_done`` may call ``submit``/``pending``/``abandon``, but must not
    call the waiting methods (``drain``, ``wait_idle``, ``quiesce``,
    ``close``): they would wait for themselves.

    State invariants (hold whenever ``_cv`` is not held):

    * ``_keys`` holds exactly the keys with pending work (``count() > 0``).
    * ``_ready`` holds each key with status READY exactly once, nothing else.
    * ``_running`` is the set of keys with status RUNNING; ``len(_running)``
      <= ``max_in_flight``, and once not closed, if ``_ready`` is non-empty
      then ``len(_running) == max_in_flight``.
    * ``_timers`` holds exactly one entry per key with status DEFERRED.
    * ``_pending`` == sum of ``count()`` over ``_keys``.
    * A RUNNING/DEFERRED key's ``head`` is set; an item stays ``head`` from
      the moment it is first started until it completes, is abandoned, or (in
      a batch) is put back behind an earlier item that waits.
    * Only a RUNNING key has a non-empty ``batch``; ``abandon`` never touches
      a RUNNING key's ``head`` or ``batch``.
    """

    def __init__(
        self,
        handler: Callable[[T], Outcome],
        max_in_flight: int,
        on_done: Callable[[T, Done | BaseException], None],
        *,
        thread_name_prefix: str = "dispatch",
        max_batch: int = 1,
        batch_handler: Callable[[list[T]], Sequence[BatchOutcome]] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if max_batch < 1 or (max_batch > 1 and batch_handler is None):
            raise ValueError("max_batch must be >= 1, and > 1 only with a batch_handler")
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max_batch
        self._on_done = on_done
        self._cap = max_in_flight
        self._cv = threading.Condition()
        self._keys: dict[str, _KeyState[T]] = {}
        self._ready: deque[str] = deque()
        self._running: set[str] = set()
        self._timers: list[tuple[float, int, str]] = []  # (due, tiebreak, key), a heap
        self._timer_seq = 0
        self._pending = 0
        self._closed = False
        self._pool = ThreadPoolExecutor(
            max_workers=max_in_flight, thread_name_prefix=thread_name_prefix
        )
        self._scheduler = threading.Thread(
            target=self._schedule_loop, name=f"{thread_name_prefix}-scheduler", daemon=True
        )
        self._scheduler.start()

    # ------------------------------------------------------------------ API

    @property
    def max_in_flight(self) -> int:
        return self._cap

    def submit(self, key: str, work: T) -> None:
        """Queue ``work`` behind earlier work of ``key``. Never blocks.

        Raises ``RuntimeError`` only if the dispatcher has been closed.
        """
        with self._cv:
            if self._closed:
                raise RuntimeError("submit() on a closed KeyOrderedDispatcher")
            state = self._keys.get(key)
            if state is None:
                state = _KeyState(status=_Status.READY)
                self._keys[key] = state
                self._ready.append(key)
            state.queue.append(work)
            self._pending += 1
            self._pump()

    def pending(self) -> int:
        """Items submitted and not yet completed/abandoned (queued + in flight + deferred)."""
        with self._cv:
            return self._pending

    def pending_for(self, key: str) -> int:
        with self._cv:
            state = self._keys.get(key)
            return 0 if state is None else state.count()

    def in_flight(self) -> int:
        """Handler (or on_done) calls currently running."""
        with self._cv:
            return len(self._running)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted item has completed or been abandoned.

        Includes deferred retries. Returns ``False`` on timeout. When it returns
        ``True``, all ``on_done`` calls have returned.
        """
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

    def abandon(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove queued and deferred (not in-flight) items matching ``predicate``.

        Returns them (per key in submission order); ``on_done`` is never called
        for them. If ``predicate`` raises, nothing is removed. An in-flight
        matching item may still return ``RetryLater`` after this call and then
        sit deferred: use ``quiesce`` to remove matching work atomically.
        """
        with self._cv:
            return self._abandon_locked(predicate)

    def wait_idle(self, predicate: Callable[[T], bool], timeout: float | None = None) -> bool:
        """Wait until no in-flight item matches ``predicate``; ``False`` on timeout.

        When it returns ``True``, ``on_done`` has returned for every matching
        item that was in flight and completed.
        """
        with self._cv:
            return self._cv.wait_for(lambda: not self._running_matches(predicate), timeout)

    def quiesce(
        self, predicate: Callable[[T], bool], timeout: float | None = None
    ) -> Withdrawal[T]:
        """Abandon matching queued/deferred work and wait for matching in-flight work.

        Intended for partition revocation. Unlike ``abandon`` then
        ``wait_idle``, an in-flight matching item that returns ``RetryLater``
        while we wait is abandoned too instead of being left deferred. On
        return with ``idle=True`` no matching work is queued, deferred or in
        flight (items submitted concurrently with this call excepted), and
        every matching item either completed (its ``on_done`` has returned) or
        is in ``abandoned``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            abandoned: list[T] = []
            while True:
                abandoned.extend(self._abandon_locked(predicate))
                if not self._running_matches(predicate):
                    return Withdrawal(idle=True, abandoned=abandoned)
                if deadline is None:
                    self._cv.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return Withdrawal(idle=False, abandoned=abandoned)
                    self._cv.wait(remaining)

    def close(self, timeout: float | None = None) -> Withdrawal[T]:
        """Stop accepting work, abandon queued/deferred work, wait for in-flight work.

        Does not drain: call ``drain`` first to finish everything. Idempotent.
        If the wait times out, items still in flight complete later (with
        ``on_done``) or, if they ask for a retry, stay deferred and can be
        collected with ``abandon``; nothing new is started after ``close``.
        """
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        withdrawal = self.quiesce(lambda _work: True, timeout)
        self._scheduler.join(timeout)
        self._pool.shutdown(wait=withdrawal.idle, cancel_futures=False)
        return withdrawal

    def __enter__(self) -> KeyOrderedDispatcher[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ internals

    def _pump(self) -> None:
        """Start ready keys while slots are free. Caller holds ``_cv``."""
        if self._closed:
            return
        while self._ready and len(self._running) < self._cap:
            key = self._ready.popleft()
            state = self._keys[key]
            assert state.status is _Status.READY
            if state.head is None:
                state.head = _Item(state.queue.popleft())
            while state.queue and len(state.batch) + 1 < self._max_batch:
                state.batch.append(state.queue.popleft())
            state.status = _Status.RUNNING
            self._running.add(key)
            self._pool.submit(self._run, key, state.head)

    def _run(self, key: str, item: _Item[T]) -> None:
        """Pool thread: handle one item (or a batch), then release its key and slot."""
        with self._cv:
            batch = list(self._keys[key].batch)
        if batch:
            self._run_batch(key, item, batch)
            return
        result: Outcome | BaseException
        try:
            result = self._handler(item.work)
        except BaseException as exc:  # the slot must be released whatever happens
            result = exc
        if isinstance(result, RetryLater):
            self._defer(key, item, result.delay_s)
            return
        if not isinstance(result, Done | BaseException):
            result = TypeError(
                f"handler returned {type(result).__name__}; expected Done or RetryLater"
            )
        try:
            # Called before the key is released, so per key on_done order is
            # submission order.
            self._on_done(item.work, result)
        except BaseException:
            log.exception("on_done raised for key %r; ignored", key)
        with self._cv:
            state = self._keys[key]
            assert state.head is item and state.status is _Status.RUNNING
            state.head = None
            self._running.discard(key)
            self._pending -= 1
            self._requeue(key, state)
            self._pump()
            self._cv.notify_all()

    def _run_batch(self, key: str, item: _Item[T], rest: list[T]) -> None:
        works = [item.work, *rest]
        outcomes: list[BatchOutcome | BaseException]
        try:
            assert self._batch_handler is not None
            outcomes = list(self._batch_handler(works))
        except BaseException as exc:  # the slot must be released whatever happens
            outcomes = [exc] * len(works)
        if len(outcomes) != len(works):
            error = TypeError(f"batch handler returned {len(outcomes)} outcomes for "
                              f"{len(works)} items")
            outcomes = [error] * len(works)
        outcomes = [
            o if isinstance(o, Done | RetryLater | BaseException)
            or (isinstance(o, NotTaken) and n > 0)
            else TypeError(f"batch handler returned {type(o).__name__} for item {n}")
            for n, o in enumerate(outcomes)
        ]
        back = [n for n, o in enumerate(outcomes) if isinstance(o, RetryLater | NotTaken)]
        for work, outcome in zip(works, outcomes, strict=True):
            if isinstance(outcome, Done | BaseException):
                try:
                    self._on_done(work, outcome)
                except BaseException:
                    log.exception("on_done raised for key %r; ignored", key)
        delays = [o.delay_s for o in outcomes if isinstance(o, RetryLater)]
        with self._cv:
            state = self._keys[key]
            assert state.head is item and state.status is _Status.RUNNING
            state.batch = []
            self._running.discard(key)
            self._pending -= len(works) - len(back)
            if back:
                # What was not completed goes back in front, in order: nothing queued
                # behind it can overtake it.
                state.head = item if back[0] == 0 else _Item(works[back[0]])
                state.queue.extendleft(works[n] for n in reversed(back[1:]))
                if delays:
                    state.head.attempts += 1
                    state.status = _Status.DEFERRED
                    self._arm_timer(key, max(delays))
                else:
                    state.status = _Status.READY
                    self._ready.append(key)
            else:
                state.head = None
                self._requeue(key, state)
            self._pump()
            self._cv.notify_all()

    def _requeue(self, key: str, state: _KeyState[T]) -> None:
        """A key whose head just completed: ready for its next item, or gone. Caller
        holds ``_cv``."""
        if state.queue:
            state.status = _Status.READY
            self._ready.append(key)
        else:
            del self._keys[key]

    def _arm_timer(self, key: str, delay_s: float) -> None:
        """The key's deferred head becomes ready after ``delay_s``. Caller holds ``_cv``."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay_s, self._timer_seq, key))

    def _defer(self, key: str, item: _Item[T], delay_s: float) -> None:
        with self._cv:
            state = self._keys[key]
            assert state.head is item and state.status is _Status.RUNNING
            item.attempts += 1
            state.status = _Status.DEFERRED
            self._running.discard(key)
            self._arm_timer(key, delay_s)
            self._pump()
            self._cv.notify_all()  # wakes the scheduler (new timer) and wait_idle/quiesce

    def _schedule_loop(self) -> None:
        """Scheduler thread: move due deferred items to the ready queue."""
        with self._cv:
            while not self._closed:
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _due, _seq, key = heapq.heappop(self._timers)
                    state = self._keys[key]
                    assert state.status is _Status.DEFERRED
                    state.status = _Status.READY
                    self._ready.append(key)
                self._pump()
                self._cv.wait(self._timers[0][0] - now if self._timers else None)

    def _running_matches(self, predicate: Callable[[T], bool]) -> bool:
        for key in self._running:
            state = self._keys[key]
            assert state.head is not None
            if predicate(state.head.work) or any(predicate(w) for w in state.batch):
                return True
        return False

    def _abandon_locked(self, predicate: Callable[[T], bool]) -> list[T]:
        # Evaluate the predicate everywhere first, so that an exception from it
        # leaves the state untouched.
        plan: list[tuple[str, _KeyState[T], bool, list[bool]]] = []
        for key, state in self._keys.items():
            take_head = (
                state.status is not _Status.RUNNING
                and state.head is not None
                and predicate(state.head.work)
            )
            mask = [predicate(work) for work in state.queue]
            if take_head or any(mask):
                plan.append((key, state, take_head, mask))
        if not plan:
            return []

        removed: list[T] = []
        timers_stale = ready_stale = False
        for key, state, take_head, mask in plan:
            before = len(removed)
            if take_head:
                assert state.head is not None
                removed.append(state.head.work)
                state.head = None
            if any(mask):
                kept: deque[T] = deque()
                for work, drop in zip(state.queue, mask, strict=True):
                    (removed if drop else kept).append(work)
                state.queue = kept
            self._pending -= len(removed) - before
            if state.status is _Status.RUNNING:
                continue  # its head is untouched
            if state.status is _Status.DEFERRED and state.head is None:
                timers_stale = True
                if state.queue:
                    state.status = _Status.READY
                    self._ready.append(key)
                else:
                    del self._keys[key]
            elif state.status is _Status.READY and state.count() == 0:
                ready_stale = True
                del self._keys[key]

        if timers_stale:
            self._timers = [
                timer
                for timer in self._timers
                if timer[2] in self._keys and self._keys[timer[2]].status is _Status.DEFERRED
            ]
            heapq.heapify(self._timers)
        if ready_stale:
            self._ready = deque(k for k in self._ready if k in self._keys)
        self._pump()
        self._cv.notify_all()
        return removed
