"""Worker memory over a long run: RSS after 10k events against RSS after many more.

    .venv/bin/python -m bench.memory [--events 1000000 --tenants 200 --time-budget 900]
    .venv/bin/python -m bench.memory --smoke

A compressed run: tiny customer events (each of `--customers` customers per tenant is
created once, then renamed again and again), many tenants, no added provider latency.
A real Apache Kafka broker and the provider simulators run in their own processes; the
worker is its own process too (bench/memory_worker.py: the service's Worker as
`blueclerk-sync worker` builds it, plus a probe). Events are published while the worker
runs, at most `--ahead` beyond what it has finished, so Kafka's fetch buffers are full
from the first checkpoint to the last.

At each checkpoint (10k, 100k, 250k, 500k, 1M events, as far as the run gets) the worker
reports its RSS (VmRSS from /proc) and the retained size of its rate limiters
(providers/ratelimit.py, every limiter the ProviderDirectory holds), its dispatcher
(with the per-tenant overflow) and its offset tracker, after a gc.collect(). The run
stops at `--events` or when `--time-budget` is spent, whichever comes first; it then
takes one more checkpoint. Nothing is extrapolated: the table shows the checkpoints the
run reached. Target: the last RSS within 10% of the RSS after 10k events.

A second table says where the RSS is at each checkpoint: anonymous and file-backed
pages, the heap SQLite holds now and at most so far (its page caches, up to cache_size
per connection: 2,000 KiB by default), glibc malloc's heap in use and free (what the
process freed but keeps resident) and its arena count, the worker's threads and the
database connections it has opened. Experiments, one at a time, without changing the
service: --worker-env NAME=VALUE (e.g. MALLOC_ARENA_MAX=2) in the worker's environment;
--sqlite-cache-kib N on its SQLite connections; --malloc-trim (malloc_trim(0) at each
checkpoint, printing the RSS after it: how much of the RSS is free malloc memory);
--trim-every SECONDS (malloc_trim(0) that often from the probe thread, as the service
could, with the time it took); --tracemalloc FRAMES (Python's allocations, and the
source lines that grew between checkpoints; slower, and the tracing itself takes memory).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.procs import SandboxProcess, load, machine_line
from bench.throughput import _kafka, _sqlalchemy_url
from producers.kafka import ensure_topics, make_producer
from sandbox.harness import connect_sandbox_account
from sandbox.scenario import EventFactory, publish
from schemas.codec import AvroCodec
from schemas.records import ChangeEvent
from service.config import Topics
from state.crypto import generate_key
from state.db import migrate

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = (10_000, 100_000, 250_000, 500_000, 1_000_000)


def _events(accounts: list[str], customers: int) -> Iterator[ChangeEvent]:
    """Round-robin over tenants and their customers: the first round creates each
    customer, every later one renames it (a real change, so every event writes)."""
    factories = {a: EventFactory(a) for a in accounts}
    n = 0
    while True:
        account = accounts[n % len(accounts)]
        index = (n // len(accounts)) % customers
        round_ = n // (len(accounts) * customers)
        yield factories[account].customer(f"c{index}", f"C{index} r{round_}",
                                          email=f"c{index}@x.example.com")
        n += 1


class _Child:
    """The worker process and the JSON lines it prints."""

    def __init__(self, env: dict[str, str], checkpoints: list[int], log: Path,
                 extra: Sequence[str] = ()) -> None:
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.memory_worker",
             "--checkpoints", ",".join(str(c) for c in checkpoints), *extra],
            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=self._log)
        self.processed = 0
        self.checkpoints: list[dict[str, Any]] = []
        self.first: dict[str, Any] | None = None
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, name="bench-memory-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                self.processed = max(self.processed, int(line.get("processed", 0)))
                if line["kind"] == "checkpoint":
                    self.checkpoints.append(line)
                    self._lines.put(line)
                elif line["kind"] == "start":
                    self.first = line

    def checkpoint_now(self, timeout: float = 120.0) -> None:
        """Ask for one more checkpoint (SIGUSR1) and wait for it."""
        before = len(self.checkpoints)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while len(self.checkpoints) == before and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._lines.get(timeout=0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


def _database(args: argparse.Namespace, tmp: Path, stack: contextlib.ExitStack) -> str:
    if not args.database_url:
        url = f"sqlite:///{tmp / 'memory.db'}"
    else:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        admin_url = _sqlalchemy_url(args.database_url)
        name = f"bench_mem_{uuid.uuid4().hex[:6]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        stack.callback(drop)
        url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    return url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--customers", type=int, default=5, help="customers per tenant")
    parser.add_argument("--time-budget", type=float, default=900.0,
                        help="stop publishing and take the last checkpoint after this long")
    parser.add_argument("--ahead", type=int, default=20_000,
                        help="publish at most this many events beyond those finished")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL URL (a fresh database); default a SQLite file")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny numbers (10 tenants, 400 events) for a bounded test")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="experiment: set in the worker's environment only "
                             "(e.g. MALLOC_ARENA_MAX=2); repeatable")
    parser.add_argument("--sqlite-cache-kib", type=int, default=0,
                        help="experiment: PRAGMA cache_size=-N on the worker's SQLite "
                             "connections (the service sets none: SQLite's default 2000)")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace the worker's Python allocations (slower) and print "
                             "the source lines that grew between checkpoints")
    parser.add_argument("--malloc-trim", action="store_true",
                        help="experiment: the worker calls malloc_trim(0) at each "
                             "checkpoint and reports its RSS after it as well")
    parser.add_argument("--trim-every", type=float, default=0.0, metavar="SECONDS",
                        help="experiment: the worker calls malloc_trim(0) this often (as "
                             "the service could) and reports the time the calls took")
    args = parser.parse_args(argv)
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    checkpoints = [c for c in CHECKPOINTS if c <= args.events]
    if args.smoke:
        args.events, args.tenants, args.time_budget, args.ahead = 400, 10, 120.0, 400
        checkpoints = [100]
    print(f"Memory benchmark (load avg at start {load()})", flush=True)
    with contextlib.ExitStack() as stack:
        bootstrap, kafka, _ = stack.enter_context(_kafka())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-mem-")))
        sandbox = stack.enter_context(SandboxProcess(tmp / "sandbox.log"))
        db_url = _database(args, tmp, stack)
        key = generate_key()
        topics = Topics(f"mem{uuid.uuid4().hex[:6]}.")
        ensure_topics(bootstrap, [*topics.changes, topics.status, topics.dead_letter])
        accounts = [f"mem-t{i:04d}" for i in range(args.tenants)]
        for account in accounts:
            connect_sandbox_account(db_url, key, sandbox.url, "quickbooks", account,
                                    f"r-{account}")
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": db_url,
               "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox.url,
               "BLUECLERK_MODE": "local", "TOPIC_PREFIX": topics.prefix,
               "CONSUMER_GROUP": f"bench-mem-{topics.prefix}", "LOG_LEVEL": "warning",
               **worker_env}
        extra = [f"--tracemalloc={args.tracemalloc}",
                 f"--sqlite-cache-kib={args.sqlite_cache_kib}",
                 *(["--malloc-trim"] if args.malloc_trim else []),
                 f"--trim-every={args.trim_every}"]
        child = _Child(env, checkpoints, tmp / "worker.log", extra)
        stack.callback(child.stop)
        producer = make_producer(bootstrap)
        codec = AvroCodec()
        source = _events(accounts, args.customers)
        published = 0
        started = time.monotonic()
        deadline = started + args.time_budget
        while child.processed < args.events and time.monotonic() < deadline:
            if child.proc.poll() is not None:
                print(f"  the worker process exited with {child.proc.returncode}")
                break
            if published < args.events and published - child.processed < args.ahead:
                chunk = [next(source) for _ in range(min(2_000, args.events - published))]
                published += publish(producer, codec, topics, chunk, flush=False)
                producer.poll(0)
            else:
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        producer.flush(30)
        if child.proc.poll() is None:
            child.checkpoint_now()
        _report(args, child, kafka, published, elapsed)
        reached = child.processed
        del producer  # before the broker stops, so its client does not retry a closed port
        gc.collect()
    return 0 if reached >= min(args.events, 1) and child.checkpoints else 1


def _report(args: argparse.Namespace, child: _Child, kafka: str, published: int,
            elapsed: float) -> None:
    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"\nMemory: worker process over {child.processed:,} events ({args.tenants} tenants "
          f"x {args.customers} customers, created then renamed; QuickBooks simulator in its "
          f"own process, +0 ms; {db})")
    print(f"  machine: {machine_line(kafka)}")
    print(f"  {'events':>10}{'RSS MB':>9}{'limiters':>10}{'limiters KB':>13}"
          f"{'dispatcher KB':>15}{'offsets KB':>12}{'gc objects':>12}{'s':>8}")
    t0 = child.first["t"] if child.first else 0.0
    rows = ([child.first] if child.first else []) + child.checkpoints
    for c in rows:
        print(f"  {c['processed']:>10,}{c['rss_mb']:>9.1f}{c['limiters']:>10}"
              f"{c['limiter_kb']:>13.1f}{c['dispatcher_kb']:>15.1f}{c['offsets_kb']:>12.1f}"
              f"{c['gc_objects']:>12,}{c['t'] - t0:>8.0f}")
    # Where the RSS is (bench/memory_worker.py native_mb): anonymous and file-backed
    # pages; the heap SQLite holds (its page caches: one per connection, up to
    # cache_size each); glibc malloc's heap in use and free, and its arenas; Python's
    # allocations when traced. NaN ("nan") where the platform cannot tell.
    print(f"  {'events':>10}{'anon MB':>9}{'file MB':>9}{'sqlite MB':>11}{'peak':>6}"
          f"{'malloc MB':>11}{'free MB':>9}{'arenas':>8}{'traced MB':>11}{'threads':>9}"
          f"{'db opens':>10}{'trimmed RSS':>13}")
    for c in rows:
        if "anon_mb" not in c:
            continue
        print(f"  {c['processed']:>10,}{c['anon_mb']:>9.1f}{c['file_mb']:>9.1f}"
              f"{c['sqlite_mb']:>11.1f}{c.get('sqlite_peak_mb', float('nan')):>6.1f}"
              f"{c['malloc_used_mb']:>11.1f}{c['malloc_free_mb']:>9.1f}"
              f"{c['malloc_arenas']:>8}{c['traced_mb']:>11.1f}{c['threads']:>9}"
              f"{c['db_connects']:>10}{c.get('trimmed_rss_mb', float('nan')):>13.1f}")
    extras = [f"worker env {' '.join(args.worker_env)}"] if args.worker_env else []
    if args.sqlite_cache_kib or (rows and rows[-1].get("sqlite_cache_size")):
        extras.append(f"SQLite cache_size {rows[-1].get('sqlite_cache_size', '?')}")
    if rows and args.trim_every:
        extras.append(f"malloc_trim(0) every {args.trim_every:g} s: {rows[-1]['trim_calls']} "
                      f"calls, {rows[-1]['trim_s'] * 1000:.0f} ms in all")
    if rows:
        extras.append(f"pool at the end: {rows[-1].get('db_pool', '?')}")
    print(f"  {'; '.join(extras)}")
    for c in rows:
        for where, kb, count in c.get("growth", []):
            print(f"    grew by {c['processed']:,}: {kb:>9.1f} KB {count:>+8} blocks  {where}")
    print(f"  published {published:,}, finished {child.processed:,} in {elapsed:.0f} s "
          f"({child.processed / elapsed:.0f} events/s)")
    base = next((c for c in child.checkpoints if c["processed"] >= (CHECKPOINTS[0]
                 if not args.smoke else 100)), None)
    last = child.checkpoints[-1] if child.checkpoints else None
    if base is not None and last is not None and last is not base:
        print(f"  RSS after {last['processed']:,} events / RSS after {base['processed']:,}: "
              f"{last['rss_mb']:.1f} / {base['rss_mb']:.1f} MB = "
              f"{last['rss_mb'] / base['rss_mb']:.3f} (target <= 1.10)")
    if child.processed < args.events:
        print(f"  the run reached {child.processed:,} of {args.events:,} events within the "
              f"{args.time_budget:.0f} s budget; nothing beyond is extrapolated")
    print(f"  load avg at the end: {load()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
