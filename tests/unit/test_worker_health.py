"""The worker's liveness and readiness (service/health.py), served with its metrics."""

from __future__ import annotations

import time

import httpx

from sandbox.serve import free_port
from service.health import BrokerCheck, HealthServer, WorkerProbe


class FakeWorker:
    def __init__(self) -> None:
        self.last_poll_at = 0.0
        self.assigned = 0
        self.closed = False

    def assigned_partitions(self) -> int:
        if self.closed:
            raise RuntimeError("Consumer closed")
        return self.assigned


def test_ready_only_when_polling_assigned_and_the_brokers_answer() -> None:
    worker, broker = FakeWorker(), {"up": True}
    probe = WorkerProbe(worker, lambda: broker["up"], stale_after_s=30)
    assert probe.live()[0] and probe.ready() == (False, "the poll loop has not started")
    worker.last_poll_at = time.monotonic()
    assert probe.ready() == (False, "no partition assigned (yet)")
    worker.assigned = 3
    assert probe.ready() == (True, "polling, 3 partitions assigned")
    broker["up"] = False  # a broker outage: still alive, not ready
    assert probe.live()[0] and probe.ready() == (False, "the Kafka brokers do not answer")
    broker["up"] = True
    worker.last_poll_at = time.monotonic() - 120  # the poll loop is stuck
    assert not probe.live()[0] and not probe.ready()[0]
    worker.last_poll_at, worker.closed = time.monotonic(), True
    assert probe.ready() == (False, "the consumer is closed")


def test_broker_check_fails_when_nothing_listens() -> None:
    check = BrokerCheck(f"127.0.0.1:{free_port()}", timeout_s=1.0)
    assert check() is False


def test_endpoints_on_the_metrics_port() -> None:
    worker = FakeWorker()
    server = HealthServer(0, WorkerProbe(worker, lambda: True), host="127.0.0.1").start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        not_ready = httpx.get(f"{base}/healthz/ready")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"ok": False, "reason": "the poll loop has not started"}
        worker.last_poll_at, worker.assigned = time.monotonic(), 1
        assert httpx.get(f"{base}/healthz/ready").status_code == 200
        assert httpx.get(f"{base}/healthz/live").status_code == 200
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and "python_info" in metrics.text
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        server.close()
