"""Features the README names, run as an operator would run them: worker processes on the
real broker and the simulators.

- `SCHEMA_REGISTRY_URL`: events in the Confluent wire format through a Schema Registry
  (a minimal Confluent-compatible one served here: the endpoints confluent-kafka's
  SchemaRegistryClient calls), decoded by the worker fetching the writer schema by id,
  statuses published in the same format.
- `METRICS_PORT`: the worker's Prometheus metrics, scraped after the run and checked
  against the statuses.
- Several workers at once on one SQLite file (one consumer group).
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families

from bench.chaos import check_statuses, map_items
from producers.kafka import make_producer
from sandbox.books_check import books_mismatches, read_links
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, Week, field_service_week, publish
from sandbox.serve import free_port, serve_in_thread
from schemas.codec import AvroCodec
from schemas.records import ChangeEvent
from schemas.status import FINAL_STATUSES, SyncStatus, SyncStatusEvent
from service.config import Topics
from state.crypto import generate_key
from state.db import migrate

pytestmark = pytest.mark.e2e

FAST_LIMITS = {"XERO_RATE_PER_MINUTE": "100000", "XERO_RATE_PER_DAY": "10000000",
               "XERO_CONCURRENT": "20", "FRESHBOOKS_RATE_PER_MINUTE": "100000"}


def schema_registry_app() -> tuple[FastAPI, list[str]]:
    """A minimal Confluent Schema Registry: subjects, versions and ids in memory."""
    app = FastAPI()
    by_id: dict[int, str] = {}
    subjects: dict[str, list[int]] = {}
    requests: list[str] = []
    lock = threading.Lock()

    def _canonical(text: str) -> str:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))

    def _id_of(text: str) -> int:
        canonical = _canonical(text)
        for schema_id, known in by_id.items():
            if _canonical(known) == canonical:
                return schema_id
        schema_id = len(by_id) + 1
        by_id[schema_id] = text
        return schema_id

    def _version(subject: str, schema_id: int) -> dict[str, Any]:
        return {"subject": subject, "id": schema_id,
                "version": subjects[subject].index(schema_id) + 1, "schema": by_id[schema_id]}

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        requests.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    @app.post("/subjects/{subject}/versions")
    async def register(subject: str, request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("schemaType", "AVRO") != "AVRO":
            return JSONResponse({"error_code": 42201, "message": "AVRO only"}, 422)
        with lock:
            schema_id = _id_of(body["schema"])
            versions = subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
        return JSONResponse({"id": schema_id})

    @app.post("/subjects/{subject}")
    async def lookup(subject: str, request: Request) -> JSONResponse:
        body = await request.json()
        with lock:
            canonical = _canonical(body["schema"])
            for schema_id in subjects.get(subject, []):
                if _canonical(by_id[schema_id]) == canonical:
                    return JSONResponse(_version(subject, schema_id))
        return JSONResponse({"error_code": 40403, "message": "Schema not found"}, 404)

    @app.get("/schemas/ids/{schema_id}")
    async def by_schema_id(schema_id: int) -> JSONResponse:
        with lock:
            if schema_id not in by_id:
                return JSONResponse({"error_code": 40403, "message": "Schema not found"}, 404)
            return JSONResponse({"schema": by_id[schema_id], "schemaType": "AVRO"})

    @app.get("/subjects/{subject}/versions/latest")
    async def latest(subject: str) -> JSONResponse:
        with lock:
            if not subjects.get(subject):
                return JSONResponse({"error_code": 40401, "message": "Subject not found"}, 404)
            return JSONResponse(_version(subject, subjects[subject][-1]))

    @app.get("/subjects")
    async def all_subjects() -> list[str]:
        return sorted(subjects)

    return app, requests


@pytest.fixture
def schema_registry() -> Iterator[tuple[str, list[str]]]:
    app, requests = schema_registry_app()
    with serve_in_thread(app) as url:
        yield url, requests


def _raw_statuses(bootstrap: str, topic: str, codec: AvroCodec, want: int,
                  timeout: float = 120.0) -> tuple[list[bytes], list[SyncStatusEvent]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    raw: list[bytes] = []
    statuses: list[SyncStatusEvent] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(
                {s.source_event_id for s in statuses if s.status in FINAL_STATUSES}) < want:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            value = message.value()
            assert isinstance(value, bytes)
            raw.append(value)
            statuses.append(SyncStatusEvent.from_avro(codec.decode(value).value))
    finally:
        consumer.close()
    return raw, statuses


def test_schema_registry_wire_format_and_metrics_port(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path,
        schema_registry: tuple[str, list[str]]) -> None:
    registry_url, requests = schema_registry
    db_url = f"sqlite:///{tmp_path / 'registry.db'}"
    migrate(db_url)
    key = generate_key()
    account, realm = f"acct-{uuid.uuid4().hex[:6]}", f"R{uuid.uuid4().hex[:6]}"
    connect_sandbox_account(db_url, key, sandbox_url, "quickbooks", account, realm)
    factory = EventFactory(account)
    events = [factory.customer(f"c-{i}", f"Registry Customer {account} {i}",
                               email=f"c{i}@example.com") for i in range(8)]
    events += [factory.customer(f"c-{i}", f"Registry Customer {account} {i} renamed",
                                email=f"c{i}.new@example.com") for i in range(4)]
    producer_codec = AvroCodec(registry_url)
    publish(make_producer(kafka_bootstrap), producer_codec, topics, events)
    assert "POST /subjects/" + f"{topics.entity('customer')}-value/versions" in requests

    metrics_port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-registry",
           "LOG_LEVEL": "warning", "SCHEMA_REGISTRY_URL": registry_url,
           "METRICS_PORT": str(metrics_port)}
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        raw, statuses = _raw_statuses(kafka_bootstrap, topics.status,
                                      AvroCodec(registry_url), len(events))
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert worker.terminate() == 0

    # The worker (its own process, its own cache) fetched the writer schema by id, and
    # published statuses in the Confluent wire format too.
    assert any(r.startswith("GET /schemas/ids/") for r in requests), requests
    assert raw and all(r[0] == 0 for r in raw)
    assert check_statuses(statuses, {e.event_id for e in events}) == []
    finals = Counter(s.status for s in statuses if s.status in FINAL_STATUSES)
    assert finals == {SyncStatus.SYNCED: len(events)}

    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    synced = [s.value for s in families["bc_sync_events"].samples
              if s.name == "bc_sync_events_total" and s.labels == {
                  "entity_type": "customer", "status": "synced", "provider": "quickbooks"}]
    assert synced == [len(events)], families["bc_sync_events"].samples
    assert "bc_dispatch_pending" in families


def test_several_workers_on_one_sqlite_file(
        kafka_bootstrap: str, sandbox_url: str, topics: Topics, tmp_path: Path) -> None:
    """Three worker processes in one group share one SQLite file (fcntl tenant locks
    beside it): books equal the snapshots, one final status per event."""
    db_url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate(db_url)
    key = generate_key()
    run = uuid.uuid4().hex[:5].upper()
    tenants: dict[str, tuple[str, str, Week]] = {}
    for n, provider in enumerate(["freshbooks", "quickbooks", "xero"] * 2):
        account, tenant = f"acct-{run}-{n}", f"S{run}{n}"
        connect_sandbox_account(db_url, key, sandbox_url, provider, account, tenant)
        week = field_service_week(account, random.Random(n), currency="NZD" if provider ==
                                  "xero" else "USD", customers=10, items=4, invoices=12,
                                  payments=6, customer_edits=4, price_edits=2)
        map_items(db_url, key, sandbox_url, account, week)
        tenants[account] = (provider, tenant, week)
    events: list[ChangeEvent] = [e for _, _, w in tenants.values() for e in w.events]
    publish(make_producer(kafka_bootstrap), AvroCodec(), topics, events)
    distinct = {e.event_id for e in events}
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": "sync-sqlite-many",
           "LOG_LEVEL": "warning", **FAST_LIMITS}
    reader = StatusReader(kafka_bootstrap, topics.status)
    workers = [WorkerProcess(env, tmp_path / "workers.log").start() for _ in range(3)]
    try:
        done = reader.wait_for(lambda s: {x.source_event_id for x in s
                                          if x.status in FINAL_STATUSES} >= distinct,
                               timeout=300)
    finally:
        codes = [w.terminate() for w in workers if w.running]
    reader.poll(2)
    reader.close()
    finished = {s.source_event_id for s in reader.statuses if s.status in FINAL_STATUSES}
    assert done, (f"{len(finished & distinct)} of {len(distinct)} finished; last statuses "
                  f"{Counter(s.status.value for s in reader.statuses)}")
    assert codes == [0, 0, 0]
    assert check_statuses(reader.statuses, distinct) == []
    for account, (provider, tenant, week) in tenants.items():
        assert books_mismatches(sandbox_url, provider, tenant, week,
                                read_links(db_url, account)) == [], account
