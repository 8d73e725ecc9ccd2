"""Consumer throughput: raw consume loop, naive sequential worker, the service's Worker.

Run from the repository root:

    .venv/bin/python -m bench.throughput [--tenants 20 --events-per-tenant 50 --latency-ms 20]
    .venv/bin/python -m bench.throughput --smoke          # tiny numbers, a few seconds
    .venv/bin/python -m bench.throughput --database-url postgresql://u:p@127.0.0.1/db

It starts a real Apache Kafka broker (unless KAFKA_BOOTSTRAP_SERVERS is set) and the
provider simulators in their own process (fast limits), gives every QuickBooks realm an added
latency per request (the provider, not the machine, dominates like in production),
connects N tenants and publishes the same workload of customer events (creates, then
updates) three times, each to fresh topics (3 partitions), a fresh database and fresh
realms, so the modes do not interfere:

  A  raw consume loop: a confluent Consumer reading and Avro-decoding every record,
     no provider calls, no commits: the ceiling of the Kafka side;
  B  naive sequential worker: one thread; per record engine.process(...), then a
     synchronous commit (a simple at-least-once consumer);
  C  the service's Worker (key-ordered dispatch, MAX_IN_FLIGHT as the service's default)
     in a thread, until every event has a final status in processed_events.

Every consumer joins its group before the burst is published, so group joins are not
timed. Wall time runs from the first publish to the last final status (A: the last
decoded record); latency is status recorded_at - event occurred_at (A: decode time -
occurred_at). Peak RSS is the process's high-water mark over the phase (reset through
/proc/self/clear_refs where Linux allows it), and covers the in-process sandbox too.
It prints figures and never asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import math
import os
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python bench/throughput.py`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from confluent_kafka import Consumer, KafkaException, Message  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from sqlalchemy import Engine, create_engine, event, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.procs import (  # noqa: E402
    CpuSampler,
    PgBackends,
    SandboxProcess,
    cpu_s,
    fmt,
    thread_cpu_s,
)
from bench.procs import machine_line as procs_machine_line  # noqa: E402
from consumers.engine import Origin  # noqa: E402
from producers.dead_letters import KafkaDeadLetterSink  # noqa: E402
from producers.kafka import ensure_topics, make_producer  # noqa: E402
from producers.outbox import OutboxPublisher  # noqa: E402
from providers.http import PROVIDER_REQUESTS  # noqa: E402
from sandbox.harness import connect_sandbox_account  # noqa: E402
from sandbox.scenario import EventFactory, publish  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from schemas.events import event_from_avro  # noqa: E402
from schemas.records import ChangeEvent  # noqa: E402
from schemas.status import FINAL_STATUSES, SyncStatusEvent  # noqa: E402
from service.config import Settings, Topics  # noqa: E402
from state.crypto import generate_key  # noqa: E402
from state.db import migrate  # noqa: E402

FINAL = sorted(s.value for s in FINAL_STATUSES)
MODES = {"raw": "A raw consume + decode", "naive": "B naive sequential",
         "worker": "C service Worker"}


# --------------------------------------------------------------------------- measuring


def _rss_reset() -> bool:
    """Reset the process's peak-RSS mark (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    """VmHWM (peak since the last reset) in MB, else the lifetime ru_maxrss."""
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024 / 1024


