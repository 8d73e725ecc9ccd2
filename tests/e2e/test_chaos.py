"""Chaos on a real broker, the `make test` size of `make chaos` (bench/chaos.py, same
code): tenants on all three providers (customers renamed and re-addressed, item prices,
invoices with edits and voids, payments), two workers in one group on PostgreSQL
SIGKILLed and restarted, a third joining and leaving, the broker restarted mid-run,
10% 5xx (half after the write applied), 5% timeouts after the write, 429 bursts.

Every record in the books must equal BlueClerk's latest snapshot field by field (no
duplicate, nothing lost), and every event must end with exactly one final status:
`synced`, or `skipped` for a stale version or an unchanged record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_chaos
from sandbox.kafka_broker import KafkaBroker

pytestmark = pytest.mark.e2e

SMALL = ChaosConfig(tenants=15, customers=8, items=4, invoices=12, payments=8,
                    customer_edits=6, price_edits=2, workers=2, kills=5, broker_restarts=1,
                    settle_timeout_s=400.0)


@pytest.fixture
def own_broker() -> Iterator[KafkaBroker]:
    """A broker of this test's own: it is restarted in the middle of the run."""
    with KafkaBroker() as broker:
        yield broker


def test_chaos_books_equal_the_latest_snapshots_and_each_event_ends_once(
        own_broker: KafkaBroker, sandbox_url: str, fresh_postgres_url: str,
        tmp_path: Path) -> None:
    result = run_chaos(SMALL, own_broker, sandbox_url, fresh_postgres_url, tmp_path)
    print("\n" + result.summary())
    assert result.finished, result.summary()
    assert result.status_problems == [], result.status_problems[:10]
    assert result.book_problems == [], result.book_problems[:10]
    # The disruptions really happened to the service (the broker came back, the third
    # worker drained and exited 0), not only in this test's counters.
    assert result.left == 1
