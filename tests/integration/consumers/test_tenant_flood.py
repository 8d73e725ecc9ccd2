"""A flooded, throttled tenant waits alone: its events beyond its share of the
dispatcher wait in its own overflow instead of filling the buffer every tenant shares
(which would pause every partition and stall every tenant).

One tenant has 5,000 events queued behind a 60-a-minute limit, on the same partition as
nine other tenants whose events come after all of them. The worker runs in-process on
the real broker with an engine that honours the limit the way the real one does (a
local limiter wait defers the event without spending an attempt)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

from confluent_kafka import Producer

from consumers.engine import EngineResult, Origin
from consumers.worker import Worker, WorkerOptions
from producers.kafka import ensure_topics
from sandbox.scenario import EventFactory
from schemas.codec import AvroCodec
from schemas.events import event_from_avro, event_to_avro
from schemas.records import ChangeEvent

FLOOD, FLOODED = "tenant-flood", 5000
OTHERS, EACH = [f"tenant-{n}" for n in range(1, 10)], 20


class ThrottledEngine:
    """Instant for every tenant but FLOOD, which may do 60 events a minute."""

    def __init__(self) -> None:
        self.codec = AvroCodec()
        self.done: Counter[str] = Counter()
        self.latency_s: list[float] = []
        self._next_slot = 0.0
        self._lock = threading.Lock()

    def decode(self, payload: bytes) -> ChangeEvent:
        decoded = self.codec.decode(payload)
        return event_from_avro(decoded.schema_name, decoded.value)

    def reject(self, *args: Any) -> None:
        raise AssertionError(f"unexpected reject {args}")

    def process(self, event: ChangeEvent, payload: bytes, *, attempt: int = 1,
                origin: Origin | None = None, redrive: bool = False) -> EngineResult:
        now = time.monotonic()
        with self._lock:
            if event.account_id == FLOOD:
                if now < self._next_slot:
                    return EngineResult(retry_after_s=self._next_slot - now,
                                        spend_attempt=False)
                self._next_slot = now + 1.0
            else:
                self.latency_s.append(
                    time.time() - event.occurred_at.timestamp())
            self.done[event.account_id] += 1
        return EngineResult()

    def ready_parked(self) -> list[tuple[str, str]]:
        return []


class NoOutbox:
    def publish_all(self) -> int:
        return 0


def test_a_flooded_throttled_tenant_does_not_stall_the_others(kafka_bootstrap: str) -> None:
    topic = f"flood-{uuid.uuid4().hex[:8]}.customers"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)  # everyone shares the partition
    codec = AvroCodec()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})

    def produce(tenant: str, n: int) -> None:
        factory = EventFactory(tenant)
        for i in range(n):
            event = factory.customer(f"c-{i}", f"Customer {i}")
            while True:
                try:
                    producer.produce(topic, key=tenant.encode(),
                                     value=codec.encode("CustomerChangeEvent",
                                                        event_to_avro(event)))
                    break
                except BufferError:
                    producer.poll(0.1)

    produce(FLOOD, FLOODED)
    for tenant in OTHERS:
        produce(tenant, EACH)
    producer.flush(30)

    engine = ThrottledEngine()
    # The shared buffer is far smaller than the flood: before per-tenant shares, the
    # flood alone filled it, every partition paused, and the others were never fetched.
    worker = Worker(engine, NoOutbox(), WorkerOptions(  # type: ignore[arg-type]
        bootstrap=kafka_bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}", topics=[topic],
        max_in_flight=8, max_buffered=400, max_per_tenant=50, commit_interval_s=0.5,
        drain_timeout_s=2.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and \
                any(engine.done[t] < EACH for t in OTHERS):
            time.sleep(0.2)
        others = {t: engine.done[t] for t in OTHERS}
        flood_done = engine.done[FLOOD]
    finally:
        worker.stop()
        thread.join(30)
    assert others == dict.fromkeys(OTHERS, EACH), (others, flood_done)
    assert flood_done < FLOODED  # the flood is still queued: the others did not wait for it
    latencies = sorted(engine.latency_s)
    print(f"\nnine tenants' events: p50 {latencies[len(latencies) // 2]:.2f} s, max "
          f"{latencies[-1]:.2f} s after publication; the flooded tenant did {flood_done} "
          f"of {FLOODED} meanwhile")