class _Clock:
    """Process CPU time (every thread: engine, sandbox, librdkafka) against wall time."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.monotonic(), self._process_cpu()

    @staticmethod
    def _process_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def cpu_s(self) -> float:
        return self._process_cpu() - self._cpu

    def cpu_pct(self) -> float:
        wall = time.monotonic() - self._wall
        return (self._process_cpu() - self._cpu) / wall * 100 if wall > 0 else float("nan")


class _DbCounter:
    """Counts the SQL statements (before_cursor_execute) and the transactions (commit and
    rollback) of one SQLAlchemy engine: the service's, not the benchmark's own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.statements = self.transactions = self.checkouts = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "commit", self._transaction)
        event.listen(engine, "rollback", self._transaction)

    def _statement(self, *_: object) -> None:
        self.statements += 1

    def _transaction(self, *_: object) -> None:
        self.transactions += 1

    def _checkout(self, *_: object) -> None:
        self.checkouts += 1

    def reset(self) -> None:
        self.statements = self.transactions = self.checkouts = 0

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._statement)
        event.remove(self._engine, "checkout", self._checkout)
        event.remove(self._engine, "commit", self._transaction)
        event.remove(self._engine, "rollback", self._transaction)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def _pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Result:
    mode: str
    events: int
    done: int = 0
    wall_s: float = float("nan")
    latencies_s: list[float] = field(default_factory=list)
    rss_mb: float = float("nan")
    cpu_pct: float = float("nan")  # process CPU (all threads) over publish..done, % of 1 core
    heap_peak_mb: float | None = None
    cpu_s: float = float("nan")  # process CPU seconds over publish..done
    statements: int = 0  # SQL statements the service's engine executed over publish..done
    transactions: int = 0  # its commits + rollbacks over publish..done
    checkouts: int = 0  # its pool checkouts over publish..done
    cpu: dict[str, float] = field(default_factory=dict)  # CPU s per process, same interval
    load_before: str = ""
    load_after: str = ""
    outcomes: Counter[str] = field(default_factory=Counter)
    # The provider HTTP calls the service made over publish..done, by outcome ("ok",
    # "throttled" for a provider's 429, ...): bc_provider_requests_total's increase.
    provider_calls: Counter[str] = field(default_factory=Counter)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else float("nan")

    def row(self) -> str:
        p50 = p99 = "-"
        if self.latencies_s:
            p50 = f"{_pct(self.latencies_s, 0.50) * 1000:.0f}"
            p99 = f"{_pct(self.latencies_s, 0.99) * 1000:.0f}"
        return (f"  {MODES[self.mode]:<24}{self.done:>5}/{self.events:<5}{self.wall_s:>8.2f}"
                f"{self.rate:>10.1f}{p50:>9}{p99:>9}{self.rss_mb:>9.0f}"
                f"{self.cpu_pct:>7.0f}%   "
                f"{self.load_before} -> {self.load_after}")


HEADER = (f"  {'mode':<24}{'final/sent':<11}{'wall s':>7}{'events/s':>10}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'RSS MB':>9}{'CPU':>8}   load avg 1/5/15 before -> after")


# --------------------------------------------------------------------------- environment


@dataclass
class Env:
    bootstrap: str
    kafka: str
    sandbox_url: str
    database_url: str | None  # None: a fresh SQLite file per mode
    tmp: Path
    token_key: str
    provider: str = "quickbooks"
    sandbox_pid: int | None = None  # the simulators' own process
    broker_pid: int | None = None  # None: an external broker (its CPU is not read)
    databases: dict[str, str] = field(default_factory=dict)  # mode -> PostgreSQL db name
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def fresh_database(self, mode: str) -> str:
        if self.database_url is None:
            url = f"sqlite:///{self.tmp / f'{mode}.db'}"
        else:
            self.databases[mode] = f"bench_{self.run}_{mode}"
            url = self._fresh_postgres(self.databases[mode])
        migrate(url)
        return url

    def _fresh_postgres(self, name: str) -> str:
        assert self.database_url is not None
        base = make_url(_sqlalchemy_url(self.database_url))
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        self.cleanups.append(drop)
        return base.set(database=name).render_as_string(hide_password=False)


