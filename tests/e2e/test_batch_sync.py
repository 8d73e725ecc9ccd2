"""End to end on the real broker: a burst of one tenant's customers and items goes to
QuickBooks and Xero through their batch endpoints (issue 12).

The burst is published before the worker starts, so the worker finds many events of the
tenant ready at once. Batch use is seen from the worker's own request counter: fewer
provider write requests than records written is only possible with batch calls."""

from __future__ import annotations

import socket
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from bench.chaos import map_items
from producers.kafka import make_producer
from sandbox.books_check import Expected, books_mismatches, read_links
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.scenario import EventFactory, build_invoice, publish
from schemas.codec import AvroCodec
from schemas.records import ChangeEvent, Customer, Item
from schemas.status import FINAL_STATUSES, SyncStatus
from service.config import Topics
from state.crypto import generate_key

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _provider_requests(port: int, provider: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("bc_provider_requests_total{") and f'provider="{provider}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("provider", ["quickbooks", "xero"])
def test_a_burst_of_customers_and_items_lands_through_batch_calls(
        provider: str, kafka_bootstrap: str, sandbox_url: str, topics: Topics,
        tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'worker.db'}"
    from state.db import migrate

    migrate(db_url)
    key = generate_key()
    run = uuid.uuid4().hex[:6]
    account, tenant = f"acct-{run}", f"tenant{run}"
    connect_sandbox_account(db_url, key, sandbox_url, provider, account, tenant)
    items = [f"{run}-i{i:02d}" for i in range(40)]
    map_items(db_url, key, sandbox_url, account,
              SimpleNamespace(items=dict.fromkeys(items)))  # type: ignore[arg-type]
    f = EventFactory(account)
    events: list[ChangeEvent] = []
    customers: dict[str, Customer] = {}
    for i in range(60):
        cid = f"{run}-c{i:02d}"
        events.append(f.customer(cid, f"Burst {run} {i:02d}", email=f"{cid}@example.com"))
        customers[cid] = events[-1].record  # type: ignore[assignment]
    item_records: dict[str, Item] = {}
    for i, item_id in enumerate(items):
        events.append(f.event(Item(item_id, f"Part {run} {i:02d}",
                                   unit_price=Decimal("12.50"))))
        item_records[item_id] = events[-1].record  # type: ignore[assignment]
    # A record's create and update next to each other (so in one batch): the books end
    # with the update.
    twice = f"{run}-c00"
    events.insert(2, f.customer(twice, f"Burst {run} 00 renamed", email="renamed@example.com"))
    customers[twice] = events[2].record  # type: ignore[assignment]
    # An invoice on a customer and an item of the same burst.
    invoice = f.event(build_invoice(f"{run}-inv", f"{run}-c05", "B-1", "USD", "exclusive",
                                    [(items[3], "2", "12.50", "0", "0")]))
    events.append(invoice)
    publish(make_producer(kafka_bootstrap), AvroCodec(), topics, events)

    port = _free_port()
    reader = StatusReader(kafka_bootstrap, topics.status)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url,
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": f"batch-{run}",
           "LOG_LEVEL": "warning", "RETRY_BASE_DELAY_S": "0.2", "METRICS_PORT": str(port),
           "BLUECLERK_MODE": "local"}
    ids = {e.event_id for e in events}
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        done = reader.wait_for(
            lambda s: {x.source_event_id for x in s if x.status in FINAL_STATUSES} >= ids,
            timeout=240)
        requests = _provider_requests(port, provider)
        assert worker.terminate() == 0
    reader.poll(2)
    reader.close()
    assert done, "not every event reached a final status"
    final = [s for s in reader.statuses if s.status in FINAL_STATUSES]
    by_event: dict[str, list[SyncStatus]] = {}
    for s in final:
        by_event.setdefault(s.source_event_id, []).append(s.status)
    assert set(by_event) == ids and all(len(v) == 1 for v in by_event.values())
    assert {v[0] for v in by_event.values()} == {SyncStatus.SYNCED}
    # 101 customer/item writes and an invoice: without batches at least 102 write
    # requests; with batches of 30 (QuickBooks) or 50 (Xero) far fewer, plus reads.
    assert 0 < requests < 60, requests
    assert books_mismatches(sandbox_url, provider, tenant,
                            Expected(customers=customers, items=item_records,
                                     invoices={invoice.entity_id: invoice.record}),  # type: ignore[dict-item]
                            read_links(db_url, account)) == []
