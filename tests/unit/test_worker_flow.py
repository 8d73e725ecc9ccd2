"""The worker's flow control without a broker: a tenant's share of the dispatcher is
bounded (its further events and re-drives wait in its own overflow, in order), fetching
pauses only when the shared buffer or the overflows are full, and partitions assigned
while paused are paused too."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import TopicPartition
from sqlalchemy.exc import OperationalError

from consumers.engine import EngineResult, Origin
from consumers.worker import Delivery, Redrive, Worker, WorkerOptions
from sandbox.scenario import EventFactory
from schemas.records import ChangeEvent


class GatedEngine:
    """Every event waits for `gate`; records the order events ran in, per tenant."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.order: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def process(self, event: ChangeEvent, payload: bytes, **_: Any) -> EngineResult:
        self.gate.wait(30)
        with self._lock:
            self.order.setdefault(event.account_id, []).append(event.entity_id)
        return EngineResult()

    def parked_payload(self, account_id: str, event_id: str) -> bytes | None:
        with self._lock:
            self.order.setdefault(account_id, []).append(f"redrive:{event_id}")
        return None

    def ready_parked(self) -> list[tuple[str, str]]:
        return []


class FakeConsumer:
    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        self.paused: set[int] = set()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", p) for p in self.partitions]

    def pause(self, parts: list[TopicPartition]) -> None:
        self.paused |= {p.partition for p in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        self.paused -= {p.partition for p in parts}


class NoOutbox:
    def publish_all(self) -> int:
        return 0


def _worker(engine: GatedEngine, consumer: FakeConsumer, **options: Any) -> Worker:
    worker = Worker(engine, NoOutbox(), WorkerOptions(  # type: ignore[arg-type]
        bootstrap="127.0.0.1:1", group_id="g", topics=["t"], max_in_flight=2, **options))
    worker._consumer.close()
    worker._consumer = consumer  # type: ignore[assignment]
    return worker


def _deliveries(tenant: str, n: int, start: int = 0) -> list[Delivery]:
    factory = EventFactory(tenant)
    return [Delivery(Origin("t", 0, start + i), 0,
                     factory.customer(f"{tenant}-c{start + i}", f"C {i}"), b"")
            for i in range(n)]


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(predicate())


def test_a_flooded_tenant_overflows_alone_and_keeps_its_order() -> None:
    engine, consumer = GatedEngine(), FakeConsumer([0])
    worker = _worker(engine, consumer, max_buffered=10, max_per_tenant=3, max_overflow=100)
    dispatcher = worker._dispatcher
    try:
        for d in _deliveries("flood", 40):
            worker._enqueue("flood", d)
        worker._submit_redrives("flood", ("e1", "e2"))  # re-drives take the same road
        assert dispatcher.pending_for("flood") == 3
        assert worker.overflowed() == 39
        for d in _deliveries("calm", 2):
            worker._enqueue("calm", d)
        assert dispatcher.pending_for("calm") == 2  # not behind the flood
        worker._flow_control()
        assert consumer.paused == set()  # the flood does not fill the shared buffer
        engine.gate.set()
        assert _wait(lambda: dispatcher.pending() == 0 and worker.overflowed() == 0)
        assert engine.order["flood"] == [f"flood-c{i}" for i in range(40)] + [
            "redrive:e1", "redrive:e2"]
        assert engine.order["calm"] == ["calm-c0", "calm-c1"]
    finally:
        engine.gate.set()
        worker._dispatcher.close(5)


def test_fetching_pauses_when_shared_buffer_is_full_including_partitions_assigned_later(
        ) -> None:
    engine, consumer = GatedEngine(), FakeConsumer([0, 1])
    worker = _worker(engine, consumer, max_buffered=6, max_per_tenant=2, max_overflow=100)
    try:
        for n in range(3):  # three tenants, two each: the shared buffer holds 6
            for d in _deliveries(f"tenant-{n}", 2, start=10 * n):
                worker._enqueue(f"tenant-{n}", d)
        worker._flow_control()
        assert consumer.paused == {0, 1}
        consumer.partitions.append(2)  # assigned while paused
        worker._flow_control()
        assert consumer.paused == {0, 1, 2}
        engine.gate.set()
        assert _wait(lambda: worker._dispatcher.pending() == 0)
        worker._flow_control()
        assert consumer.paused == set()
    finally:
        engine.gate.set()
        worker._dispatcher.close(5)


def test_the_overflows_are_bounded_too() -> None:
    engine, consumer = GatedEngine(), FakeConsumer([0])
    worker = _worker(engine, consumer, max_buffered=100, max_per_tenant=1, max_overflow=10)
    try:
        for d in _deliveries("flood", 12):
            worker._enqueue("flood", d)
        worker._flow_control()
        assert consumer.paused == {0}  # memory bound: 11 waiting >= 10
    finally:
        engine.gate.set()
        worker._dispatcher.close(5)


def test_revoked_partitions_leave_the_overflow() -> None:
    engine, consumer = GatedEngine(), FakeConsumer([0, 1])
    worker = _worker(engine, consumer, max_buffered=100, max_per_tenant=1, max_overflow=100)
    try:
        factory = EventFactory("flood")
        for i in range(6):
            event = factory.customer(f"c{i}", "C")
            worker._enqueue("flood", Delivery(Origin("t", i % 2, i), 0, event, b""))
        worker._enqueue("flood", Redrive("flood", "parked-1"))
        worker._drop_overflow({("t", 1)})
        assert worker.overflowed() == 3  # offsets 2 and 4 of partition 0, and the re-drive
        engine.gate.set()
        assert _wait(lambda: worker._dispatcher.pending() == 0 and worker.overflowed() == 0)
        assert engine.order["flood"] == ["c0", "c2", "c4", "redrive:parked-1"]
    finally:
        engine.gate.set()
        worker._dispatcher.close(5)




class DatabaseBlipEngine(GatedEngine):
    """The database is unreachable the first time a parked event is read."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def parked_payload(self, account_id: str, event_id: str) -> bytes | None:
        self.reads += 1
        if self.reads == 1:
            raise OperationalError("SELECT payload FROM parked_events", {},
                                   Exception("connection refused"))
        return super().parked_payload(account_id, event_id)


def test_a_redrive_survives_a_database_blip() -> None:
    engine = DatabaseBlipEngine()
    engine.gate.set()
    worker = _worker(engine, FakeConsumer([0]))
    try:
        worker._enqueue("tenant", Redrive("tenant", "parked-1"))
        assert _wait(lambda: engine.order.get("tenant") == ["redrive:parked-1"])
        assert engine.reads == 2  # retried, not dropped
    finally:
        worker._dispatcher.close(5)
