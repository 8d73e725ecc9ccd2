"""The worker's liveness and readiness, served with its Prometheus metrics on METRICS_PORT.

- `GET /healthz/live`: 200 while the poll loop turns (it polled within `stale_after_s`);
  503 when it is stuck, so the kubelet restarts the pod.
- `GET /healthz/ready`: 200 when the worker is polling, owns at least one partition and
  the broker answers a metadata request; 503 otherwise (starting up, not yet assigned,
  during a broker outage, draining). Replicas beyond the partition count stay not ready,
  which is why the KEDA ScaledObject caps replicas at the partition count.
- `GET /metrics`: the default registry plus the rate-limit quota gauge.

Each reply is a small JSON object saying why (`{"ready": false, "reason": ...}`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import REGISTRY

__all__ = ["BrokerCheck", "HealthServer", "PolledWorker", "WorkerProbe", "serve_worker_health"]


class PolledWorker(Protocol):
    """What the probe reads from a worker (consumers.worker.Worker)."""

    last_poll_at: float

    def assigned_partitions(self) -> int: ...


@dataclass
class BrokerCheck:
    """Whether the brokers answer a metadata request, cached for `ttl_s` so probes stay
    cheap. Its own quiet client: the worker's consumer is the poll thread's alone."""

    bootstrap: str
    ttl_s: float = 5.0
    timeout_s: float = 2.0
    _checked_at: float = field(default=-1e9, init=False)
    _ok: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _admin: Any = field(default=None, init=False)

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked_at < self.ttl_s:
                return self._ok
            if self._admin is None:
                from confluent_kafka.admin import AdminClient

                self._admin = AdminClient({"bootstrap.servers": self.bootstrap,
                                           "log_level": 0})
            try:
                metadata = self._admin.list_topics(timeout=self.timeout_s)
                self._ok = bool(metadata.brokers)
            except Exception:
                self._ok = False
            self._checked_at = time.monotonic()
            return self._ok


@dataclass
class WorkerProbe:
    worker: PolledWorker
    broker_up: Callable[[], bool]
    stale_after_s: float = 60.0

    def _polling(self) -> tuple[bool, str]:
        if not self.worker.last_poll_at:
            return False, "the poll loop has not started"
        idle = time.monotonic() - self.worker.last_poll_at
        if idle > self.stale_after_s:
            return False, f"the poll loop has not turned for {idle:.0f}s"
        return True, "polling"

    def live(self) -> tuple[bool, str]:
        polling, why = self._polling()
        # Not started yet counts as alive (startup: migrations, first connection).
        return (True, why) if not self.worker.last_poll_at else (polling, why)

    def ready(self) -> tuple[bool, str]:
        polling, why = self._polling()
        if not polling:
            return False, why
        try:
            assigned = self.worker.assigned_partitions()
        except RuntimeError:  # the consumer is closed: shutting down
            return False, "the consumer is closed"
        if assigned == 0:
            return False, "no partition assigned (yet)"
        if not self.broker_up():
            return False, "the Kafka brokers do not answer"
        return True, f"polling, {assigned} partitions assigned"


class HealthServer:
    """`/metrics`, `/healthz/live` and `/healthz/ready` on one port (a daemon thread)."""

    def __init__(self, port: int, probe: WorkerProbe | None, host: str = "0.0.0.0") -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/healthz/live", "/livez"):
                    self._probe(outer.probe.live() if outer.probe else (True, "no worker"))
                elif path in ("/healthz/ready", "/readyz"):
                    self._probe(outer.probe.ready() if outer.probe else (False, "no worker"))
                elif path in ("/metrics", "/"):
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
                else:
                    self._send(404, "application/json", b'{"error": "not found"}')

            def _probe(self, result: tuple[bool, str]) -> None:
                ok, reason = result
                body = json.dumps({"ok": ok, "reason": reason}).encode()
                self._send(200 if ok else 503, "application/json", body)

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds are not news

        self.probe = probe
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"health-{self.port}", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_worker_health(port: int, probe: WorkerProbe | None) -> HealthServer:
    return HealthServer(port, probe).start()
