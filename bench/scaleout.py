"""Scale-out on PostgreSQL: one worker process against two in one consumer group.

    .venv/bin/python -m bench.scaleout [--tenants 40 --events-per-tenant 200 --latency-ms 0]
    .venv/bin/python -m bench.scaleout --smoke

A real Apache Kafka broker (its own JVM; KAFKA_BOOTSTRAP_SERVERS to use another), the
provider simulators in their own process, and worker processes (`python -m control.cli
worker`, the deployed command) on a fresh PostgreSQL database per run. The same workload
of customer events (bench.throughput's: creates then updates, tenants interleaved) runs:

  1  one worker process;
  2  two worker processes in one consumer group, as deployed (CONSUMER_GROUP_PROTOCOL
     "consumer": KIP-848 with the broker's per-topic range assignor);
  2c the same under the classic protocol (CONSUMER_GROUP_PROTOCOL=classic, eager range),
     the fallback for brokers older than Kafka 4.0 (`--no-classic` skips it).

Each change topic gets `--partitions` partitions (default: twice the largest worker
count). As when a deployment scales out, the second worker joins a group whose first
worker already holds every partition (`--together` starts them at once). Every member
holds its partitions before the burst is published, so group joins are not timed.
For each run it prints events per worker CPU-second (events / the workers' CPU from
/proc over publish..done), the simulator's, the broker's and PostgreSQL's CPU per
event, and per worker: the partitions it holds per topic and the events it finished
(its bc_sync_events_total).
`--repeat` rounds (3) run every configuration in turn; each larger group is compared with
the one worker of its own round and the median of those ratios is the figure.
Target: two workers' events per worker CPU-second >= 90% of one worker's.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.procs import (
    CpuSampler,
    PgBackends,
    SandboxProcess,
    cpu_s,
    fmt,
    load,
    machine_line,
    threads_cpu_s,
)
from bench.throughput import _FinalCounter, _kafka, _sqlalchemy_url, _workload
from producers.kafka import ensure_topics, make_producer
from sandbox.harness import connect_sandbox_account
from sandbox.scenario import publish
from sandbox.serve import free_port
from schemas.codec import AvroCodec
from service.config import Topics
from state.crypto import generate_key
from state.db import migrate

ROOT = Path(__file__).resolve().parents[1]
_REDELIVERED = "bc_sync_redeliveries_total "


@dataclass
class Run:
    label: str
    workers: int
    protocol: str | None  # CONSUMER_GROUP_PROTOCOL; None: the service's default
    config: str = ""  # the label without the round
    round: int = 0
    events: int = 0
    done: int = 0
    wall_s: float = float("nan")
    cpu: dict[str, float] = field(default_factory=dict)
    per_worker_events: list[float] = field(default_factory=list)
    per_worker_cpu: list[float] = field(default_factory=list)
    per_worker_runs: list[float] = field(default_factory=list)
    per_worker_calls: list[float] = field(default_factory=list)
    per_worker_redelivered: list[float] = field(default_factory=list)
    per_worker_rebalanced: list[float] = field(default_factory=list)  # revoked + lost
    members: list[Counter[str]] = field(default_factory=list)  # topic -> partitions held
    # Per worker, its CPU seconds over publish..done by thread kind (rdkafka / python).
    threads: list[dict[str, float]] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""

    @property
    def worker_cpu_s(self) -> float:
        return sum(self.per_worker_cpu)

    @property
    def per_cpu_s(self) -> float:
        return self.done / self.worker_cpu_s if self.worker_cpu_s > 0 else float("nan")

    @property
    def rate(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else float("nan")


class _Worker:
    def __init__(self, env: dict[str, str], protocol: str | None, log: Path) -> None:
        self.metrics_port = free_port()
        env = {**os.environ, **env, "METRICS_PORT": str(self.metrics_port)}
        if protocol:
            env["CONSUMER_GROUP_PROTOCOL"] = protocol
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "control.cli", "worker"],
                                         cwd=ROOT, stdout=out, stderr=out, env=env)

    def metric(self, prefix: str) -> float:
        """The sum of this worker's samples whose line starts with `prefix`."""
        body = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                   if line.startswith(prefix))

    def rebalanced(self) -> float:
        """Partitions this worker has had revoked or lost so far."""
        return (self.metric('bc_partitions_rebalanced_total{change="revoked"}')
                + self.metric('bc_partitions_rebalanced_total{change="lost"}'))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def _members(bootstrap: str, group: str) -> list[Counter[str]]:
    """Partitions per topic held by each member of the group (members in no order)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=10)
    held: list[Counter[str]] = []
    for member in desc.members:
        parts = member.assignment.topic_partitions if member.assignment else []
        held.append(Counter(tp.topic.rsplit(".", 1)[-1] for tp in parts))
    return held


def _wait_stable(bootstrap: str, group: str, members: int, partitions: int,
                 timeout: float = 120.0) -> list[Counter[str]]:
    """Until every member has joined, every partition is held, and the assignment is
    the same 3 s later (a cooperative rebalance moves partitions in two rounds)."""
    deadline = time.monotonic() + timeout
    previous: list[Counter[str]] | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(KafkaException, TimeoutError):
            held = _members(bootstrap, group)
            if len(held) == members and sum(sum(c.values()) for c in held) == partitions:
                key = sorted(sorted(c.items()) for c in held)
                if previous is not None and key == sorted(sorted(c.items()) for c in previous):
                    return held
                previous = held
                time.sleep(3)
                continue
        previous = None
        time.sleep(0.5)
    raise TimeoutError(f"group {group}: {members} members did not settle in {timeout:.0f}s")


def _fresh_database(admin_url: str, name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    return url


def _drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_one(run: Run, args: argparse.Namespace, bootstrap: str, broker_pid: int | None,
            sandbox: SandboxProcess, tmp: Path) -> Run:
    tag = uuid.uuid4().hex[:6]
    admin_url = _sqlalchemy_url(args.database_url)
    name = f"bench_so_{tag}"
    db_url = _fresh_database(admin_url, name)
    key = generate_key()
    topics = Topics(f"so{tag}.")
    ensure_topics(bootstrap, [*topics.changes, topics.status, topics.dead_letter,
                              topics.prefix + "warmup"], partitions=args.partitions)
    accounts = [f"so{tag}-t{i:03d}" for i in range(args.tenants)]
    for account in accounts:
        realm = f"r-{account}"
        connect_sandbox_account(db_url, key, sandbox.url, "quickbooks", account, realm)
        httpx.put(f"{sandbox.url}/quickbooks/_sandbox/faults/{realm}",
                  json={"latency_s": args.latency_ms / 1000}, timeout=10).raise_for_status()
    group = f"bench-so-{tag}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox.url, "BLUECLERK_MODE": "local",
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": group, "LOG_LEVEL": "warning"}
    if args.max_in_flight:
        env["MAX_IN_FLIGHT"] = str(args.max_in_flight)
    workers: list[_Worker] = []
    counter = _FinalCounter(db_url)
    pg = PgBackends(admin_url, name, exclude=counter.backend_pids)
    try:
        # Scaling out is adding a worker to a running group: each joins once the ones
        # before it hold every partition (--together: all start at once).
        total = len(topics.changes) * args.partitions
        for n in range(1, run.workers + 1):
            workers.append(_Worker(env, run.protocol, tmp / f"workers-{tag}.log"))
            if not args.together or n == run.workers:
                _wait_stable(bootstrap, group, n, total)
        sources: dict[str, Callable[[], float]] = {
            f"worker{i}": partial(cpu_s, w.proc.pid) for i, w in enumerate(workers)}
        sources["simulator"] = partial(cpu_s, sandbox.pid)
        if broker_pid:
            sources["broker"] = partial(cpu_s, broker_pid)
        sampler = CpuSampler(sources, pg)
        producer = make_producer(bootstrap)
        producer.produce(topics.prefix + "warmup", key=b"warmup", value=b"")
        producer.flush(30)
        events = _workload(accounts, args.events_per_tenant)
        run.events = len(events)
        run.load_before = load()
        threads_before = [threads_cpu_s(w.proc.pid) for w in workers]
        moved_before = [w.rebalanced() for w in workers]  # the joins before the burst
        sampler.start()
        started = time.monotonic()
        publish(producer, AvroCodec(), topics, events)
        alive = lambda: all(w.proc.poll() is None for w in workers)  # noqa: E731
        run.done = counter.wait(run.events, args.timeout, alive, sampler.tick)
        run.wall_s = time.monotonic() - started
        run.cpu = sampler.stop()
        run.threads = [{k: v - before[k] for k, v in threads_cpu_s(w.proc.pid).items()}
                       for w, before in zip(workers, threads_before, strict=True)]
        run.load_after = load()
        run.per_worker_cpu = [run.cpu[f"worker{i}"] for i in range(run.workers)]
        # Events finished (bc_sync_events_total), engine runs (one event, or a batch of
        # one tenant's) and provider HTTP calls, per worker.
        run.per_worker_events = [w.metric("bc_sync_events_total{") for w in workers]
        run.per_worker_runs = [w.metric("bc_sync_run_events_count") for w in workers]
        run.per_worker_calls = [w.metric("bc_provider_requests_total{") for w in workers]
        run.per_worker_redelivered = [w.metric(_REDELIVERED) for w in workers]
        run.per_worker_rebalanced = [w.rebalanced() - before
                                     for w, before in zip(workers, moved_before, strict=True)]
        run.members = _members(bootstrap, group)
    finally:
        for w in workers:
            w.stop()
        counter.close()
        pg.close()
        _drop_database(admin_url, name)
    return run


def _report(runs: list[Run], args: argparse.Namespace, kafka: str) -> None:
    print(f"\nScale-out: {args.tenants} tenants x {args.events_per_tenant} customer events, "
          f"QuickBooks simulator (own process) +{args.latency_ms:g} ms per request, "
          f"PostgreSQL, 4 change topics x {args.partitions} partitions, workers "
          f"{'started together' if args.together else 'joining one after the other'}")
    print(f"  machine: {machine_line(kafka)}")
    print(f"  {'run':<34}{'final/sent':>11}{'wall s':>8}{'events/s':>10}{'worker CPU s':>14}"
          f"{'events/worker CPU-s':>21}   CPU ms/event: simulator broker postgres   "
          f"load avg before -> after")
    for r in runs:
        per = {k: r.cpu.get(k, float("nan")) / r.done * 1000 if r.done else float("nan")
               for k in ("simulator", "broker", "postgres")}
        print(f"  {r.label:<34}{f'{r.done}/{r.events}':>11}{r.wall_s:>8.1f}{r.rate:>10.1f}"
              f"{r.worker_cpu_s:>14.2f}{r.per_cpu_s:>21.1f}   {'':13}{fmt(per['simulator']):>9}"
              f"{fmt(per['broker']):>7}{fmt(per['postgres']):>9}   "
              f"{r.load_before} -> {r.load_after}")
    for r in runs:
        for i in range(r.workers):
            kinds = r.threads[i]
            done, n_runs = r.per_worker_events[i], r.per_worker_runs[i]
            print(f"  {r.label}: worker {i + 1} finished {done:.0f} events "
                  f"with {r.per_worker_cpu[i]:.2f} CPU s (librdkafka's threads "
                  f"{kinds['rdkafka']:.2f}, Python's {kinds['python']:.2f}) in "
                  f"{n_runs:.0f} engine runs ({done / n_runs if n_runs else float('nan'):.1f} "
                  f"events a run) and {r.per_worker_calls[i]:.0f} provider calls; "
                  f"{r.per_worker_redelivered[i]:.0f} redelivered events, "
                  f"{r.per_worker_rebalanced[i]:.0f} partitions revoked or lost in the burst")
        for i, held in enumerate(r.members):
            topics = ", ".join(f"{t} {n}" for t, n in sorted(held.items()))
            print(f"  {r.label}: group member {i + 1} holds {topics or 'nothing'}")
    # Each larger group against the one worker of its own round; the figure is the median
    # of those ratios (one round: the ratio). A 2-core machine shared by the workers, the
    # simulator, the broker and PostgreSQL moves single runs by +-15%.
    ones = {r.round: r for r in runs if r.workers == 1}
    for config in dict.fromkeys(r.config for r in runs if r.workers > 1):
        ratios, speedups, idle = [], [], 0
        for r in runs:
            one = ones.get(r.round)
            if r.config != config or one is None or math.isnan(one.per_cpu_s):
                continue
            ratios.append(r.per_cpu_s / one.per_cpu_s)
            speedups.append(r.rate / one.rate)
            idle += sum(1 for e in r.per_worker_events if e == 0)
        if not ratios:
            continue
        rounds = ", ".join(f"{x * 100:.0f}%" for x in ratios)
        print(f"  {config}: events per worker CPU-second = {statistics.median(ratios) * 100:.0f}% "
              f"of one worker's (median of {len(ratios)} rounds: {rounds}; target >= 90%); "
              f"wall-clock speed-up {statistics.median(speedups):.2f}x; runs in which a "
              f"worker finished no event: {idle}")
    print(f"  load avg at the end: {load()}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tenants", type=int, default=40)
    # 8,000 events: at ~1 ms of worker CPU an event, 2,000 lasted ~3 s and measured mostly
    # each process's fixed cost (poll loop, commits, outbox) rather than its work.
    parser.add_argument("--events-per-tenant", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=2, help="the larger group's size")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions per change topic (default: 2 x --workers)")
    parser.add_argument("--no-classic", dest="classic", action="store_false",
                        help="skip run 2c (the classic group protocol)")
    parser.add_argument("--together", action="store_true",
                        help="start a run's workers at once instead of one after the other")
    parser.add_argument("--max-in-flight", type=int, default=None)
    parser.add_argument("--database-url", default=os.environ.get("TEST_POSTGRES_URL", ""))
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of every configuration, interleaved; medians compared")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny numbers (4 tenants x 4 events, one round) for a bounded test")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tenants, args.events_per_tenant, args.repeat = 4, 4, 1
        args.timeout = min(args.timeout, 120.0)
    if not args.database_url.startswith("postgres"):
        parser.error("--database-url (or TEST_POSTGRES_URL) must be a PostgreSQL URL")
    args.partitions = args.partitions or 2 * args.workers
    print(f"Scale-out benchmark (load avg at start {load()})", flush=True)
    configs: list[tuple[str, int, str | None]] = [
        ("1 worker", 1, None), (f"{args.workers} workers (KIP-848 range)", args.workers, None)]
    if args.classic:
        configs.append((f"{args.workers} workers (classic range)", args.workers, "classic"))
    # Rounds interleave the configurations, so a change in the machine's load during the
    # benchmark falls on all of them alike.
    runs = [Run(label + (f" #{k + 1}" if args.repeat > 1 else ""), workers, protocol,
                config=label, round=k)
            for k in range(args.repeat) for label, workers, protocol in configs]
    with contextlib.ExitStack() as stack:
        bootstrap, kafka, broker_pid = stack.enter_context(_kafka())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-so-")))
        sandbox = stack.enter_context(SandboxProcess(tmp / "sandbox.log"))
        for run in runs:
            print(f"  running {run.label} ...", flush=True)
            run_one(run, args, bootstrap, broker_pid, sandbox, tmp)
            print(f"  {run.label}: {run.done}/{run.events} in {run.wall_s:.1f} s, "
                  f"{run.per_cpu_s:.1f} events per worker CPU-second", flush=True)
        _report(runs, args, kafka)
        failed = [r.label for r in runs if r.done < r.events]
    if failed:
        print(f"  NOTE: not every event finished in: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
