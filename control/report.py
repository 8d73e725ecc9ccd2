"""`blueclerk-sync report`: what analysts ask of the sync-status topic, from the command line.

Reads the topic from the beginning (or from `--since`), keeps each status once
(statuses are at-least-once; `status_id` dedupes) and each event's latest status (its
outcome), and prints, per provider and entity type: how many events, the success rate,
counts by status and by error code with what to do, and latency percentiles; then the
accounts with the most failures. Filters: account, provider, time window (on
`recorded_at`). `--csv`/`--parquet` write the statuses read, one row each; `--chart`
draws statuses over time and latency percentiles into a PNG. `--json` prints the summary
as JSON. Definitions are in docs/sync-status.md ("Reading the report").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from schemas.codec import AvroCodec
from schemas.error_codes import ADVICE, ErrorCode
from schemas.status import FINAL_STATUSES, SyncStatus, SyncStatusEvent

__all__ = ["draw_chart", "filter_statuses", "format_summary", "percentile", "read_statuses",
           "register", "summarise", "write_table"]

_FAILED = (SyncStatus.FAILED, SyncStatus.DEAD_LETTERED)
COLUMNS = ("status_id", "source_event_id", "account_id", "provider", "entity_type",
           "entity_id", "entity_version", "provider_record_id", "operation", "status",
           "error_code", "message", "attempt", "occurred_at", "recorded_at", "duration_ms")


def read_statuses(bootstrap: str, topic: str, since: dt.datetime | None = None,
                  idle_s: float = 3.0, schema_registry_url: str | None = None
                  ) -> list[SyncStatusEvent]:
    """Every status on the topic (from `since`), read until the end of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"report-{uuid.uuid4()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        if since is not None:
            stamp = int(since.timestamp() * 1000)
            partitions = consumer.offsets_for_times(
                [TopicPartition(topic, p.partition, stamp) for p in partitions], timeout=10)
        consumer.assign(partitions)
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1]
                for p in partitions}
        codec, seen, out = AvroCodec(schema_registry_url), set(), []
        last_message = time.monotonic()
        while time.monotonic() - last_message < idle_s:
            message = consumer.poll(0.2)
            if message is None or message.error():
                positions = consumer.position(partitions)
                if all(p.offset >= ends[p.partition] for p in positions):
                    break
                continue
            last_message = time.monotonic()
            value = message.value()
            if not isinstance(value, bytes):
                continue
            status = SyncStatusEvent.from_avro(codec.decode(value).value)
            if status.status_id not in seen:
                seen.add(status.status_id)
                out.append(status)
        return out
    finally:
        consumer.close()


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def filter_statuses(statuses: Iterable[SyncStatusEvent], *, account: str | None = None,
                    provider: str | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[SyncStatusEvent]:
    """The statuses of one account and/or provider decided in [since, until)."""
    return [s for s in statuses
            if (account is None or s.account_id == account)
            and (provider is None or s.provider == provider)
            and (since is None or _utc(s.recorded_at) >= since)
            and (until is None or _utc(s.recorded_at) < until)]


def percentile(values: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile (q in 0..100) of sorted `values`; None when empty."""
    if not values:
        return None
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def _latest(statuses: Iterable[SyncStatusEvent]) -> dict[str, SyncStatusEvent]:
    """Each event's outcome: its last status in topic order, a final one winning over a
    later waiting one (a replayed duplicate)."""
    latest: dict[str, SyncStatusEvent] = {}
    for s in statuses:
        before = latest.get(s.source_event_id)
        if before is None or before.status not in FINAL_STATUSES or s.status in FINAL_STATUSES:
            latest[s.source_event_id] = s
    return latest


def _group(events: list[SyncStatusEvent]) -> dict[str, Any]:
    by_status = Counter(s.status.value for s in events)
    codes = Counter(s.error_code.value for s in events if s.error_code)
    synced = by_status.get("synced", 0)
    attempted = synced + sum(by_status.get(s.value, 0) for s in _FAILED)
    durations = sorted(s.duration_ms for s in events
                       if s.duration_ms is not None and s.status in FINAL_STATUSES)
    return {
        "events": len(events),
        "success_rate": round(synced / attempted, 4) if attempted else None,
        "by_status": dict(sorted(by_status.items())),
        "by_error_code": {code: {"count": n, "what_to_do": ADVICE[ErrorCode(code)]}
                          for code, n in codes.most_common()},
        "latency_ms": {"p50": percentile(durations, 50), "p95": percentile(durations, 95),
                       "p99": percentile(durations, 99),
                       "max": durations[-1] if durations else None},
    }


def summarise(statuses: list[SyncStatusEvent], account: str | None = None, *,
              provider: str | None = None, since: dt.datetime | None = None,
              until: dt.datetime | None = None, top_accounts: int = 5) -> dict[str, Any]:
    chosen = filter_statuses(statuses, account=account, provider=provider, since=since,
                             until=until)
    latest = _latest(chosen)
    groups: dict[str, list[SyncStatusEvent]] = defaultdict(list)
    for s in latest.values():
        groups[f"{s.provider or '-'}/{s.entity_type}"].append(s)
    outcome = Counter(f"{s.provider or '-'}/{s.entity_type}/{s.status.value}"
                      for s in latest.values())
    failures = Counter(s.account_id for s in latest.values() if s.status in _FAILED)
    overall = _group(list(latest.values()))
    return {
        "events": len(latest),
        "statuses_read": len(chosen),
        "filters": {"account": account, "provider": provider,
                    "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None},
        "overall": overall,
        "by_provider_entity": {key: _group(events) for key, events in sorted(groups.items())},
        "by_provider_entity_status": dict(sorted(outcome.items())),
        "errors": overall["by_error_code"],
        "duration_ms": overall["latency_ms"],
        "accounts_most_failures": [{"account_id": a, "failures": n}
                                   for a, n in failures.most_common(top_accounts)],
    }


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _ms(value: int | None) -> str:
    return "-" if value is None else f"{value} ms"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text for a terminal: the answer first, then the detail."""
    o = summary["overall"]
    lines = [f"{summary['events']} events ({summary['statuses_read']} statuses read); "
             f"success rate {_pct(o['success_rate'])}; latency p50 {_ms(o['latency_ms']['p50'])}"
             f", p95 {_ms(o['latency_ms']['p95'])}, p99 {_ms(o['latency_ms']['p99'])}"]
    shown = {k: v for k, v in summary["filters"].items() if v}
    if shown:
        lines.append("filters: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    for key, g in summary["by_provider_entity"].items():
        lat = g["latency_ms"]
        lines.append("")
        lines.append(f"{key}: {g['events']} events, success {_pct(g['success_rate'])}, "
                     f"p50/p95/p99 {_ms(lat['p50'])} / {_ms(lat['p95'])} / {_ms(lat['p99'])}")
        lines.append("  " + ", ".join(f"{status} {n}" for status, n in g["by_status"].items()))
        for code, detail in g["by_error_code"].items():
            lines.append(f"  {code} x{detail['count']}: {detail['what_to_do']}")
    if summary["accounts_most_failures"]:
        lines.append("")
        lines.append("accounts with the most failures: " + ", ".join(
            f"{a['account_id']} ({a['failures']})" for a in summary["accounts_most_failures"]))
    return "\n".join(lines)


def _row(s: SyncStatusEvent) -> dict[str, Any]:
    value = s.to_avro()
    return {c: value[c] for c in COLUMNS}


def write_table(statuses: Sequence[SyncStatusEvent], path: Path) -> int:
    """One row per status: CSV for `.csv`, Parquet for `.parquet`; returns the row count."""
    rows = [_row(s) for s in statuses]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {c: [r[c] for r in rows] for c in COLUMNS}
        pq.write_table(pa.table(columns) if rows else pa.table({c: [] for c in COLUMNS}),
                       path)
        return len(rows)
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: v.isoformat() if isinstance(v, dt.datetime) else v
                             for k, v in r.items()})
    return len(rows)


def draw_chart(statuses: Sequence[SyncStatusEvent], path: Path, buckets: int = 30) -> None:
    """Two panels in one PNG: final statuses per time bucket (stacked) and latency
    p50/p95/p99 per bucket, over `recorded_at`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals = sorted((s for s in statuses if s.status in FINAL_STATUSES),
                    key=lambda s: s.recorded_at)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    if finals:
        start, end = _utc(finals[0].recorded_at), _utc(finals[-1].recorded_at)
        width = max((end - start).total_seconds() / buckets, 1.0)
        edges = [start + dt.timedelta(seconds=width * i) for i in range(buckets)]

        def bucket(s: SyncStatusEvent) -> int:
            return min(int((_utc(s.recorded_at) - start).total_seconds() // width), buckets - 1)

        counts: dict[str, list[int]] = {st.value: [0] * buckets for st in FINAL_STATUSES}
        durations: list[list[int]] = [[] for _ in range(buckets)]
        for s in finals:
            counts[s.status.value][bucket(s)] += 1
            if s.duration_ms is not None:
                durations[bucket(s)].append(s.duration_ms)
        bottom_of = [0] * buckets
        colours = {"synced": "tab:green", "skipped": "tab:gray", "failed": "tab:orange",
                   "dead_lettered": "tab:red"}
        bar = dt.timedelta(seconds=width * 0.9)
        for name in ("synced", "skipped", "failed", "dead_lettered"):
            top.bar(edges, counts[name], width=bar, bottom=bottom_of, label=name,
                    color=colours[name], align="edge")
            bottom_of = [a + b for a, b in zip(bottom_of, counts[name], strict=True)]
        for q, style in ((50, "-"), (95, "--"), (99, ":")):
            points = [(edges[i], percentile(sorted(d), q)) for i, d in enumerate(durations)
                      if d]
            bottom.plot([p[0] for p in points], [p[1] for p in points], style, label=f"p{q}")
    top.set_ylabel("events (final status)")
    top.set_title("Sync statuses over time")
    top.legend(loc="upper left")
    bottom.set_ylabel("latency (ms)")
    bottom.set_title("Latency percentiles")
    bottom.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _when(text: str) -> dt.datetime:
    try:
        return _utc(dt.datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use an ISO 8601 time, e.g. "
                                         "2026-11-30T09:00:00+00:00") from None


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="summarise the sync-status topic for analysts")
    p.add_argument("--account", help="only this BlueClerk account")
    p.add_argument("--provider", choices=("quickbooks", "xero", "freshbooks"),
                   help="only this accounting system")
    p.add_argument("--since", type=_when, help="statuses recorded at or after (ISO 8601)")
    p.add_argument("--until", type=_when, help="statuses recorded before (ISO 8601)")
    p.add_argument("--since-minutes", type=float, help="only statuses from the last N minutes")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--csv", type=Path, metavar="PATH", help="write the statuses read as CSV")
    p.add_argument("--parquet", type=Path, metavar="PATH",
                   help="write the statuses read as Parquet")
    p.add_argument("--chart", type=Path, metavar="PATH.png",
                   help="draw statuses over time and latency percentiles")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from service.config import Settings

    settings = Settings.from_env()
    if not settings.kafka_bootstrap:
        print("error: KAFKA_BOOTSTRAP_SERVERS is not set; point it at the cluster holding "
              f"{settings.topics.status} (locally: `blueclerk-sync local-stack` prints it)",
              file=sys.stderr)
        return 2
    since = args.since
    if args.since_minutes:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=args.since_minutes)
    statuses = read_statuses(settings.kafka_bootstrap, settings.topics.status, since,
                             schema_registry_url=settings.schema_registry_url)
    chosen = filter_statuses(statuses, account=args.account, provider=args.provider,
                             since=since, until=args.until)
    summary = summarise(chosen)
    summary["filters"] = {"account": args.account, "provider": args.provider,
                          "since": since.isoformat() if since else None,
                          "until": args.until.isoformat() if args.until else None}
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    for path in (args.csv, args.parquet):
        if path is not None:
            rows = write_table(chosen, path)
            print(f"wrote {rows} statuses to {path}", file=sys.stderr)
    if args.chart is not None:
        draw_chart(chosen, args.chart)
        print(f"drew {args.chart}", file=sys.stderr)
    return 0
