"""The committed offset never passes an unfinished event, including across a rebalance.

The worker runs in-process on the real broker with an engine whose `process` can be held
on chosen events, so the test decides which events are unfinished."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.engine import EngineResult, Origin
from consumers.worker import Worker, WorkerOptions, consumer_config
from producers.kafka import ensure_topics
from sandbox.scenario import EventFactory
from schemas.codec import AvroCodec
from schemas.events import event_to_avro
from schemas.records import ChangeEvent


class HeldEngine:
    """Processes instantly, except events whose entity id is held until released."""

    def __init__(self, held: set[str]) -> None:
        self.codec = AvroCodec()
        self.held = held
        self.release = threading.Event()
        self.done: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def decode(self, payload: bytes) -> ChangeEvent:
        from schemas.events import event_from_avro

        decoded = self.codec.decode(payload)
        return event_from_avro(decoded.schema_name, decoded.value)

    def reject(self, *args: Any) -> None:
        raise AssertionError(f"unexpected reject {args}")

    def process(self, event: ChangeEvent, payload: bytes, *, attempt: int = 1,
                origin: Origin | None = None, redrive: bool = False) -> EngineResult:
        if event.entity_id in self.held:
            self.release.wait(300)  # the test releases it; never by timeout before that
        assert origin is not None
        with self._lock:
            self.done.append((origin.topic, origin.partition, origin.offset))
        return EngineResult()

    def ready_parked(self) -> list[tuple[str, str]]:
        return []


class NoOutbox:
    def publish_all(self) -> int:
        return 0


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)],
                                   timeout=10)
        return {tp.partition: tp.offset for tp in parts}
    finally:
        consumer.close()


def _wait_committed(bootstrap: str, group: str, topic: str, want: dict[int, int],
                    timeout: float = 60.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    committed = _committed(bootstrap, group, topic)
    while committed != want and time.monotonic() < deadline:
        time.sleep(0.3)
        committed = _committed(bootstrap, group, topic)
    return committed


def test_commits_stop_at_the_lowest_unfinished_offset_even_across_a_rebalance(
        kafka_bootstrap: str) -> None:
    topic = f"offsets-{uuid.uuid4().hex[:8]}.customers"
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    codec = AvroCodec()
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    events: dict[int, list[ChangeEvent]] = {0: [], 1: []}
    for partition in (0, 1):
        for i in range(30):
            tenant = f"tenant-{partition}-{i % 5}"  # five tenants per partition
            event = EventFactory(tenant).customer(f"c-{partition}-{i}", f"Customer {i}")
            events[partition].append(event)
            producer.produce(topic, partition=partition, key=tenant.encode(),
                             value=codec.encode("CustomerChangeEvent", event_to_avro(event)))
    producer.flush(10)
    # Hold the 10th event of each partition: 10 is the highest offset we may commit there.
    held = {events[0][10].entity_id, events[1][10].entity_id}
    engine = HeldEngine(held)
    worker = Worker(engine, NoOutbox(), WorkerOptions(  # type: ignore[arg-type]
        bootstrap=kafka_bootstrap, group_id=group, topics=[topic], max_in_flight=4,
        commit_interval_s=0.2, drain_timeout_s=2.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    # Delivery is at least once: a record may be processed twice (a rebalance replays
    # from the committed offset), so finished records are counted once each.
    def finished() -> set[tuple[int, int]]:
        with engine._lock:
            return {(p, o) for (_, p, o) in engine.done}

    deadline = time.monotonic() + 90
    while len(finished()) < 52 and time.monotonic() < deadline:  # all but 10, 15, 20, 25
        time.sleep(0.2)
    time.sleep(0.5)  # a record that should wait would have finished by now
    held_tenant = {(p, o) for p in (0, 1) for o in (10, 15, 20, 25)}
    assert not finished() & held_tenant, "the held tenant's events from 10 on must wait"
    assert len(finished()) == 52, "every event but the held tenant's from 10 on should finish"
    later_done = [o for (_, p, o) in engine.done if o > 10]
    assert later_done, "events after the held one should have finished (other tenants)"
    # Everything below offset 10 is done and 10 is not: the committed position is exactly
    # 10 on both partitions (the next record to read), neither less nor more.
    committed = _wait_committed(kafka_bootstrap, group, topic, {0: 10, 1: 10})
    assert committed == {0: 10, 1: 10}, committed

    # A second member joins: the worker must give up a partition while event 10 is still
    # in flight; what it commits on revoke must not pass it either.
    other = Consumer(consumer_config(WorkerOptions(kafka_bootstrap, group, [topic])))
    other.subscribe([topic])
    deadline = time.monotonic() + 60
    while not other.assignment() and time.monotonic() < deadline:
        other.poll(0.2)
    assert other.assignment(), "the second member never got a partition"
    taken = other.assignment()[0].partition
    committed = _committed(kafka_bootstrap, group, topic)
    assert committed[taken] == 10, committed  # committed on revoke: not past the held one
    other.close()

    engine.release.set()
    committed = _wait_committed(kafka_bootstrap, group, topic, {0: 30, 1: 30})
    worker.stop()
    thread.join(30)
    assert committed == {0: 30, 1: 30}, committed