def _sqlalchemy_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@contextlib.contextmanager
def _kafka() -> Iterator[tuple[str, str, int | None]]:
    """(bootstrap servers, description, the broker JVM's pid or None when external)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external, f"external broker at {external}", None
        return
    from sandbox.kafka_broker import KAFKA_VERSION, KafkaBroker

    started = time.monotonic()
    with KafkaBroker() as broker:
        print(f"  Apache Kafka {KAFKA_VERSION} (KRaft, single node, Maven jars) started in "
              f"{time.monotonic() - started:.1f} s at {broker.bootstrap_servers}", flush=True)
        yield (broker.bootstrap_servers, f"Apache Kafka {KAFKA_VERSION} (local KRaft node)",
               broker.pid)


def _settings(env: Env, topics: Topics, db_url: str, group: str, max_in_flight: int | None,
              log_level: str) -> Settings:
    base = Settings.from_env()
    return dataclasses.replace(
        base, kafka_bootstrap=env.bootstrap, database_url=db_url,
        token_key=env.token_key, topics=topics, consumer_group=group,
        max_in_flight=max_in_flight or base.max_in_flight, log_level=log_level)


def _topics(env: Env, mode: str) -> Topics:
    topics = Topics(f"bench{env.run}{mode}.")
    ensure_topics(env.bootstrap, [*topics.changes, topics.status, topics.dead_letter,
                                  topics.prefix + "warmup"], partitions=3)
    return topics


def _connect(env: Env, db_url: str, accounts: list[str], latency_s: float) -> None:
    for account in accounts:
        tenant = f"r-{account}"
        connect_sandbox_account(db_url, env.token_key, env.sandbox_url, env.provider,
                                account, tenant)
        httpx.put(f"{env.sandbox_url}/{env.provider}/_sandbox/faults/{tenant}",
                  json={"latency_s": latency_s}, timeout=10).raise_for_status()


def _worker_cpu_s() -> float:
    """CPU of this process minus its main thread: the consumer and engine threads and
    librdkafka's, not the main thread that publishes the burst and waits for the end."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime - thread_cpu_s(threading.main_thread().native_id
                                                          or os.getpid())


def _sampler(env: Env, mode: str, counter: _FinalCounter | None) -> CpuSampler:
    """CPU of the worker (this process), the simulators, the broker and, on PostgreSQL,
    the backends serving the mode's database (the benchmark's own counter excluded)."""
    sandbox_pid, broker_pid = env.sandbox_pid, env.broker_pid
    sources: dict[str, Callable[[], float]] = {
        "worker": _worker_cpu_s,
        "simulator": partial(cpu_s, sandbox_pid) if sandbox_pid else _nan,
        "broker": partial(cpu_s, broker_pid) if broker_pid else _nan}
    pg = None
    if mode in env.databases and env.database_url is not None:
        pg = PgBackends(_sqlalchemy_url(env.database_url), env.databases[mode],
                        exclude=counter.backend_pids if counter else set)
    return CpuSampler(sources, pg)


def _provider_calls() -> Counter[str]:
    """bc_provider_requests_total by outcome, summed over providers (this process's)."""
    calls: Counter[str] = Counter()
    for metric in PROVIDER_REQUESTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                calls[sample.labels["outcome"]] += int(sample.value)
    return calls


def _nan() -> float:
    return float("nan")


def _accounts(env: Env, mode: str, tenants: int) -> list[str]:
    return [f"b{env.run}{mode[0]}-t{i:03d}" for i in range(tenants)]


def _workload(accounts: list[str], per_tenant: int) -> list[ChangeEvent]:
    """Per tenant: ceil(n/2) customer creates, then updates of the first customers;
    tenants interleaved round-robin. occurred_at is now, just before the publish."""
    creates = math.ceil(per_tenant / 2)
    factories = {a: EventFactory(a) for a in accounts}
    events: list[ChangeEvent] = []
    for n in range(per_tenant):
        for account in accounts:
            tag = account.rsplit("-", 1)[-1]
            i, round_ = (n, "") if n < creates else (n - creates, " (moved)")
            events.append(factories[account].customer(
                f"cust-{i:04d}", f"Customer {tag}-{i:04d}{round_}",
                email=f"c{i}{'.new' if round_ else ''}@{tag}.example.com"))
    return events


