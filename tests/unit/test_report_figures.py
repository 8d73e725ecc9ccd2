"""`blueclerk-sync report` on a known stream: the figures, the filters, the files."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pyarrow.parquet as pq

from control.report import draw_chart, format_summary, percentile, summarise, write_table
from schemas.error_codes import ErrorCode
from schemas.status import SyncStatus, SyncStatusEvent

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def _s(event: str, account: str, provider: str, entity: str, status: SyncStatus,
       minute: int, duration: int | None = None, code: ErrorCode | None = None
       ) -> SyncStatusEvent:
    return SyncStatusEvent(source_event_id=event, account_id=account, entity_type=entity,
                           entity_id=f"{entity}-{event}", operation="create", status=status,
                           occurred_at=T0, provider=provider, error_code=code,
                           duration_ms=duration, recorded_at=T0 + dt.timedelta(minutes=minute))


STREAM = [
    _s("e1", "acct-a", "quickbooks", "customer", SyncStatus.SYNCED, 0, 100),
    _s("e2", "acct-a", "quickbooks", "customer", SyncStatus.WAITING_DEPENDENCY, 1,
       code=ErrorCode.MISSING_DEPENDENCY),
    _s("e2", "acct-a", "quickbooks", "customer", SyncStatus.SYNCED, 2, 200),
    _s("e3", "acct-b", "quickbooks", "customer", SyncStatus.SYNCED, 3, 300),
    _s("e4", "acct-a", "quickbooks", "customer", SyncStatus.FAILED, 4, 50,
       ErrorCode.VALIDATION_FAILED),
    _s("e5", "acct-b", "xero", "invoice", SyncStatus.SYNCED, 5, 1000),
    _s("e6", "acct-b", "xero", "invoice", SyncStatus.DEAD_LETTERED, 6, 4000,
       ErrorCode.RETRY_BUDGET_EXHAUSTED),
    _s("e7", "acct-b", "xero", "invoice", SyncStatus.SKIPPED, 7, 5, ErrorCode.PRE_CONNECTION),
    _s("e8", "acct-b", "xero", "invoice", SyncStatus.FAILED, 8, 20, ErrorCode.TOTAL_MISMATCH),
]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([50, 100, 200, 300], 50) == 100
    assert percentile([50, 100, 200, 300], 95) == 300
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 50) is None


def test_figures_per_provider_and_entity() -> None:
    report = summarise(STREAM)
    assert report["events"] == 8 and report["statuses_read"] == 9
    qbo = report["by_provider_entity"]["quickbooks/customer"]
    assert qbo["events"] == 4
    assert qbo["success_rate"] == 0.75  # 3 synced of 3 synced + 1 failed
    assert qbo["by_status"] == {"failed": 1, "synced": 3}
    assert qbo["latency_ms"] == {"p50": 100, "p95": 300, "p99": 300, "max": 300}
    assert qbo["by_error_code"]["validation_failed"]["count"] == 1
    assert "correct the record" in qbo["by_error_code"]["validation_failed"]["what_to_do"]
    xero = report["by_provider_entity"]["xero/invoice"]
    assert xero["success_rate"] == round(1 / 3, 4)  # skipped counts neither way
    assert xero["by_status"] == {"dead_lettered": 1, "failed": 1, "skipped": 1, "synced": 1}
    assert xero["latency_ms"]["p50"] == 20 and xero["latency_ms"]["p99"] == 4000
    assert report["accounts_most_failures"] == [{"account_id": "acct-b", "failures": 2},
                                                {"account_id": "acct-a", "failures": 1}]
    assert report["overall"]["success_rate"] == round(4 / 7, 4)
    text = format_summary(report)
    assert text.splitlines()[0].startswith("8 events (9 statuses read); success rate 57.1%")
    assert "retry_budget_exhausted x1: Retries ran out" in text
    assert "acct-b (2), acct-a (1)" in text


def test_filters_by_account_provider_and_window() -> None:
    assert summarise(STREAM, "acct-a")["events"] == 3
    assert summarise(STREAM, provider="xero")["events"] == 4
    window = summarise(STREAM, since=T0 + dt.timedelta(minutes=2),
                       until=T0 + dt.timedelta(minutes=5))
    assert window["events"] == 3  # e2 (its synced status), e3, e4
    assert window["by_provider_entity_status"] == {"quickbooks/customer/failed": 1,
                                                   "quickbooks/customer/synced": 2}


def test_csv_parquet_and_png(tmp_path: Path) -> None:
    assert write_table(STREAM, tmp_path / "s.csv") == 9
    with (tmp_path / "s.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[5]["status"] == "synced" and rows[5]["duration_ms"] == "1000"
    assert write_table(STREAM, tmp_path / "s.parquet") == 9
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.num_rows == 9 and table.column("error_code").to_pylist()[6] == \
        "retry_budget_exhausted"

    chart = tmp_path / "chart.png"
    draw_chart(STREAM, chart)
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1000, 700)
    import matplotlib.image

    assert matplotlib.image.imread(chart).shape[:2] == (700, 1000)  # decodes as an image
