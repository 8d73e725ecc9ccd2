"""A slow, throttled tenant never delays the others sharing its partition."""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path

import httpx
import pytest

from producers.kafka import ensure_topics, make_producer
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, publish
from schemas.codec import AvroCodec
from schemas.status import SyncStatus, SyncStatusEvent
from service.config import Topics
from state.crypto import generate_key
from state.db import migrate

pytestmark = pytest.mark.e2e


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def test_slow_tenant_does_not_hold_up_its_partition(
        kafka_bootstrap: str, sandbox_url: str, tmp_path: Path) -> None:
    topics = Topics(f"hol{uuid.uuid4().hex[:8]}.")
    # One partition per topic: every tenant shares it with the slow one.
    ensure_topics(kafka_bootstrap, [*topics.changes, topics.status, topics.dead_letter],
                  partitions=1)
    db_url = f"sqlite:///{tmp_path / 'hol.db'}"
    migrate(db_url)
    key = generate_key()
    run = uuid.uuid4().hex[:6]
    slow, fast = f"acct-{run}-slow", [f"acct-{run}-fast{i}" for i in range(9)]
    for account in [slow, *fast]:
        connect_sandbox_account(db_url, key, sandbox_url, "quickbooks", account, f"r-{account}")
    httpx.put(f"{sandbox_url}/quickbooks/_sandbox/faults/r-{slow}",
              json={"latency_s": 2.0, "throttle_burst": 2}, timeout=10).raise_for_status()

    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-hol", "LOG_LEVEL": "warning",
           "RETRY_BASE_DELAY_S": "0.5"}
    reader = StatusReader(kafka_bootstrap, topics.status)
    producer = make_producer(kafka_bootstrap)
    factories = {account: EventFactory(account) for account in [slow, *fast]}

    def finals(statuses: list[SyncStatusEvent]) -> dict[str, SyncStatusEvent]:
        return {s.source_event_id: s for s in statuses if s.status == SyncStatus.SYNCED}

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        # Warm-up (not measured): the worker is up, assigned and connected to each tenant.
        warm = [factories[a].customer(f"{a}-warm", f"{a} warm-up") for a in fast]
        publish(producer, AvroCodec(), topics, warm)
        assert reader.wait_for(lambda s: len(finals(s)) >= len(warm), timeout=120)
        events = []
        for round_ in range(12):  # interleaved: the slow tenant's events sit among the others
            for account in [slow, *fast]:
                events.append(factories[account].customer(
                    f"{account}-c{round_}", f"{account} customer {round_}"))
        publish(producer, AvroCodec(), topics, events)
        sent = {e.event_id: e for e in events}
        assert reader.wait_for(lambda s: set(finals(s)) >= set(sent), timeout=180)
        assert worker.terminate() == 0
    reader.close()
    done = {k: v for k, v in finals(reader.statuses).items() if k in sent}
    latency = {eid: (s.recorded_at - sent[eid].occurred_at).total_seconds()
               for eid, s in done.items()}
    slow_lat = [v for eid, v in latency.items() if sent[eid].account_id == slow]
    fast_lat = [v for eid, v in latency.items() if sent[eid].account_id != slow]
    print(f"\nhead-of-line: fast tenants p50 {statistics.median(fast_lat):.2f}s "
          f"p99 {_p(fast_lat, 0.99):.2f}s (n={len(fast_lat)}); slow tenant p50 "
          f"{statistics.median(slow_lat):.2f}s p99 {_p(slow_lat, 0.99):.2f}s (n={len(slow_lat)})")
    # Every event of the other tenants finished before the slow tenant was half done:
    # they never queued behind it although they share its partition.
    slow_done = sorted(done[e].recorded_at for e in sent if sent[e].account_id == slow)
    fast_done = max(done[e].recorded_at for e in sent if sent[e].account_id != slow)
    assert fast_done < slow_done[len(slow_done) // 2]
    assert _p(fast_lat, 0.99) < statistics.median(slow_lat)