def _wait_assigned(bootstrap: str, group: str, partitions: int, timeout: float = 60) -> None:
    """Block until the group's members hold every partition (joins are not timed)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaException, TimeoutError):
            desc = admin.describe_consumer_groups(
                [group], request_timeout=5)[group].result(timeout=10)
            held = sum(len(m.assignment.topic_partitions) for m in desc.members
                       if m.assignment is not None)
            if held >= partitions:
                return
        time.sleep(0.1)
    raise TimeoutError(f"consumer group {group} got no assignment within {timeout:.0f}s")


def _publish(env: Env, topics: Topics, accounts: list[str],
             per_tenant: int) -> tuple[dt.datetime, list[ChangeEvent]]:
    """Warm a producer up (connection, idempotent producer id), then build the workload
    (occurred_at is now) and publish it in one burst; returns when it started."""
    producer = make_producer(env.bootstrap)
    producer.produce(topics.prefix + "warmup", key=b"warmup", value=b"")
    producer.flush(30)
    started = dt.datetime.now(dt.UTC)
    events = _workload(accounts, per_tenant)
    publish(producer, AvroCodec(), topics, events)
    return started, events


class _FinalCounter:
    """Counts processed_events rows with a final status, on its own read-only engine
    (one connection: on PostgreSQL its backend is left out of the server's CPU)."""

    def __init__(self, db_url: str) -> None:
        self._engine = create_engine(_sqlalchemy_url(db_url), pool_size=1, max_overflow=0)
        self._query = text("SELECT count(*) FROM processed_events WHERE status IN ("
                           + ", ".join(f"'{s}'" for s in FINAL) + ")")
        self._pids: set[int] = set()
        if self._engine.dialect.name == "postgresql":
            with self._engine.connect() as conn:
                self._pids.add(int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one()))

    def backend_pids(self) -> set[int]:
        return self._pids

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(self._query).scalar_one())

    def wait(self, n: int, timeout: float, alive: Callable[[], bool],
             tick: Callable[[], None] = lambda: None) -> int:
        deadline = time.monotonic() + timeout
        done = self.count()
        while done < n and time.monotonic() < deadline and alive():
            time.sleep(0.1)
            tick()
            done = self.count()
        return done

    def close(self) -> None:
        self._engine.dispose()


def _statuses(db_url: str) -> list[SyncStatusEvent]:
    """The status events the run recorded (the outbox: the same rows it publishes)."""
    codec = AvroCodec()
    engine = create_engine(_sqlalchemy_url(db_url))
    try:
        with engine.connect() as conn:
            values = conn.execute(text(
                "SELECT value FROM outbox WHERE topic_kind = 'status' ORDER BY id")).scalars()
            return [SyncStatusEvent.from_avro(codec.decode(v).value) for v in values]
    finally:
        engine.dispose()


def _score(result: Result, db_url: str, started: dt.datetime) -> None:
    finals: dict[str, SyncStatusEvent] = {}
    for status in _statuses(db_url):
        if status.status in FINAL_STATUSES:
            finals.setdefault(status.source_event_id, status)
    result.outcomes = Counter(s.status.value for s in finals.values())
    if finals:
        result.latencies_s = [(s.recorded_at - s.occurred_at).total_seconds()
                              for s in finals.values()]
        last = max(s.recorded_at for s in finals.values())
        result.wall_s = (last - started).total_seconds()


# --------------------------------------------------------------------------- the modes


