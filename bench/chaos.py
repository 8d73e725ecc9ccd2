"""Chaos on a real broker: many tenants on all three providers, workers SIGKILLed and
restarted, a worker joining and leaving, the broker restarted mid-run, and the simulators
answering 5xx (half of them after the write was applied), timeouts after the write, and
429 bursts. At the end every record in every tenant's books must equal BlueClerk's latest
snapshot field by field, with no duplicate and nothing lost, and every event must have
exactly one final status, `synced` or an expected `skipped`.

`run_chaos` is shared: tests/e2e/test_chaos.py runs a small configuration in `make test`;
`make chaos` (= `python -m bench.chaos`) runs the large one and prints its figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

from producers.kafka import ensure_topics, make_producer
from sandbox.books_check import books_mismatches, read_links
from sandbox.harness import StatusReader, WorkerProcess, connect_sandbox_account
from sandbox.kafka_broker import KafkaBroker
from sandbox.scenario import Week, field_service_week, publish
from schemas.codec import AvroCodec
from schemas.error_codes import ErrorCode
from schemas.records import ChangeEvent
from schemas.status import FINAL_STATUSES, SyncStatus, SyncStatusEvent
from service.config import Topics

__all__ = ["ChaosConfig", "ChaosResult", "check_statuses", "map_items", "run_chaos"]

PROVIDERS = ("quickbooks", "xero", "freshbooks")
# A `skipped` final status is right only for these: the record was already written from
# its snapshot as another record's dependency (stale_version), or nothing changed.
EXPECTED_SKIPS = {ErrorCode.STALE_VERSION, ErrorCode.UNCHANGED}


@dataclass(frozen=True)
class ChaosConfig:
    tenants: int = 100
    customers: int = 20
    items: int = 8
    invoices: int = 40
    payments: int = 20
    customer_edits: int = 8
    price_edits: int = 3
    workers: int = 2  # members at all times; one more joins and leaves mid-run
    kills: int = 20
    broker_restarts: int = 1
    error_rate: float = 0.05  # 5xx before any effect ...
    error_after_apply_rate: float = 0.05  # ... and after the write applied: 10% 5xx
    timeout_rate: float = 0.05  # the write applied, the answer comes after the timeout
    burst_every_s: float = 1.5  # a 429 burst on a random tenant this often
    settle_timeout_s: float = 900.0
    stall_s: float = 120.0  # no new final status for this long: stop waiting, report
    seed: int = 11


@dataclass
class ChaosResult:
    events: int = 0
    tenants: int = 0
    kills: int = 0
    broker_restarts: int = 0
    joined: int = 0
    left: int = 0
    duplicates: int = 0
    lost: int = 0
    field_mismatches: int = 0
    finished: bool = False
    unfinished: int = 0
    wall_s: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    retrying: int = 0
    waited: int = 0
    records_checked: int = 0
    status_problems: list[str] = field(default_factory=list)
    book_problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.events} events, {self.tenants} tenants, {self.kills} SIGKILLs, "
                f"{self.broker_restarts} broker restart(s), worker joined {self.joined} / "
                f"left {self.left}; all finished {self.finished} ({self.unfinished} unfinished) "
                f"in {self.wall_s:.0f} s; "
                f"final statuses {dict(self.outcomes)}; parked then re-driven {self.waited}; "
                f"retrying statuses {self.retrying}; records checked {self.records_checked}; "
                f"duplicates {self.duplicates}, lost {self.lost}, field mismatches "
                f"{self.field_mismatches}; status problems {len(self.status_problems)}")


def _tenant_week(account: str, rng: random.Random, currency: str, c: ChaosConfig) -> Week:
    return field_service_week(account, rng, currency=currency, customers=c.customers,
                              items=c.items, invoices=c.invoices, payments=c.payments,
                              customer_edits=c.customer_edits, price_edits=c.price_edits)


def map_items(db_url: str, key: str, sandbox_url: str, account: str, week: Week) -> None:
    """Step 3 of the wizard, done directly: every item to the first income account."""
    from service.bootstrap import build_services
    from service.config import Settings
    from state.models import IncomeAccountMapping

    saved = dict(os.environ)
    os.environ.update({"DATABASE_URL": db_url, "TOKEN_ENCRYPTION_KEY": key,
                       "SANDBOX_URL": sandbox_url, "BLUECLERK_MODE": "local"})
    try:
        services = build_services(Settings.from_env(), run_migrations=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        info = services.connections.get(account)
        assert info is not None
        income = services.providers.adapter(info).list_income_accounts()[0]
        with services.db.transaction() as s:
            for item_id in week.items:
                s.add(IncomeAccountMapping(account_id=account, item_id=item_id,
                                           provider_account_id=income.id,
                                           provider_account_name=income.name))
    finally:
        services.close()


def check_statuses(statuses: list[SyncStatusEvent], distinct: set[str]) -> list[str]:
    """Exactly one final status per event, `synced` or an expected `skipped`; waiting
    statuses are followed by it; nothing failed or dead-lettered."""
    problems: list[str] = []
    by_event: dict[str, list[SyncStatusEvent]] = {}
    for s in statuses:
        by_event.setdefault(s.source_event_id, []).append(s)
    for event_id in sorted(distinct):
        seen = by_event.get(event_id, [])
        finals = [s for s in seen if s.status in FINAL_STATUSES]
        described = [(s.status.value, s.error_code.value if s.error_code else None)
                     for s in seen]
        if len(finals) != 1:
            problems.append(f"event {event_id}: {len(finals)} final statuses {described}")
            continue
        final = finals[0]
        if final.status is SyncStatus.SYNCED and final.error_code is None:
            continue
        if final.status is SyncStatus.SKIPPED and final.error_code in EXPECTED_SKIPS:
            continue
        problems.append(f"event {event_id} ({final.provider} {final.entity_type} "
                        f"{final.entity_id}): ended {described}: {final.message}")
    problems += [f"status for an event never published: {e}" for e in set(by_event) - distinct]
    return problems


def final_count(statuses: list[SyncStatusEvent]) -> int:
    return len({s.source_event_id for s in statuses if s.status in FINAL_STATUSES})


def _at_least(target: int, statuses: list[SyncStatusEvent]) -> bool:
    return final_count(statuses) >= target


def _settle(reader: StatusReader, total: int, config: ChaosConfig) -> bool:
    """Wait until every event has a final status; give up early when none has arrived
    for `stall_s` (an event that can never finish, e.g. one waiting on a failed record)."""
    deadline = time.monotonic() + config.settle_timeout_s
    done, progress_at = final_count(reader.statuses), time.monotonic()
    while done < total and time.monotonic() < deadline:
        if time.monotonic() - progress_at > config.stall_s:
            return False
        reader.wait_for(partial(_at_least, done + 1), timeout=5)
        now_done = final_count(reader.statuses)
        if now_done > done:
            done, progress_at = now_done, time.monotonic()
    return done >= total


def run_chaos(config: ChaosConfig, broker: KafkaBroker, sandbox_url: str, db_url: str,
              workdir: Path, log: Callable[[str], None] = print) -> ChaosResult:
    """One chaos run against `broker` (restarted in the middle) and the simulators at
    `sandbox_url`; `db_url` is an empty, migrated PostgreSQL database."""
    from state.crypto import generate_key

    rng = random.Random(config.seed)
    bootstrap = broker.bootstrap_servers
    topics = Topics(f"chaos{uuid.uuid4().hex[:8]}.")
    ensure_topics(bootstrap, [*topics.changes, topics.dead_letter, topics.inbound,
                              topics.status])
    key = generate_key()
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": db_url,
           "TOKEN_ENCRYPTION_KEY": key, "SANDBOX_URL": sandbox_url, "BLUECLERK_MODE": "local",
           "TOPIC_PREFIX": topics.prefix, "CONSUMER_GROUP": f"sync-chaos-{topics.prefix}",
           "LOG_LEVEL": "warning", "HTTP_TIMEOUT_S": "1", "RETRY_BASE_DELAY_S": "0.2",
           "RETRY_MAX_DELAY_S": "5", "RETRY_MAX_ATTEMPTS": "20", "MAX_IN_FLIGHT": "16",
           "XERO_RATE_PER_MINUTE": "100000", "XERO_RATE_PER_DAY": "10000000",
           "XERO_CONCURRENT": "20", "FRESHBOOKS_RATE_PER_MINUTE": "100000"}
    run = uuid.uuid4().hex[:5].upper()
    tenants: dict[str, tuple[str, str, Week]] = {}
    for n in range(config.tenants):
        provider = PROVIDERS[n % 3]
        account, tenant = f"acct-{run}-{n:03d}", f"T{run}{n:03d}"
        connect_sandbox_account(db_url, key, sandbox_url, provider, account, tenant)
        week = _tenant_week(account, rng, "NZD" if provider == "xero" else "USD", config)
        map_items(db_url, key, sandbox_url, account, week)
        tenants[account] = (provider, tenant, week)
    faults = {"error_rate": config.error_rate,
              "error_after_apply_rate": config.error_after_apply_rate,
              "timeout_rate": config.timeout_rate, "hang_s": 2.0}
    for provider, tenant, _ in tenants.values():
        httpx.put(f"{sandbox_url}/{provider}/_sandbox/faults/{tenant}", json=faults,
                  timeout=10).raise_for_status()

    events: list[ChangeEvent] = [e for _, _, w in tenants.values() for e in w.events]
    distinct = {e.event_id for e in events}
    result = ChaosResult(events=len(distinct), tenants=len(tenants))
    log(f"chaos: publishing {len(distinct)} events for {len(tenants)} tenants")
    # Events of one record must stay in version order on their topic: publish in the
    # order they were built per tenant, tenants interleaved.
    queues = {a: list(w.events) for a, (_, _, w) in tenants.items()}
    ordered: list[ChangeEvent] = []
    while queues:
        for account in sorted(queues):
            ordered.append(queues[account].pop(0))
            if not queues[account]:
                del queues[account]
    started = time.monotonic()
    publish(make_producer(bootstrap), AvroCodec(), topics, ordered)

    reader = StatusReader(bootstrap, topics.status)

    stop_bursts = threading.Event()
    burst_rng = random.Random(config.seed + 1)

    def throttle_bursts() -> None:
        while not stop_bursts.wait(config.burst_every_s):
            provider, tenant, _ = tenants[burst_rng.choice(sorted(tenants))]
            with contextlib.suppress(httpx.HTTPError):
                httpx.put(f"{sandbox_url}/{provider}/_sandbox/faults/{tenant}",
                          json={**faults, "throttle_burst": 3}, timeout=10)

    bursts = threading.Thread(target=throttle_bursts, daemon=True)
    bursts.start()
    worker_log = workdir / "workers.log"
    workers = [WorkerProcess(env, worker_log).start() for _ in range(config.workers)]
    extra: WorkerProcess | None = None
    join_at, leave_at = max(1, config.kills // 4), max(2, (config.kills * 3) // 4)
    restart_at = {max(1, (config.kills * (i + 1)) // (config.broker_restarts + 1))
                  for i in range(config.broker_restarts)}
    steps = config.kills + 1
    try:
        for k in range(config.kills):
            target = (k + 1) * len(distinct) // steps
            reader.wait_for(partial(_at_least, target), timeout=config.settle_timeout_s / steps)
            time.sleep(rng.uniform(0.1, 1.5))
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            result.kills += 1
            if k + 1 in restart_at:
                log(f"chaos: broker restart at {final_count(reader.statuses)} final")
                broker.restart(down_s=2.0)
                result.broker_restarts += 1
            if k + 1 == join_at and extra is None:
                extra = WorkerProcess(env, worker_log).start()
                result.joined += 1
            if k + 1 == leave_at and extra is not None:
                if extra.terminate() == 0:  # leaves cleanly: drains and commits
                    result.left += 1
                extra = None
            workers[victim] = WorkerProcess(env, worker_log).start()
            log(f"chaos: kill {result.kills}, {final_count(reader.statuses)} of "
                f"{len(distinct)} final")
        result.finished = _settle(reader, len(distinct), config)
        result.wall_s = time.monotonic() - started
    finally:
        stop_bursts.set()
        for worker in [*workers, *([extra] if extra else [])]:
            if worker.running:
                worker.terminate()
    reader.poll(3)
    reader.close()

    statuses = reader.statuses
    result.status_problems = check_statuses(statuses, distinct)
    finals = {s.source_event_id: s for s in statuses if s.status in FINAL_STATUSES}
    result.unfinished = len(distinct - set(finals))
    result.outcomes = Counter(s.status.value for s in finals.values())
    result.retrying = sum(1 for s in statuses if s.status is SyncStatus.RETRYING)
    result.waited = len({s.source_event_id for s in statuses
                         if s.status is SyncStatus.WAITING_DEPENDENCY})

    for provider in PROVIDERS:
        httpx.delete(f"{sandbox_url}/{provider}/_sandbox/faults", timeout=10)
    for account, (provider, tenant, week) in sorted(tenants.items()):
        problems = books_mismatches(sandbox_url, provider, tenant, week,
                                    read_links(db_url, account))
        result.book_problems += problems
        for p in problems:
            if " extra " in p:
                result.duplicates += int(p.split(" extra ", 1)[0].rsplit(" ", 1)[-1])
            elif " missing " in p:
                result.lost += int(p.split(" missing ", 1)[0].rsplit(" ", 1)[-1])
            else:
                result.field_mismatches += 1
        result.records_checked += (len(week.customers) + len(week.items)
                                   + len(week.invoices) + len(week.payments))
    return result


def _machine() -> str:
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.platform()}; {platform.machine()}; {os.cpu_count()} CPUs; "
            f"Python {platform.python_version()}; load avg {load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--invoices", type=int, default=40)
    parser.add_argument("--database-url", default=os.environ.get("TEST_POSTGRES_URL", ""))
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url (or TEST_POSTGRES_URL) must be a PostgreSQL URL")
    import sqlalchemy

    from sandbox.app import create_sandbox
    from sandbox.serve import serve_in_thread
    from state.db import migrate

    name = f"bc_chaos_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(
        args.database_url.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    db_url = args.database_url.rsplit("/", 1)[0] + "/" + name
    migrate(db_url)
    config = ChaosConfig(tenants=args.tenants, kills=args.kills, workers=args.workers,
                         invoices=args.invoices, settle_timeout_s=args.timeout)
    print(f"machine: {_machine()}", flush=True)
    wall = time.monotonic()
    workdir = Path("var") / f"chaos-{name}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with KafkaBroker() as broker, \
                serve_in_thread(create_sandbox(seed=7, fast_limits=True)) as sandbox_url:
            result = run_chaos(config, broker, sandbox_url, db_url, workdir,
                               log=lambda m: print(m, flush=True))
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(result.summary())
    print(f"whole run {time.monotonic() - wall:.0f} s wall (broker start and setup included); "
          f"machine: {_machine()}")
    for problem in (result.status_problems + result.book_problems)[:20]:
        print("  ", problem)
    ok = result.finished and not result.status_problems and not result.book_problems
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
