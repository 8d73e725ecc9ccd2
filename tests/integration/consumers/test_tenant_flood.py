"""A flooded, throttled tenant waits alone: its events beyond its share of the
dispatcher wait in its own overflow instead of filling the buffer every tenant shares
(which would pause every partition and stall every tenant).

One tenant has 5,000 events queued behind a 60-a-minute limit, on the same partition as
nine other tenants whose events come after all of them. The worker runs in-process on
the real broker with the benchmark's engine (bench/tenant_flood.py), which honours the
limit the way the real one does (a local limiter wait defers the event without spending
an attempt); this is the bounded version of that benchmark."""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Producer

from bench.tenant_flood import FLOOD, NoOutbox, ThrottledEngine
from consumers.worker import Worker, WorkerOptions
from producers.kafka import ensure_topics
from sandbox.scenario import EventFactory
from schemas.codec import AvroCodec
from schemas.events import event_to_avro

FLOODED = 5000
OTHERS, EACH = [f"tenant-{n}" for n in range(1, 10)], 20


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

    engine = ThrottledEngine(per_minute=60)
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