def run_raw(env: Env, args: argparse.Namespace) -> Result:
    """A: read and Avro-decode every record; no provider, no database, no commits."""
    topics = _topics(env, "raw")
    accounts = _accounts(env, "raw", args.tenants)
    result = Result("raw", args.tenants * args.events_per_tenant)
    group = f"bench-{env.run}-raw"
    consumer = Consumer({"bootstrap.servers": env.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe(topics.changes)
    codec = AvroCodec()
    latencies: list[float] = []
    last: list[dt.datetime] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set() and len(latencies) < result.events:
            message = consumer.poll(0.1)
            if message is None or message.error():
                continue
            value = message.value()
            assert isinstance(value, bytes)
            decoded = codec.decode(value)
            event = event_from_avro(decoded.schema_name, decoded.value)
            now = dt.datetime.now(dt.UTC)
            latencies.append((now - event.occurred_at).total_seconds())
        last.append(dt.datetime.now(dt.UTC))

    thread = threading.Thread(target=loop, name="bench-raw", daemon=True)
    _rss_reset()
    result.load_before = _load()
    thread.start()
    _wait_assigned(env.bootstrap, group, len(topics.changes) * 3)
    clock = _Clock()
    sampler = _sampler(env, "raw", None)
    sampler.start()
    started, _ = _publish(env, topics, accounts, args.events_per_tenant)
    thread.join(timeout=args.timeout)
    result.cpu_pct = clock.cpu_pct()
    result.cpu = sampler.stop()
    stop.set()
    thread.join()
    consumer.close()
    result.rss_mb, result.load_after = _rss_peak_mb(), _load()
    result.done, result.latencies_s = len(latencies), latencies
    # The loop ends right after the last decode; latencies count from each event's creation.
    result.wall_s = (last[0] - started).total_seconds()
    result.outcomes = Counter(decoded=len(latencies))
    return result


def run_naive(env: Env, args: argparse.Namespace) -> Result:
    """B: one thread; each record through engine.process, then a synchronous commit."""
    from service.bootstrap import build_engine, build_services

    topics = _topics(env, "naive")
    db_url = env.fresh_database("naive")
    accounts = _accounts(env, "naive", args.tenants)
    _connect(env, db_url, accounts, args.latency_ms / 1000)
    group = f"bench-{env.run}-naive"
    settings = _settings(env, topics, db_url, group, 1, args.log_level)
    services = build_services(settings, run_migrations=False)
    producer = make_producer(env.bootstrap)
    engine = build_engine(services, KafkaDeadLetterSink(producer, topics.dead_letter))
    outbox = OutboxPublisher(services.db, producer, topics)
    db_counter = _DbCounter(services.db.engine)
    consumer = Consumer({"bootstrap.servers": env.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe(topics.changes)
    result = Result("naive", args.tenants * args.events_per_tenant)
    stop = threading.Event()
    errors: list[BaseException] = []

    def handle(message: Message) -> None:
        payload = message.value()
        assert isinstance(payload, bytes)
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        event = engine.decode(payload)
        attempt = 1
        while True:  # a simple consumer retries in place, holding everything behind it
            outcome = engine.process(event, payload, attempt=attempt,
                                     origin=Origin(topic, partition, offset))
            if outcome.retry_after_s is None or stop.is_set():
                break
            attempt += int(outcome.spend_attempt)
            time.sleep(outcome.retry_after_s)
        consumer.commit(message=message, asynchronous=False)

    def loop() -> None:
        last_outbox = time.monotonic()
        try:
            while not stop.is_set():
                message = consumer.poll(0.1)
                if message is not None and not message.error():
                    handle(message)
                if time.monotonic() - last_outbox >= 1.0:  # statuses out, as the Worker does
                    outbox.publish_all()
                    last_outbox = time.monotonic()
            outbox.publish_all()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=loop, name="bench-naive", daemon=True)
    counter = _FinalCounter(db_url)
    _rss_reset()
    result.load_before = _load()
    thread.start()
    _wait_assigned(env.bootstrap, group, len(topics.changes) * 3)
    clock = _Clock()
    sampler = _sampler(env, "naive", counter)
    sampler.start()
    db_counter.reset()
    calls_before = _provider_calls()
    started, _ = _publish(env, topics, accounts, args.events_per_tenant)
    result.done = counter.wait(result.events, args.timeout, thread.is_alive, sampler.tick)
    result.provider_calls = _provider_calls() - calls_before
    result.cpu_pct, result.cpu_s = clock.cpu_pct(), clock.cpu_s()
    result.cpu = sampler.stop()
    sampler.close()
    result.statements, result.transactions = db_counter.statements, db_counter.transactions
    result.checkouts = db_counter.checkouts
    db_counter.close()
    result.rss_mb, result.load_after = _rss_peak_mb(), _load()
    stop.set()
    thread.join(timeout=60)
    consumer.close()
    counter.close()
    producer.flush(10)
    _score(result, db_url, started)
    services.close()
    if errors:
        result.note = f"consumer thread failed: {errors[0]!r}"
    return result


def run_worker(env: Env, args: argparse.Namespace) -> Result:
    """C: the service's Worker (build_worker) in a thread of this process."""
    from service.bootstrap import build_services, build_worker

    topics = _topics(env, "worker")
    db_url = env.fresh_database("worker")
    accounts = _accounts(env, "worker", args.tenants)
    _connect(env, db_url, accounts, args.latency_ms / 1000)
    group = f"bench-{env.run}-worker"
    settings = _settings(env, topics, db_url, group, args.max_in_flight, args.log_level)
    services = build_services(settings, run_migrations=False)
    worker = build_worker(services)
    db_counter = _DbCounter(services.db.engine)
    result = Result("worker", args.tenants * args.events_per_tenant)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=run, name="bench-worker", daemon=True)
    counter = _FinalCounter(db_url)
    _rss_reset()
    if args.tracemalloc:
        tracemalloc.start()
    result.load_before = _load()
    thread.start()
    _wait_assigned(env.bootstrap, group, len(topics.changes) * 3)
    clock = _Clock()
    sampler = _sampler(env, "worker", counter)
    sampler.start()
    db_counter.reset()
    calls_before = _provider_calls()
    started, _ = _publish(env, topics, accounts, args.events_per_tenant)
    result.done = counter.wait(result.events, args.timeout, thread.is_alive, sampler.tick)
    result.provider_calls = _provider_calls() - calls_before
    result.cpu_pct, result.cpu_s = clock.cpu_pct(), clock.cpu_s()
    result.cpu = sampler.stop()
    sampler.close()
    result.statements, result.transactions = db_counter.statements, db_counter.transactions
    result.checkouts = db_counter.checkouts
    db_counter.close()
    result.rss_mb, result.load_after = _rss_peak_mb(), _load()
    if args.tracemalloc:
        result.heap_peak_mb = tracemalloc.get_traced_memory()[1] / 1024 / 1024
        tracemalloc.stop()
    worker.stop()
    thread.join(timeout=60)
    counter.close()
    _score(result, db_url, started)
    services.close()
    if errors:
        result.note = f"worker thread failed: {errors[0]!r}"
    return result


RUNNERS: dict[str, Callable[[Env, argparse.Namespace], Result]] = {
    "raw": run_raw, "naive": run_naive, "worker": run_worker}


# --------------------------------------------------------------------------- report


def machine_line(kafka: str) -> str:
    return procs_machine_line(kafka)


SPLIT = ("worker", "simulator", "broker", "postgres")


def _split_rows(results: list[Result]) -> list[str]:
    """CPU ms per event of each process over the same interval, and database work."""
    rows = [f"  {'per event':<24}{'worker':>8}{'simulator':>11}{'broker':>8}{'postgres':>10}"
            f"{'statements':>12}{'transactions':>14}{'checkouts':>11}"]
    for r in results:
        if not r.done:
            continue
        ms = {k: r.cpu.get(k, float("nan")) / r.done * 1000 for k in SPLIT}
        db = ("" if r.mode == "raw" else
              f"{r.statements / r.done:>12.1f}{r.transactions / r.done:>14.2f}"
              f"{r.checkouts / r.done:>11.2f}")
        rows.append(f"  {MODES[r.mode]:<24}{fmt(ms['worker'], '.2f'):>8}"
                    f"{fmt(ms['simulator'], '.2f'):>11}{fmt(ms['broker'], '.2f'):>8}"
                    f"{fmt(ms['postgres'], '.2f'):>10}{db}")
    return rows


def _report(results: list[Result], args: argparse.Namespace, env: Env) -> None:
    db = "SQLite (a file per mode)" if env.database_url is None else "PostgreSQL"
    print(f"\nThroughput: {args.tenants} tenants x {args.events_per_tenant} customer events "
          f"(creates + updates), {env.provider} simulator (own process) "
          f"+{args.latency_ms:g} ms per request, 3 partitions, {db}, "
          f"max_in_flight {args.max_in_flight_used}")
    print(f"  machine: {machine_line(env.kafka)}")
    print(HEADER)
    for r in results:
        print(r.row())
    for r in results:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.outcomes.items()))
        extra = f"; Python heap peak (tracemalloc) {r.heap_peak_mb:.0f} MB" \
            if r.heap_peak_mb is not None else ""
        print(f"  {MODES[r.mode]}: {outcomes or 'no final statuses'}{extra}"
              + (f"; {r.note}" if r.note else ""))
        if r.mode != "raw":
            calls = ", ".join(f"{k} {v}" for k, v in sorted(r.provider_calls.items()))
            print(f"  {MODES[r.mode]}: provider calls {sum(r.provider_calls.values())} "
                  f"({calls or 'none'}); provider 429s {r.provider_calls['throttled']}; "
                  f"{r.done / r.wall_s * 60 / args.tenants:.0f} records/min per tenant")
    print("  CPU ms per event from /proc over publish..done: worker = this process's "
          "consumer/engine/librdkafka threads; simulator, broker = their processes; "
          "postgres = the backends serving the mode's database")
    for line in _split_rows(results):
        print(line)
    by_mode = {r.mode: r for r in results}
    if "naive" in by_mode and "worker" in by_mode:
        naive, worker = by_mode["naive"], by_mode["worker"]
        print(f"  speed-up of C (Worker, max_in_flight {args.max_in_flight_used}) over B "
              f"(naive sequential): {worker.rate / naive.rate:.1f}x events/s "
              f"({worker.rate:.1f} vs {naive.rate:.1f})")
    if "raw" in by_mode:
        raw = by_mode["raw"]
        for mode in ("naive", "worker"):
            if mode in by_mode:
                print(f"  {MODES[mode]} reaches {by_mode[mode].rate / raw.rate * 100:.1f}% "
                      f"of the raw consume-and-decode loop A ({by_mode[mode].rate:.1f} of "
                      f"{raw.rate:.0f} events/s, same run)")
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  process peak RSS over the whole run (ru_maxrss): {lifetime:.0f} MB; the "
          f"RSS column is each mode's own peak (the simulators run in their own process)",
          flush=True)
    print(f"  load avg at the end: {_load()}")
    if any(r.done < r.events for r in results):
        print("  NOTE: some mode did not finish every event within --timeout; its figures "
              "cover what finished")


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--events-per-tenant", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=20.0,
                        help="latency added to every simulator request of every realm")
    parser.add_argument("--max-in-flight", type=int, default=None,
                        help="the Worker's cap (default: the service's MAX_IN_FLIGHT default)")
    parser.add_argument("--provider", choices=("quickbooks", "xero"), default="quickbooks",
                        help="the simulator every tenant is connected to (its documented "
                             "limits apply in the service's limiter)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL URL (a fresh database is created per mode and "
                             "dropped after); default: a fresh SQLite file per mode")
    parser.add_argument("--modes", default="raw,naive,worker",
                        help="comma-separated subset of raw,naive,worker")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="give up on a mode after this many seconds")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations in the Worker mode (slows it)")
    parser.add_argument("--log-level", default="warning", help="the service's log level")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny numbers (3 tenants x 4 events, 5 ms) for a bounded test")
    args = parser.parse_args(argv)
    args.max_in_flight_used = args.max_in_flight or Settings.max_in_flight
    if args.smoke:
        args.tenants, args.events_per_tenant, args.latency_ms = 3, 4, 5.0
        args.timeout = min(args.timeout, 120.0)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(RUNNERS))
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")

    from service.logging import configure_logging

    configure_logging(args.log_level)
    token_key = generate_key()
    print(f"Throughput benchmark (load avg at start {_load()})", flush=True)
    with contextlib.ExitStack() as stack:
        bootstrap, kafka, broker_pid = stack.enter_context(_kafka())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tp-")))
        sandbox = stack.enter_context(SandboxProcess(tmp / "sandbox.log"))
        sandbox_url = sandbox.url
        # Settings.from_env() builds the provider endpoints from SANDBOX_URL; both
        # variables are put back as they were when the run ends.
        for name, value in (("SANDBOX_URL", sandbox_url), ("TOKEN_ENCRYPTION_KEY", token_key)):
            stack.callback(_restore_env, name, os.environ.get(name))
            os.environ[name] = value
        env = Env(bootstrap, kafka, sandbox_url, args.database_url, tmp, token_key,
                  provider=args.provider, sandbox_pid=sandbox.pid, broker_pid=broker_pid)
        stack.callback(lambda: [cleanup() for cleanup in env.cleanups])
        results = []
        for mode in modes:
            print(f"  running {MODES[mode]} ...", flush=True)
            result = RUNNERS[mode](env, args)
            print(result.row(), flush=True)
            results.append(result)
            gc.collect()  # the mode's producers and consumers go before the broker does
        _report(results, args, env)


if __name__ == "__main__":
    main()
