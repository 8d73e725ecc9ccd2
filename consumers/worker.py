"""The consumer loop: poll, decode, dispatch by tenant, commit what is safely done.

Threads: the poll thread owns the Kafka consumer (poll, commit, rebalance callbacks) and
publishes the status outbox; the dispatcher's pool runs the engine, one event per tenant
at a time, or the tenant's queued events together (up to `max_batch`) when several are
ready: the engine then writes their customers and items in batch requests. Offsets are
committed only up to the lowest unfinished offset per partition,
so a crash replays from there and the engine's deduplication makes replays no-ops.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.exc import InterfaceError, OperationalError

from consumers.dispatch import (
    DONE,
    NOT_TAKEN,
    BatchOutcome,
    Done,
    KeyOrderedDispatcher,
    Outcome,
    RetryLater,
)
from consumers.engine import BatchEvent, Origin, SyncEngine
from consumers.offsets import OffsetTracker
from producers.outbox import OutboxPublisher
from schemas.codec import DecodeError
from schemas.error_codes import ErrorCode
from schemas.events import InvalidEvent
from schemas.records import ChangeEvent

__all__ = ["GROUP_PROTOCOLS", "Delivery", "Redrive", "Worker", "WorkerOptions", "consumer_config"]

log = structlog.get_logger("worker")

RUN_EVENTS = Histogram("bc_sync_run_events",
                       "Events of one tenant the engine handled together in one run",
                       buckets=(1, 2, 5, 10, 20, 50, 100))
REBALANCED = Counter("bc_partitions_rebalanced_total",
                     "Partitions this worker was assigned, had revoked or lost",
                     ["change"])
DISPATCH_PENDING = Gauge("bc_dispatch_pending", "Events queued, deferred or in flight")
DISPATCH_OVERFLOW = Gauge("bc_dispatch_overflow",
                          "Events held beyond their tenant's share of the dispatcher")


@dataclass
class Delivery:
    """A consumed Kafka record, decoded, on its way through the engine."""

    origin: Origin
    generation: int
    event: ChangeEvent
    payload: bytes
    attempt: int = 1


@dataclass
class Redrive:
    """A parked event that may now proceed (its dependency arrived)."""

    account_id: str
    event_id: str
    attempt: int = 1


Work = Delivery | Redrive


@dataclass
class WorkerOptions:
    bootstrap: str
    group_id: str
    topics: list[str]
    # Threads running the engine (tenants handled at once). Each waits on the provider
    # most of the time, so size it by Little's law: threads ~= runs/s wanted x seconds
    # per run (mostly provider latency; a run is one event, or a tenant's batch). More
    # threads than that only add context switches and database connections: 32 did
    # 346 voluntary switches per event on PostgreSQL and 4 gave 42% more throughput
    # (issue 12). See service/config.py MAX_IN_FLIGHT.
    max_in_flight: int = 8
    # The most events of one tenant handed to the engine in one run when several are
    # queued (consumers/engine.py process_batch); 1 turns batching off.
    max_batch: int = 50
    # Flow control. A tenant holds at most `max_per_tenant` events in the dispatcher (the
    # buffer all tenants share); its further events wait in its own overflow, in order,
    # so a flooded or throttled tenant waits alone. Fetching pauses (every partition:
    # Kafka pauses partitions, not keys) only when the shared buffer holds
    # `max_buffered` events, which takes max_buffered / max_per_tenant backlogged
    # tenants, or when the overflows together hold `max_overflow` events (the memory
    # bound); it resumes at half of both.
    max_buffered: int = 2000
    max_per_tenant: int = 50
    max_overflow: int = 50_000
    commit_interval_s: float = 1.0
    drain_timeout_s: float = 20.0
    # The consumer group protocol (CONSUMER_GROUP_PROTOCOL): "consumer" is KIP-848's
    # (Kafka 4.0+), "classic" the older one for brokers without it. See consumer_config.
    group_protocol: str = "consumer"
    consumer_overrides: dict[str, Any] = field(default_factory=dict)


GROUP_PROTOCOLS = ("consumer", "classic")


def consumer_config(options: WorkerOptions) -> dict[str, Any]:
    """The Kafka consumer's configuration.

    Partitions are assigned per topic (range) under either protocol, so with at least as
    many partitions per change topic as workers every worker gets a share of every topic,
    the busy one included. cooperative-sticky balanced only the total count: with two
    workers on four topics it gave one worker all of customers and invoices and the other
    all of items and payments, which left it idle under a customer-heavy load (bench/
    scaleout.py, bench/README.md). KIP-848's server-side `range` assignor also moves
    partitions incrementally, as cooperative-sticky did; under "classic" range is eager,
    so a rebalance briefly stops every member (correct, only slower: revoked work is
    withdrawn and replayed, replays are no-ops). Under KIP-848 the session timeout and
    heartbeat interval are the broker's (group.consumer.session.timeout.ms, or the
    group's consumer.session.timeout.ms), not the client's.
    """
    if options.group_protocol not in GROUP_PROTOCOLS:
        raise ValueError(f"unknown consumer group protocol {options.group_protocol!r}; "
                         f"expected one of {', '.join(GROUP_PROTOCOLS)}")
    config: dict[str, Any] = {
        "bootstrap.servers": options.bootstrap,
        "group.id": options.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": 300000,
        "topic.metadata.refresh.interval.ms": 5000,
    }
    if options.group_protocol == "consumer":
        config.update({"group.protocol": "consumer", "group.remote.assignor": "range"})
    else:
        config.update({"group.protocol": "classic", "partition.assignment.strategy": "range",
                       "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    config.update(options.consumer_overrides)
    return config


class Worker:
    def __init__(self, engine: SyncEngine, outbox: OutboxPublisher,
                 options: WorkerOptions,
                 housekeeping: Callable[[], object] | None = None) -> None:
        self._engine = engine
        self._outbox = outbox
        self._options = options
        # Called from the poll thread once per commit interval (the service's: giving
        # freed memory back, service/memory.py); it must return in milliseconds.
        self._housekeeping = housekeeping
        self._tracker = OffsetTracker()
        self._tracker_lock = threading.Lock()
        self._stop = threading.Event()
        self._paused: set[tuple[str, int]] = set()  # partitions this worker paused
        self._closing = False
        self._draining = False
        self._overflow_lock = threading.Lock()
        self._overflow: dict[str, deque[Work]] = {}
        self._overflowed = 0
        # Per tenant: how many items of the current batch run completed so far (on_done
        # runs before the dispatcher forgets them, see _on_done); absent: a single run.
        self._completing: dict[str, int] = {}
        self._dispatcher: KeyOrderedDispatcher[Work] = KeyOrderedDispatcher(
            self._handle, options.max_in_flight, self._on_done, thread_name_prefix="sync",
            max_batch=options.max_batch,
            batch_handler=self._handle_batch if options.max_batch > 1 else None)
        self._consumer = Consumer(consumer_config(options))
        self.processed = 0
        # When the poll loop last turned (monotonic; 0: not started). Read by the health
        # probes (service/health.py).
        self.last_poll_at = 0.0

    def stop(self) -> None:
        self._stop.set()

    def assigned_partitions(self) -> int:
        """How many partitions this worker owns now (health probes; RuntimeError once the
        consumer is closed)."""
        return len(self._consumer.assignment())

    # -- the poll thread ---------------------------------------------------------------

    def run(self, until: Callable[[], bool] | None = None) -> None:
        self._consumer.subscribe(self._options.topics, on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set() and not (until and until()):
                self.last_poll_at = time.monotonic()
                message = self._consumer.poll(0.1)
                if message is not None:
                    self._accept(message)
                self._flow_control()
                if time.monotonic() - last_commit >= self._options.commit_interval_s:
                    self._outbox.publish_all()
                    self._commit()
                    if self._housekeeping is not None:
                        self._housekeeping()
                    last_commit = time.monotonic()
        finally:
            self._shutdown()

    def _accept(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer_error", error=str(error))
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        origin = Origin(topic, partition, offset)
        with self._tracker_lock:
            generation = self._tracker.started(topic, partition, offset)
        payload = message.value()
        key_bytes = message.key()
        key = key_bytes.decode(errors="replace") if isinstance(key_bytes, bytes) else None
        try:
            if not isinstance(payload, bytes):
                raise DecodeError("empty", "record has no value (tombstone)")
            event = self._engine.decode(payload)
            if key != event.account_id:
                # The key decides the partition and so the order of a tenant's events; an
                # event keyed to another tenant is refused, never applied for either.
                raise InvalidEvent(ErrorCode.KEY_MISMATCH, f"the Kafka key {key!r} differs "
                                   f"from the event's account_id {event.account_id!r}")
        except (DecodeError, InvalidEvent, KeyError, TypeError, ValueError) as exc:
            # A poison record never stalls the partition: dead-letter it and move on.
            self._engine.reject(payload if isinstance(payload, bytes) else None, key, origin, exc)
            self._finished(origin, generation)
            return
        self._enqueue(event.account_id, Delivery(origin, generation, event, payload))

    # -- per-tenant share of the dispatcher ----------------------------------------------

    def _enqueue(self, key: str, work: Work) -> None:
        """Into the dispatcher while the tenant is within its share, else behind it in the
        tenant's overflow (order kept: nothing overtakes an overflowed event)."""
        with self._overflow_lock:
            waiting = self._overflow.get(key)
            if waiting is None and \
                    self._dispatcher.pending_for(key) < self._options.max_per_tenant:
                self._dispatcher.submit(key, work)
                return
            if waiting is None:
                waiting = self._overflow[key] = deque()
            waiting.append(work)
            self._overflowed += 1

    def _refill(self, key: str, completing: int = 0) -> None:
        """Move the tenant's overflow into the dispatcher up to its share. `completing`:
        items of the key counted by the dispatcher that are about to leave it."""
        with self._overflow_lock:
            waiting = self._overflow.get(key)
            if not waiting or self._draining:
                return
            room = self._options.max_per_tenant + completing - \
                self._dispatcher.pending_for(key)
            while waiting and room > 0:
                self._dispatcher.submit(key, waiting.popleft())
                self._overflowed -= 1
                room -= 1
            if not waiting:
                del self._overflow[key]

    def _drop_overflow(self, partitions: set[tuple[str, int]]) -> None:
        """Forget overflowed deliveries of partitions this worker no longer owns (the next
        owner re-reads them from the committed offset), then top every tenant up."""
        with self._overflow_lock:
            for waiting in self._overflow.values():
                kept = deque(w for w in waiting if not (
                    isinstance(w, Delivery) and (w.origin.topic, w.origin.partition)
                    in partitions))
                self._overflowed -= len(waiting) - len(kept)
                waiting.clear()
                waiting.extend(kept)
            for key in [k for k, w in self._overflow.items() if not w]:
                del self._overflow[key]
            keys = list(self._overflow)
        for key in keys:
            self._refill(key)

    def overflowed(self) -> int:
        with self._overflow_lock:
            return self._overflowed

    def _flow_control(self) -> None:
        pending = self._dispatcher.pending()
        overflowed = self.overflowed()
        DISPATCH_PENDING.set(pending)
        DISPATCH_OVERFLOW.set(overflowed)
        full = pending >= self._options.max_buffered or \
            overflowed >= self._options.max_overflow
        if not self._paused and full:
            assignment = self._consumer.assignment()
            self._consumer.pause(assignment)
            self._paused = {(p.topic, p.partition) for p in assignment}
        elif self._paused and pending <= self._options.max_buffered // 2 and \
                overflowed <= self._options.max_overflow // 2:
            self._consumer.resume(self._consumer.assignment())
            self._paused = set()
        elif self._paused:
            # Partitions assigned while paused start fetching unless paused too.
            fresh = [p for p in self._consumer.assignment()
                     if (p.topic, p.partition) not in self._paused]
            if fresh:
                self._consumer.pause(fresh)
                self._paused |= {(p.topic, p.partition) for p in fresh}

    def _commit(self, positions: dict[tuple[str, int], int] | None = None) -> None:
        with self._tracker_lock:
            positions = self._tracker.committable() if positions is None else positions
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit_failed", error=str(exc))
            return
        with self._tracker_lock:
            self._tracker.mark_committed(
                {tp: o for tp, o in positions.items() if tp in self._tracker.partitions()})

    # -- rebalances --------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        REBALANCED.labels("assigned").inc(len(partitions))
        log.info("partitions_assigned",
                 partitions=[f"{p.topic}/{p.partition}" for p in partitions])
        if not self._closing:
            self._redrive_ready()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        REBALANCED.labels("revoked").inc(len(revoked))
        log.info("partitions_revoked", partitions=sorted(f"{t}/{p}" for t, p in revoked))
        # Queued work for these partitions is withdrawn (the next owner re-reads it from
        # the committed offset); in-flight work finishes first, so its effect is recorded
        # and committed here rather than replayed.
        withdrawal = self._dispatcher.quiesce(
            lambda w: isinstance(w, Delivery) and (w.origin.topic, w.origin.partition) in revoked,
            timeout=self._options.drain_timeout_s)
        self._drop_overflow(revoked)
        self._paused -= revoked
        self._outbox.publish_all()
        with self._tracker_lock:
            final = self._tracker.revoke(revoked)
        if final:
            try:
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in final.items()],
                                asynchronous=False)
            except KafkaException as exc:
                log.warning("commit_on_revoke_failed", error=str(exc))
        log.info("revoke_done", withdrawn=len(withdrawal.abandoned), idle=withdrawal.idle)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, so committing would be
        # wrong. Withdraw queued work and forget; the owner replays, replays are no-ops.
        lost = {(p.topic, p.partition) for p in partitions}
        REBALANCED.labels("lost").inc(len(lost))
        self._dispatcher.quiesce(
            lambda w: isinstance(w, Delivery) and (w.origin.topic, w.origin.partition) in lost,
            timeout=self._options.drain_timeout_s)
        self._drop_overflow(lost)
        self._paused -= lost
        with self._tracker_lock:
            self._tracker.revoke(lost)

    # -- the dispatcher's threads -------------------------------------------------------

    def _handle(self, work: Work) -> Outcome:
        self._completing.pop(work.event.account_id if isinstance(work, Delivery)
                             else work.account_id, None)
        if isinstance(work, Redrive):
            return self._handle_redrive(work)
        RUN_EVENTS.observe(1)
        try:
            result = self._engine.process(work.event, work.payload, attempt=work.attempt,
                                          origin=work.origin)
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable: an infrastructure blip, not the event's fault.
            log.warning("database_unavailable", error=str(exc).splitlines()[0])
            return RetryLater(2.0, reason="database unavailable")
        except Exception as exc:  # a bug must not lose the event: dead-letter it
            log.exception("engine_crashed", event_id=work.event.event_id)
            self._engine.reject(work.payload, work.event.account_id, work.origin, exc,
                                event=work.event)
            return DONE
        if result.retry_after_s is not None:
            work.attempt += int(result.spend_attempt)
            return RetryLater(result.retry_after_s, reason="transient provider error")
        self._submit_redrives(work.event.account_id, result.redrive)
        return DONE

    def _handle_batch(self, works: list[Work]) -> list[BatchOutcome]:
        """Several queued events of one tenant: the leading deliveries go to the engine
        together; a re-drive runs alone, and whatever follows it is not taken (it runs
        next, in order)."""
        deliveries: list[Delivery] = []
        for work in works:
            if not isinstance(work, Delivery):
                break
            deliveries.append(work)
        rest: list[BatchOutcome] = [NOT_TAKEN] * (len(works) - max(len(deliveries), 1))
        if len(deliveries) < 2:
            return [self._handle(works[0]), *rest]
        key = deliveries[0].event.account_id
        RUN_EVENTS.observe(len(deliveries))
        try:
            results = self._engine.process_batch([
                BatchEvent(d.event, d.payload, d.attempt, d.origin) for d in deliveries])
        except (OperationalError, InterfaceError) as exc:
            log.warning("database_unavailable", error=str(exc).splitlines()[0])
            return [RetryLater(2.0, reason="database unavailable"),
                    *[NOT_TAKEN] * (len(works) - 1)]
        except Exception:
            # Which event broke the batch is unknown: the first runs alone now (and is
            # dead-lettered if it is the one), the others run again after it. What the
            # batch recorded before it broke makes their replays no-ops.
            log.exception("engine_batch_crashed", events=len(deliveries))
            return [self._handle(works[0]), *[NOT_TAKEN] * (len(works) - 1)]
        outcomes: list[BatchOutcome] = []
        for delivery, result in zip(deliveries, results, strict=True):
            if result.retry_after_s is not None:
                delivery.attempt += int(result.spend_attempt)
                outcomes.append(RetryLater(result.retry_after_s,
                                           reason="transient provider error"))
            else:
                self._submit_redrives(key, result.redrive)
                outcomes.append(DONE)
        self._completing[key] = 0
        return [*outcomes, *rest]

    def _handle_redrive(self, work: Redrive) -> Outcome:
        try:
            payload = self._engine.parked_payload(work.account_id, work.event_id)
            if payload is None:
                return DONE  # already re-driven by someone else
            event = self._engine.decode(payload)
            result = self._engine.process(event, payload, attempt=work.attempt, redrive=True)
        except (OperationalError, InterfaceError) as exc:
            # As for a delivery: a database blip must not drop the re-drive (the event
            # would stay parked until the next assignment looked for ready ones).
            log.warning("database_unavailable", error=str(exc).splitlines()[0])
            return RetryLater(2.0, reason="database unavailable")
        if result.retry_after_s is not None:
            work.attempt += int(result.spend_attempt)
            return RetryLater(result.retry_after_s, reason="transient provider error")
        self._submit_redrives(work.account_id, result.redrive)
        return DONE

    def _submit_redrives(self, account_id: str, event_ids: tuple[str, ...]) -> None:
        if self._closing:
            return  # still parked in the database; the next assignment re-drives them
        for event_id in event_ids:
            self._enqueue(account_id, Redrive(account_id, event_id))

    def _on_done(self, work: Work, outcome: Done | BaseException) -> None:
        if isinstance(outcome, BaseException):
            log.error("work_failed", error=repr(outcome))
        if isinstance(work, Delivery):
            self._finished(work.origin, work.generation)
        self.processed += 1
        key = work.event.account_id if isinstance(work, Delivery) else work.account_id
        # The dispatcher still counts every item of a batch run until all their on_done
        # calls returned, so the room this frees is all of that run's completed so far.
        completing = self._completing.get(key)
        if completing is None:
            completing = 1
        else:
            completing += 1
            self._completing[key] = completing
        self._refill(key, completing=completing)

    def _finished(self, origin: Origin, generation: int) -> None:
        with self._tracker_lock:
            self._tracker.finished(origin.topic, origin.partition, origin.offset,
                                   generation=generation)

    def _redrive_ready(self) -> None:
        """Re-drive parked events whose dependency got linked while nobody was watching
        (for example, the process that linked it crashed before re-driving)."""
        for account_id, event_id in self._engine.ready_parked():
            self._enqueue(account_id, Redrive(account_id, event_id))

    # -- shutdown ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        log.info("draining", pending=self._dispatcher.pending(), overflowed=self.overflowed())
        with self._overflow_lock:
            # Overflowed events never finished: their offsets stay unfinished, so nothing
            # at or above them is committed and the next owner reads them again. Only the
            # dispatcher's work is drained.
            self._draining = True
            self._overflow.clear()
            self._overflowed = 0
        self._dispatcher.drain(timeout=self._options.drain_timeout_s)
        self._closing = True
        withdrawal = self._dispatcher.close(timeout=self._options.drain_timeout_s)
        try:
            self._outbox.publish_all()
        except Exception as exc:  # statuses stay in the outbox for the next run
            log.warning("outbox_publish_failed", error=str(exc))
        self._commit()
        self._consumer.close()
        log.info("stopped", abandoned=len(withdrawal.abandoned), processed=self.processed)


