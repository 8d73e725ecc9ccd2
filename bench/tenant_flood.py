"""One flooded, throttled tenant and nine normal ones on one partition: the nine tenants'
latency with the per-tenant share of the worker's buffer, and without it (the share set
beyond the flood, which is how the worker behaved before: the flood filled the shared
buffer and fetching paused for everyone).

`python -m bench.tenant_flood [--flood 5000 --each 20]` starts a Kafka broker (or uses
KAFKA_BOOTSTRAP_SERVERS). The worker runs in-process with an engine that lets the
flooded tenant do 60 events a minute (a local limiter wait: the event is deferred, as
the real engine does) and does the others at once. Latency is the time from publication
to processing of each of the nine tenants' events; a mode gives up after --timeout s
and reports how many of them were still waiting. tests/integration/consumers/
test_tenant_flood.py is the bounded-time version in `make test`.
"""

from __future__ import annotations

import argparse
import os
import platform
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

FLOOD = "tenant-flood"


class ThrottledEngine:
    def __init__(self, per_minute: int) -> None:
        self.codec = AvroCodec()
        self.done: Counter[str] = Counter()
        self.latency_s: list[float] = []
        self._gap = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def decode(self, payload: bytes) -> ChangeEvent:
        decoded = self.codec.decode(payload)
        return event_from_avro(decoded.schema_name, decoded.value)

    def reject(self, *args: Any) -> None:
        raise RuntimeError(f"unexpected reject {args}")

    def process(self, event: ChangeEvent, payload: bytes, *, attempt: int = 1,
                origin: Origin | None = None, redrive: bool = False) -> EngineResult:
        now = time.monotonic()
        with self._lock:
            if event.account_id == FLOOD:
                if now < self._next:
                    return EngineResult(retry_after_s=self._next - now, spend_attempt=False)
                self._next = now + self._gap
            else:
                self.latency_s.append(time.time() - event.occurred_at.timestamp())
            self.done[event.account_id] += 1
        return EngineResult()

    def ready_parked(self) -> list[tuple[str, str]]:
        return []


class NoOutbox:
    def publish_all(self) -> int:
        return 0


def _mode(bootstrap: str, share: int, flood: int, each: int, timeout: float) -> str:
    topic = f"flood-{uuid.uuid4().hex[:8]}.customers"
    ensure_topics(bootstrap, [topic], partitions=1)
    codec = AvroCodec()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    others = [f"tenant-{n}" for n in range(1, 10)]
    for tenant, n in [(FLOOD, flood), *((t, each) for t in others)]:
        factory = EventFactory(tenant)
        for i in range(n):
            value = codec.encode("CustomerChangeEvent",
                                 event_to_avro(factory.customer(f"c-{i}", f"C {i}")))
            while True:
                try:
                    producer.produce(topic, key=tenant.encode(), value=value)
                    break
                except BufferError:
                    producer.poll(0.1)
    producer.flush(60)
    engine = ThrottledEngine(60)
    worker = Worker(engine, NoOutbox(), WorkerOptions(  # type: ignore[arg-type]
        bootstrap=bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}", topics=[topic],
        max_in_flight=32, max_per_tenant=share, commit_interval_s=1.0, drain_timeout_s=2.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sum(engine.done[t] for t in others) < 9 * each:
        time.sleep(0.2)
    worker.stop()
    thread.join(30)
    got = sorted(engine.latency_s)
    waiting = 9 * each - len(got)
    if not got:
        return f"none of the nine tenants' {9 * each} events processed in {timeout:.0f} s"
    return (f"nine tenants' events: {len(got)} processed, {waiting} still waiting after "
            f"{timeout:.0f} s; latency p50 {got[len(got) // 2]:.2f} s, p99 "
            f"{got[min(len(got) - 1, int(len(got) * 0.99))]:.2f} s, max {got[-1]:.2f} s; "
            f"flooded tenant processed {engine.done[FLOOD]} of {flood}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=5000)
    parser.add_argument("--each", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    print(f"machine: {platform.platform()}; {os.cpu_count()} CPUs; Python "
          f"{platform.python_version()}; load avg "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")

    def run(bootstrap: str) -> None:
        for label, share in (("per-tenant share 50", 50),
                             ("no per-tenant share (before)", 10**9)):
            print(f"{label}: {_mode(bootstrap, share, args.flood, args.each, args.timeout)}",
                  flush=True)

    if configured:
        run(configured)
    else:
        from sandbox.kafka_broker import KafkaBroker

        with KafkaBroker() as broker:
            run(broker.bootstrap_servers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
