"""The sync engine: one change event in, one recorded outcome and status out.

For each event, in order (see design.md "Processing"): deduplicate, keep the snapshot,
gate on the connection and settings, resolve dependencies, call the provider through a
durable intent, and record link + processed event + status in one transaction. The
engine knows nothing of Kafka offsets; the consumer loop feeds it and commits.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
import tenacity
from prometheus_client import Counter, Histogram
from sqlalchemy import select
from sqlalchemy.orm import Session

from consumers.handlers import (
    Applied,
    Parked,
    SyncContext,
    apply_event,
    idempotency_key,
    plan_upsert,
)
from consumers.inbound import written_state
from providers.errors import ProviderError, ReconnectRequired, Throttled
from providers.http import writes_sent
from providers.port import AccountingProvider, BatchWrite, ProviderRecord, WriteIntent
from providers.taxes import BlueClerkTaxRate, ProviderTaxRate, match_tax_rate
from schemas.codec import AvroCodec, DecodeError
from schemas.error_codes import ErrorCode
from schemas.events import InvalidEvent, event_from_avro
from schemas.records import ChangeEvent, Customer, EntityType, InvoiceLine, Item, Record
from schemas.status import SyncStatus, SyncStatusEvent
from state import outcomes
from state import repository as repo
from state.connections import ConnectionInfo, ConnectionStore, connection_info, mark_synced
from state.db import Database
from state.locks import TenantLocks
from state.models import ParkedEvent, SyncSettings

__all__ = ["BatchEvent", "DeadLetterSink", "EngineResult", "Origin", "SyncEngine"]

log = structlog.get_logger("engine")

EVENTS = Counter("bc_sync_events_total", "Consumed events by final status",
                 ["entity_type", "status", "provider"])
REDELIVERIES = Counter("bc_sync_redeliveries_total",
                       "Events consumed again after their final status was recorded "
                       "(a rebalance or a restart before the offset commit)")
SYNC_SECONDS = Histogram("bc_sync_event_seconds", "Time to process one event",
                         ["entity_type"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))

_TAX_RATES_TTL_S = 300.0

_SETTING_BY_ENTITY = {
    EntityType.CUSTOMER: "sync_customers",
    EntityType.ITEM: "sync_items",
    EntityType.INVOICE: "sync_invoices",
    EntityType.PAYMENT: "sync_payments",
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a consumed record came from (Kafka Connect's dead-letter context)."""

    topic: str
    partition: int
    offset: int


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class _Rows:
    """What a batch round writes for its events, collected and then written together
    before its transaction commits, one statement (or executemany) per table: snapshot
    and link upserts (one per record: a round holds one change of each) and the new
    processed_events and outbox rows."""

    snapshots: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    processed: list[dict[str, object]] = field(default_factory=list)
    outbox: list[dict[str, object]] = field(default_factory=list)

    def insert(self, s: Session) -> None:
        repo.save_snapshots(s, self.snapshots)
        repo.save_links(s, self.links)
        outcomes.insert_processed(s, self.processed)
        outcomes.insert_outbox(s, self.outbox)


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """One event of a tenant's batch (SyncEngine.process_batch)."""

    event: ChangeEvent
    payload: bytes
    attempt: int = 1
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class _Planned:
    """A customer/item write of a batch, decided in its first transaction."""

    index: int  # in the batch
    operation: str  # create | update
    digest: str
    link: ProviderRecord | None
    income_account: str | None
    write: WriteIntent


@dataclass(frozen=True, slots=True)
class EngineResult:
    statuses: tuple[SyncStatusEvent, ...] = ()
    retry_after_s: float | None = None  # set: run the same event again after this delay
    redrive: tuple[str, ...] = ()  # parked event ids that may now proceed, in order
    spend_attempt: bool = True  # False: the retry does not count against the budget


class DeadLetterSink(Protocol):
    def dead_letter(self, payload: bytes | None, key: str | None, origin: Origin | None,
                    error: BaseException, code: ErrorCode) -> None: ...


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 300.0
    _wait: tenacity.wait.wait_base = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # tenacity's exponential backoff with full jitter; the dispatcher defers the work
        # for this long, so no thread sleeps while a tenant waits.
        self._wait = tenacity.wait_random_exponential(multiplier=self.base_delay_s,
                                                      max=self.max_delay_s)

    def delay(self, attempt: int, error: ProviderError) -> float:
        state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None,
                                        args=(), kwargs={})
        state.attempt_number = attempt
        backoff = float(self._wait(state))
        hint = getattr(error, "retry_after", None)
        if isinstance(error, Throttled) and error.scope == "day":
            return float(hint or 3600.0)  # a daily quota: wait for it, not a few seconds
        return max(backoff, float(hint)) if hint else backoff


class _Context(SyncContext):
    def __init__(self, engine: SyncEngine, info: ConnectionInfo, adapter: AccountingProvider,
                 event: ChangeEvent, own_link: tuple[ProviderRecord, str | None] | None = None,
                 own_known: bool = False, *, begun: tuple[str, WriteIntent, int] | None = None,
                 income: tuple[str, str | None] | None = None) -> None:
        self._engine = engine
        self._info = info
        self.provider_name = info.provider
        self.adapter = adapter
        self._event = event
        # The event's own link, read in the engine's first transaction (saves a round trip).
        self._own = (event.entity_type.value, event.entity_id, own_link)
        self._own_known = own_known
        self._resolving: set[str] = set()
        # The event's own intent (operation, intent, writes_sent() when it was begun) and
        # its item's income account, both from the first transaction.
        self._begun = begun
        self._income = income
        # Every intent begun for this event and its dependencies that no earlier attempt
        # left uncertain, with writes_sent() at that moment: shared with the
        # dependencies' contexts. An uncertain one (an earlier attempt may have landed)
        # stays so whatever this attempt does: it is never released.
        self.intents: list[tuple[str, int]] = [] if begun is None or \
            begun[1].after_unknown_outcome else [(begun[1].key, begun[2])]

    def release_unsent(self) -> None:
        """Our own limiter stopped the write: the intents begun since this thread last
        sent a write never reached the provider, so the retry need not look them up."""
        now = writes_sent()
        unsent = [key for key, mark in self.intents if mark == now]
        if unsent:
            with self._engine.db.transaction() as s:
                for key in unsent:
                    repo.release_intent(s, key)

    def link(self, entity_type: str, entity_id: str) -> tuple[ProviderRecord, str | None] | None:
        if self._own_known and (entity_type, entity_id) == self._own[:2]:
            return self._own[2]
        with self._engine.db.transaction() as s:
            row = repo.get_link(s, self._info, entity_type, entity_id)
            if row is None:
                return None
            return ProviderRecord(row.provider_id, row.provider_version), row.payload_hash

    def income_account(self, item_id: str) -> str | None:
        if self._income is not None and self._income[0] == item_id:
            return self._income[1]
        with self._engine.db.transaction() as s:
            row = repo.get_mapping(s, self._info.account_id, item_id)
            return row.provider_account_id if row else None

    def tax_code(self, line: InvoiceLine) -> tuple[ProviderTaxRate | None, str]:
        with self._engine.db.transaction() as s:
            row = repo.get_tax_mapping(s, self._info.account_id, line.tax_key)
            if row is not None:
                return repo.tax_code_of(row), row.reason or ""
        rate = BlueClerkTaxRate(line.tax_key, line.tax_rate_name, line.tax_rate_percent,
                                line.tax_compound)
        match = match_tax_rate(rate, self._engine.tax_rates(self._info, self.adapter),
                               self._info.provider)
        if match.code is None:
            return None, match.reason
        with self._engine.db.transaction() as s:
            # Saved, so the wizard shows it with its reason and the user can change it.
            repo.save_tax_mapping(s, self._info.account_id, rate, match.code, "auto",
                                  match.reason)
        return match.code, match.reason

    def write_intent(self, operation: str) -> WriteIntent:
        if self._begun is not None and self._begun[0] == operation:
            return self._begun[1]  # begun in the engine's first transaction
        e = self._event
        key = idempotency_key(e.account_id, e.entity_type.value, e.entity_id,
                              e.entity_version, operation)
        with self._engine.db.transaction() as s:
            uncertain = repo.begin_intent(s, key=key, account_id=e.account_id,
                                          entity_type=e.entity_type.value,
                                          entity_id=e.entity_id, operation=operation)
        if not uncertain:
            self.intents.append((key, writes_sent()))
        return WriteIntent(key, after_unknown_outcome=uncertain)

    def applied_version(self, entity_type: str, entity_id: str) -> int:
        with self._engine.db.transaction() as s:
            row = repo.get_link(s, self._info, entity_type, entity_id)
            return row.last_applied_version if row else 0

    def failed_version(self, entity_type: str, entity_id: str) -> int:
        with self._engine.db.transaction() as s:
            snapshot = repo.get_snapshot(s, self._info.account_id, entity_type, entity_id)
            if snapshot is None:
                return 0
            newest = self._engine.decode(snapshot.payload)
            status = repo.processed_status(s, self._info.account_id, newest.event_id)
        return newest.entity_version if status in ("failed", "dead_lettered") else 0

    def latest(self, entity_type: str, entity_id: str) -> Record | None:
        with self._engine.db.transaction() as s:
            snapshot = repo.get_snapshot(s, self._info.account_id, entity_type, entity_id)
            payload = snapshot.payload if snapshot else None
        return self._engine.decode(payload).record if payload else None

    def ensure_dependency(self, entity_type: str, entity_id: str) -> ProviderRecord:
        ref = f"{entity_type}:{entity_id}"
        with self._engine.db.transaction() as s:
            pending = repo.parked_before(s, self._info.account_id, entity_type, entity_id, "")
        if pending:
            # The dependency has changes of its own still waiting: it is not in its
            # final shape in the books yet (a payment must not beat an invoice update).
            raise Parked(ErrorCode.MISSING_DEPENDENCY, ref,
                         f"waiting for pending changes of {entity_type} {entity_id}")
        found = self.link(entity_type, entity_id)
        if found is not None:
            return found[0]
        with self._engine.db.transaction() as s:
            snapshot = repo.get_snapshot(s, self._info.account_id, entity_type, entity_id)
            payload = snapshot.payload if snapshot else None
        if payload is None or ref in self._resolving:
            raise Parked(ErrorCode.MISSING_DEPENDENCY, ref,
                         f"waiting for {entity_type} {entity_id}, not seen yet")
        self._resolving.add(ref)
        dependency = self._engine.decode(payload)
        child = _Context(self._engine, self._info, self.adapter, dependency)
        child._resolving = self._resolving
        child.intents = self.intents
        applied = apply_event(child, dependency)
        assert applied.record is not None
        with self._engine.db.transaction() as s:
            self._engine.save_outcome(s, self._info, dependency, applied)
        return applied.record


class SyncEngine:
    def __init__(self, db: Database, connections: ConnectionStore,
                 adapters: Callable[[ConnectionInfo], AccountingProvider], codec: AvroCodec,
                 dead_letters: DeadLetterSink, retry: RetryPolicy | None = None,
                 locks: TenantLocks | None = None) -> None:
        self.db = db
        self._connections = connections
        self._adapters = adapters
        self._codec = codec
        self._dead_letters = dead_letters
        self._retry = retry or RetryPolicy()
        self._locks = locks or TenantLocks(db)
        self._tax_rates: dict[tuple[str, str, str], tuple[float, list[ProviderTaxRate]]] = {}

    def tax_rates(self, info: ConnectionInfo, adapter: AccountingProvider
                  ) -> list[ProviderTaxRate]:
        """The company's tax codes, read once per connection every few minutes."""
        key = (info.account_id, info.provider, info.tenant_id)
        cached = self._tax_rates.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        rates = adapter.list_tax_rates()
        self._tax_rates[key] = (time.monotonic() + _TAX_RATES_TTL_S, rates)
        return rates

    # -- decoding --------------------------------------------------------------------

    def decode(self, payload: bytes) -> ChangeEvent:
        decoded = self._codec.decode(payload)
        return event_from_avro(decoded.schema_name, decoded.value)

    def reject(self, payload: bytes | None, key: str | None, origin: Origin,
               error: Exception, event: ChangeEvent | None = None) -> SyncStatusEvent | None:
        """A record that cannot be processed (undecodable, invalid, or one that crashed the
        engine): dead letter and a dead_lettered status, once per record even on replay."""
        code = error.code if isinstance(error, InvalidEvent) else (
            ErrorCode.UNDECODABLE if isinstance(error, DecodeError) else
            ErrorCode.SCHEMA_INVALID if event is None else ErrorCode.INTERNAL)
        source = event.event_id if event else f"{origin.topic}/{origin.partition}/{origin.offset}"
        account = event.account_id if event else key or "unknown"
        with self.db.transaction() as s:
            if repo.processed_status(s, account, source) is not None:
                return None  # a replay: already dead-lettered
        self._dead_letters.dead_letter(payload, key, origin, error, code)
        status = SyncStatusEvent(
            source_event_id=source, account_id=account,
            entity_type=event.entity_type.value if event else
            origin.topic.rsplit(".", 1)[-1].rstrip("s") or "unknown",
            entity_id=event.entity_id if event else "unknown", operation="none",
            status=SyncStatus.DEAD_LETTERED,
            occurred_at=event.occurred_at if event else dt.datetime.now(dt.UTC),
            entity_version=event.entity_version if event else None, error_code=code,
            message=f"{error} ({type(error).__name__}); the record was dead-lettered",
        )
        with self.db.transaction() as s:
            repo.add_dead_letter(s, account_id=status.account_id, entity_type=None
                                 if event is None else status.entity_type,
                                 entity_id=event.entity_id if event else None,
                                 topic=origin.topic, partition=origin.partition,
                                 offset=origin.offset, error_code=code.value, reason=str(error),
                                 payload=payload)
            repo.mark_processed(s, source, status.account_id, status.status.value)
            self._add_status(s, status)
        return status

    # -- the pipeline ----------------------------------------------------------------

    def process(self, event: ChangeEvent, payload: bytes, *, attempt: int = 1,
                origin: Origin | None = None, redrive: bool = False) -> EngineResult:
        structlog.contextvars.bind_contextvars(account_id=event.account_id,
                                               event_id=event.event_id)
        try:
            with self._locks.hold(event.account_id):
                return self._process(event, payload, attempt, origin, redrive)
        finally:
            structlog.contextvars.unbind_contextvars("account_id", "event_id")

    def _process(self, event: ChangeEvent, payload: bytes, attempt: int,
                 origin: Origin | None, redrive: bool) -> EngineResult:
        started = time.monotonic()
        with self.db.transaction() as s:
            # One statement: connection, processed status, parked probe, settings, link.
            look = repo.first_look(s, event.account_id, event.event_id,
                                   event.entity_type.value, event.entity_id)
            info, prior = look.info, look.prior
            # The parked table is the truth for re-drives: a parked event may carry an
            # interim status (waiting, pending_manual, or failed while disconnected).
            if prior is not None and not (
                    redrive and repo.is_parked(s, event.account_id, event.event_id)):
                REDELIVERIES.inc()
                return EngineResult()  # a redelivery: its status was already recorded
            # What this transaction learnt, so the later ones need not read it again.
            # Only the engine parks or records an event, and only under the tenant lock
            # held until this event is done, so both stay true until then.
            new = prior is None  # no processed_events row yet: the outcome is an INSERT
            any_parked = look.any_parked
            repo.save_snapshot(s, event.account_id, event.entity_type.value, event.entity_id,
                               event.entity_version, payload, event.record_created_at)
            # Only a link into the connected company counts: history made in another
            # company says nothing about this one (first_look filters it so).
            link = look.link
            if link is not None and link.last_applied_version >= event.entity_version:
                return self._finish(s, event, info, SyncStatus.SKIPPED, started, attempt,
                                    new=new,
                                    code=ErrorCode.STALE_VERSION, record_id=link.provider_id,
                                    message=f"version {event.entity_version} is not newer than "
                                    f"the applied version {link.last_applied_version}")
            own_link = (ProviderRecord(link.provider_id, link.provider_version),
                        link.payload_hash) if link is not None else None
            gate = self._gate(s, event, info, payload, started, attempt,
                              linked=link is not None, redrive=redrive, new=new,
                              settings=look.settings or repo.Switches())
            if gate is not None:
                return gate
            # Only a re-driven event is in the parked table itself (a redelivery of a
            # parked event returned above), so only then is its own place looked up.
            if any_parked and repo.parked_before(
                    s, event.account_id, event.entity_type.value, event.entity_id,
                    event.event_id if redrive else ""):
                # An earlier change of this record is waiting; applying this one first
                # would reorder the record's history (a void overtaken by its create).
                own = f"{event.entity_type.value}:{event.entity_id}"
                repo.park(s, event_id=event.event_id, account_id=event.account_id,
                          entity_type=event.entity_type.value, entity_id=event.entity_id,
                          reason=ErrorCode.MISSING_DEPENDENCY.value, waits_for=own,
                          payload=payload)
                return self._finish(s, event, info, SyncStatus.WAITING_DEPENDENCY, started,
                                    attempt, new=new, code=ErrorCode.MISSING_DEPENDENCY,
                                    message="queued behind an earlier change of this record "
                                    "that is waiting")
            assert info is not None
            begun, income = self._begin_upsert(s, info, event, own_link)
        ctx = _Context(self, info, self._adapters(info), event, own_link, True, begun=begun,
                       income=income)
        try:
            applied = apply_event(ctx, event)
        except Parked as parked:
            with self.db.transaction() as s:
                repo.park(s, event_id=event.event_id, account_id=event.account_id,
                          entity_type=event.entity_type.value, entity_id=event.entity_id,
                          reason=parked.code.value, waits_for=parked.waits_for,
                          payload=payload)
                return self._finish(s, event, info, SyncStatus.WAITING_DEPENDENCY, started,
                                    attempt, new=new, code=parked.code, message=str(parked))
        except ReconnectRequired as exc:
            with self.db.transaction() as s:
                # Kept, not lost: re-driven when the account reconnects.
                repo.park(s, event_id=event.event_id, account_id=event.account_id,
                          entity_type=event.entity_type.value, entity_id=event.entity_id,
                          reason="reconnect_required", waits_for="connection",
                          payload=payload)
                return self._finish(s, event, info, SyncStatus.FAILED, started, attempt,
                                    new=new, code=ErrorCode.RECONNECT_REQUIRED,
                                    message=str(exc))
        except ProviderError as exc:
            if isinstance(exc, Throttled) and exc.status is None:
                ctx.release_unsent()
            return self._failed(event, info, payload, exc, started, attempt, origin,
                                parked=redrive, new=new, any_parked=any_parked)
        with self.db.transaction() as s:
            self.save_outcome(s, info, event, applied)
            if redrive:  # only a re-driven event can be in the parked table
                repo.unpark(s, event.account_id, event.event_id)
            status = SyncStatus.SKIPPED if applied.unchanged else SyncStatus.SYNCED
            code = ErrorCode.UNCHANGED if applied.unchanged else None
            result = self._finish(s, event, info, status, started, attempt, new=new,
                                  code=code,
                                  record_id=applied.record.id if applied.record else None,
                                  operation=applied.operation)
            waiting = self._waiting_on(s, event) if any_parked else ()
            mark_synced(s, event.account_id)
        return EngineResult(result.statuses, None, waiting)

    def _begin_upsert(self, s: Session, info: ConnectionInfo, event: ChangeEvent,
                      own_link: tuple[ProviderRecord, str | None] | None
                      ) -> tuple[tuple[str, WriteIntent, int] | None,
                                 tuple[str, str | None] | None]:
        """For a customer or item change, in the first transaction: the item's income
        account, and the write's intent begun when a write is due (the handler decides
        the same from the same link, hash and mapping, and then takes this intent)."""
        if event.entity_type not in (EntityType.CUSTOMER, EntityType.ITEM):
            return None, None
        income: tuple[str, str | None] | None = None
        if event.entity_type is EntityType.ITEM:
            row = repo.get_mapping(s, event.account_id, event.entity_id)
            income = (event.entity_id, row.provider_account_id if row else None)
        link, synced_hash = own_link if own_link is not None else (None, None)
        try:
            operation, _ = plan_upsert(info.provider, event, link, synced_hash,
                                       income[1] if income else None)
        except Parked:
            return None, income  # the handler parks it
        if operation == "none":
            return None, income
        key = idempotency_key(event.account_id, event.entity_type.value, event.entity_id,
                              event.entity_version, operation)
        uncertain = repo.begin_intent(s, key=key, account_id=event.account_id,
                                      entity_type=event.entity_type.value,
                                      entity_id=event.entity_id, operation=operation)
        return (operation, WriteIntent(key, uncertain), writes_sent()), income

    @staticmethod
    def _waiting_on(s: Session, event: ChangeEvent) -> tuple[str, ...]:
        """Parked events that wait for this record: its dependents and its own later changes."""
        return tuple(p.event_id for p in repo.parked_for(
            s, event.account_id, reason=ErrorCode.MISSING_DEPENDENCY.value,
            waits_for=[f"{event.entity_type.value}:{event.entity_id}"]))

    def _gate(self, s: Session, event: ChangeEvent, info: ConnectionInfo | None,
              payload: bytes, started: float, attempt: int, *, linked: bool,
              redrive: bool, settings: repo.Switches | SyncSettings, new: bool = False,
              rows: _Rows | None = None) -> EngineResult | None:
        """`settings`: the account's, read by the caller in its transaction (a batch
        reads them once; repo.Switches() when the account has none: all on);
        `rows`: where a batch collects its new rows (see _finish)."""
        if info is None or info.status == "disconnected":
            return self._finish(s, event, info, SyncStatus.SKIPPED, started, attempt, new=new,
                                code=ErrorCode.NOT_CONNECTED, rows=rows)
        if not getattr(settings, _SETTING_BY_ENTITY[event.entity_type]):
            return self._finish(s, event, info, SyncStatus.SKIPPED, started, attempt, new=new,
                                code=ErrorCode.SYNC_DISABLED,
                                message=f"syncing {event.entity_type.value}s is turned off",
                                rows=rows)
        if event.record_created_at < info.connected_at and not linked:
            # No retroactive sync; a record the wizard imported or linked stays in sync.
            return self._finish(s, event, info, SyncStatus.SKIPPED, started, attempt, new=new,
                                code=ErrorCode.PRE_CONNECTION, rows=rows)
        if info.status == "reconnect_required":
            repo.park(s, event_id=event.event_id, account_id=event.account_id,
                      entity_type=event.entity_type.value, entity_id=event.entity_id,
                      reason="reconnect_required", waits_for="connection", payload=payload)
            return self._finish(s, event, info, SyncStatus.FAILED, started, attempt, new=new,
                                code=ErrorCode.RECONNECT_REQUIRED,
                                message=info.status_reason, rows=rows)
        if not settings.auto_sync and not redrive:  # Sync Now re-drives these
            repo.park(s, event_id=event.event_id, account_id=event.account_id,
                      entity_type=event.entity_type.value, entity_id=event.entity_id,
                      reason="pending_manual", waits_for=None, payload=payload)
            return self._finish(s, event, info, SyncStatus.PENDING_MANUAL, started, attempt,
                                new=new, message="auto-sync is off; this change waits for Sync Now",
                                rows=rows)
        return None

    def _failed(self, event: ChangeEvent, info: ConnectionInfo, payload: bytes,
                error: ProviderError, started: float, attempt: int,
                origin: Origin | None, *, parked: bool = True, new: bool = False,
                any_parked: bool = True) -> EngineResult:
        log.warning("provider_error", error_code=error.code.value, transient=error.transient,
                    attempt=attempt, error=str(error))
        if isinstance(error, Throttled) and error.status is None:
            # Our own limiter asked us to wait: back-pressure, not a failure. The attempt
            # is not spent and no status is published; the tenant's work is deferred.
            return EngineResult(retry_after_s=max(error.retry_after or 0.05, 0.05),
                                spend_attempt=False)
        if error.transient and attempt < self._retry.max_attempts:
            with self.db.transaction() as s:
                return self._record_failure(s, event, info, payload, error, started,
                                            attempt, origin, parked=parked, new=new,
                                            any_parked=any_parked)
        if error.transient:
            self._dead_letters.dead_letter(payload, event.account_id, origin, error,
                                           ErrorCode.RETRY_BUDGET_EXHAUSTED)
        with self.db.transaction() as s:
            return self._record_failure(s, event, info, payload, error, started, attempt,
                                        origin, parked=parked, new=new,
                                        any_parked=any_parked, dead_lettered=True)

    def _record_failure(self, s: Session, event: ChangeEvent, info: ConnectionInfo,
                        payload: bytes, error: ProviderError, started: float, attempt: int,
                        origin: Origin | None, *, parked: bool, new: bool, any_parked: bool,
                        dead_lettered: bool = False) -> EngineResult:
        """A provider's refusal of one event, in the caller's transaction: a retry with
        backoff (transient), or failed / dead-lettered with a dead-letter row.
        `dead_lettered`: the sink already has the record of an exhausted budget."""
        if error.transient and attempt < self._retry.max_attempts:
            delay = self._retry.delay(attempt, error)
            status = self._status(event, info, SyncStatus.RETRYING, started, attempt,
                                  code=error.code,
                                  message=f"{error}; retry {attempt + 1} in {delay:.1f}s")
            self._add_status(s, status)
            return EngineResult((status,), retry_after_s=delay)
        if error.transient:
            if not dead_lettered:
                self._dead_letters.dead_letter(payload, event.account_id, origin, error,
                                               ErrorCode.RETRY_BUDGET_EXHAUSTED)
            final, code = SyncStatus.DEAD_LETTERED, ErrorCode.RETRY_BUDGET_EXHAUSTED
            message = f"gave up after {attempt} attempts: {error}"
        else:
            final, code, message = SyncStatus.FAILED, error.code, str(error)
        # The dead-letter row, the outcome and the status commit together.
        repo.add_dead_letter(
            s, account_id=event.account_id, entity_type=event.entity_type.value,
            entity_id=event.entity_id, topic=origin.topic if origin else "redrive",
            partition=origin.partition if origin else -1,
            offset=origin.offset if origin else -1, error_code=code.value,
            reason=message, payload=payload)
        if parked:
            repo.unpark(s, event.account_id, event.event_id)
        result = self._finish(s, event, info, final, started, attempt, new=new,
                              code=code, message=message)
        # Later changes of this record were queued behind it; they may still apply.
        return EngineResult(result.statuses, None,
                            self._waiting_on(s, event) if any_parked else ())

    # -- batches -----------------------------------------------------------------------

    def process_batch(self, batch: Sequence[BatchEvent]) -> list[EngineResult]:
        """Consecutive ready events of one tenant, one result per event, in order.

        The customer and item changes go to the provider in rounds (`_rounds`): round k
        holds the k-th change in the batch of each such record. For each round, one
        transaction reads, gates and deduplicates its changes and begins the intents of
        those that need a write; those writes go to the provider together
        (`adapter.write_batch`, `batch_size` at a time); one transaction records their
        outcomes. A round starts only once the one before it is recorded, so a record's
        changes reach the books in order and each finds the link its previous change
        left. Rounds stop at the first with fewer than two changes, and at any event
        that must wait (below). Every other event (invoices, payments, a change left out
        of the rounds, a redelivery of an event in the batch) then runs the single path,
        in order. Customers and items depend on nothing, so writing a record's first
        change before an invoice that arrived earlier reorders nothing that matters, and
        the invoice finds it linked; a record's later changes join a round only while no
        invoice or payment precedes them in the batch (moving, say, a deactivation ahead
        of an earlier invoice of that customer could fail the invoice). Once any event of
        the batch must wait for a retry, the events not yet run wait too (without
        spending an attempt), so no later change overtakes one that waits. One event:
        the single path, unchanged."""
        if not batch:
            return []
        account = batch[0].event.account_id
        if any(b.event.account_id != account for b in batch):
            raise ValueError("a batch holds the events of one tenant")
        if len(batch) == 1:
            one = batch[0]
            return [self.process(one.event, one.payload, attempt=one.attempt,
                                 origin=one.origin)]
        structlog.contextvars.bind_contextvars(account_id=account)
        try:
            with self._locks.hold(account):
                return self._process_batch(batch)
        finally:
            structlog.contextvars.unbind_contextvars("account_id")

    @staticmethod
    def _rounds(batch: Sequence[BatchEvent]) -> list[list[int]]:
        """The batch's customer/item changes that may be written in rounds: round k holds
        the k-th change of each record, in batch order. A record leaves the rounds at a
        second copy of an event (a redelivery) and at a change that follows an invoice
        or payment in the batch (its first change excepted, see process_batch); its
        later changes then run the single path, after the rounds."""
        rounds: list[list[int]] = []
        depth: dict[tuple[str, str], int] = {}
        left: set[tuple[str, str]] = set()
        event_ids: set[str] = set()
        dependent_seen = False  # an invoice or payment came earlier in the batch
        for n, b in enumerate(batch):
            e = b.event
            copy = e.event_id in event_ids
            event_ids.add(e.event_id)
            if e.entity_type not in (EntityType.CUSTOMER, EntityType.ITEM):
                dependent_seen = True
                continue
            record = (e.entity_type.value, e.entity_id)
            k = depth.get(record, 0)
            if copy or record in left or (k > 0 and dependent_seen):
                left.add(record)
                continue
            depth[record] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(n)
        return rounds

    def _process_batch(self, batch: Sequence[BatchEvent]) -> list[EngineResult]:
        started = time.monotonic()
        account = batch[0].event.account_id
        results: list[EngineResult | None] = [None] * len(batch)
        held: list[int] = []  # run later, after the retry the batch waits for
        # A round's records all had their previous change in the round before, so a
        # round is never larger than the one before it: the first round of one ends them.
        for round_ in self._rounds(batch):
            if len(round_) < 2:
                break
            planned: list[_Planned] = []
            any_parked = False
            info: ConnectionInfo | None = None
            adapter: AccountingProvider | None = None
            with self.db.transaction() as s:
                info = connection_info(s, account)
                if info is not None and info.status == "active":
                    adapter = self._adapters(info)
                if adapter is not None and adapter.batch_size > 1:
                    assert info is not None
                    any_parked, planned = self._plan_batch(s, info, batch, round_, results,
                                                           started)
            if adapter is None or adapter.batch_size <= 1:
                break  # the single path for all of them
            if planned:
                assert info is not None
                held = self._write_planned(info, adapter, batch, planned, results, started,
                                           any_parked)
            if held or any(r is not None and r.retry_after_s is not None for r in results):
                break  # the next round's changes wait behind this one's
        retries = [r.retry_after_s for r in results
                   if r is not None and r.retry_after_s is not None]
        for n, b in enumerate(batch):
            if results[n] is not None or n in held:
                continue
            if retries or held:
                # Behind an event that waits: a later change of a held record must not
                # overtake it, nor anything else of the tenant.
                held.append(n)
                continue
            result = self._process(b.event, b.payload, b.attempt, b.origin, False)
            results[n] = result
            if result.retry_after_s is not None:
                retries.append(result.retry_after_s)
        wait = EngineResult(retry_after_s=max(retries, default=0.05), spend_attempt=False)
        return [wait if r is None or n in held else r for n, r in enumerate(results)]

    def _plan_batch(self, s: Session, info: ConnectionInfo, batch: Sequence[BatchEvent],
                    firsts: list[int], results: list[EngineResult | None], started: float
                    ) -> tuple[bool, list[_Planned]]:
        """The first transaction of a round: what the single path's first transaction and
        handler decide for each of the round's changes (`firsts`: at most one per
        record), in a few statements for all of them; the intents of the writes due are
        begun here."""
        account = info.account_id
        own = [(batch[n].event.entity_type.value, batch[n].event.entity_id) for n in firsts]
        prior = outcomes.processed_statuses(s, account, [batch[n].event.event_id
                                                         for n in firsts])
        any_parked = repo.has_parked(s, account)
        links = outcomes.load_links(s, account, own)
        settings = repo.get_settings(s, account)
        incomes = outcomes.income_accounts(s, account, [i for t, i in own if t == "item"])
        due: list[tuple[int, str, str, ProviderRecord | None, str | None]] = []
        unchanged: list[int] = []
        rows = _Rows()  # written after the loop, one statement per table
        for n in firsts:
            b = batch[n]
            e = b.event
            if e.event_id in prior:
                REDELIVERIES.inc()
                results[n] = EngineResult()  # a redelivery: its status was already recorded
                continue
            rows.snapshots.append(repo.snapshot_values(
                account, e.entity_type.value, e.entity_id, e.entity_version, b.payload,
                e.record_created_at))
            row = links.get((e.entity_type.value, e.entity_id))
            if row is not None and (row.provider, row.tenant_id) != (info.provider,
                                                                     info.tenant_id):
                row = None  # history made in another company says nothing about this one
            if row is not None and row.last_applied_version >= e.entity_version:
                results[n] = self._finish(
                    s, e, info, SyncStatus.SKIPPED, started, b.attempt, new=True,
                    code=ErrorCode.STALE_VERSION, record_id=row.provider_id,
                    message=f"version {e.entity_version} is not newer than the applied "
                    f"version {row.last_applied_version}", rows=rows)
                continue
            gate = self._gate(s, e, info, b.payload, started, b.attempt,
                              linked=row is not None, redrive=False, new=True,
                              settings=settings or repo.Switches(), rows=rows)
            if gate is not None:
                results[n] = gate
                continue
            if any_parked and repo.parked_before(s, account, e.entity_type.value,
                                                 e.entity_id, ""):
                repo.park(s, event_id=e.event_id, account_id=account,
                          entity_type=e.entity_type.value, entity_id=e.entity_id,
                          reason=ErrorCode.MISSING_DEPENDENCY.value,
                          waits_for=f"{e.entity_type.value}:{e.entity_id}", payload=b.payload)
                results[n] = self._finish(
                    s, e, info, SyncStatus.WAITING_DEPENDENCY, started, b.attempt, new=True,
                    code=ErrorCode.MISSING_DEPENDENCY,
                    message="queued behind an earlier change of this record that is waiting",
                    rows=rows)
                continue
            link = ProviderRecord(row.provider_id, row.provider_version) if row else None
            income = incomes.get(e.entity_id) if e.entity_type is EntityType.ITEM else None
            try:
                operation, digest = plan_upsert(info.provider, e, link,
                                                row.payload_hash if row else None, income)
            except Parked as parked:
                repo.park(s, event_id=e.event_id, account_id=account,
                          entity_type=e.entity_type.value, entity_id=e.entity_id,
                          reason=parked.code.value, waits_for=parked.waits_for,
                          payload=b.payload)
                results[n] = self._finish(s, e, info, SyncStatus.WAITING_DEPENDENCY, started,
                                          b.attempt, new=True, code=parked.code,
                                          message=str(parked), rows=rows)
                continue
            if operation == "none":
                assert link is not None
                self._save_link(s, info, e, link, digest, rows)
                results[n] = self._finish(s, e, info, SyncStatus.SKIPPED, started, b.attempt,
                                          new=True, code=ErrorCode.UNCHANGED,
                                          record_id=link.id, rows=rows)
                unchanged.append(n)
                continue
            due.append((n, operation, digest, link, income))
        rows.insert(s)
        keys = {n: idempotency_key(account, batch[n].event.entity_type.value,
                                   batch[n].event.entity_id, batch[n].event.entity_version,
                                   operation) for n, operation, *_ in due}
        uncertain = outcomes.begin_intents(s, account, [
            (keys[n], batch[n].event.entity_type.value, batch[n].event.entity_id, operation)
            for n, operation, *_ in due])
        if unchanged:
            mark_synced(s, account)
            if any_parked:
                for n in unchanged:
                    done = results[n]
                    assert done is not None
                    results[n] = EngineResult(done.statuses, None,
                                              self._waiting_on(s, batch[n].event))
        return any_parked, [
            _Planned(n, operation, digest, link, income, WriteIntent(keys[n], uncertain[keys[n]]))
            for n, operation, digest, link, income in due]

    def _write_planned(self, info: ConnectionInfo, adapter: AccountingProvider,
                       batch: Sequence[BatchEvent], planned: list[_Planned],
                       results: list[EngineResult | None], started: float,
                       any_parked: bool) -> list[int]:
        """Send the planned writes, `batch_size` per request, and record every outcome in
        one transaction. Returns the events held back unsent (a request before theirs
        failed as a whole, or our own limiter deferred theirs): they run again later."""
        size = max(adapter.batch_size, 1)
        chunks = [planned[k:k + size] for k in range(0, len(planned), size)]
        got: dict[int, ProviderRecord | ProviderError] = {}
        unsent: list[_Planned] = []  # intents begun, request never sent: released
        held: list[_Planned] = []
        own_wait: float | None = None
        for c, chunk in enumerate(chunks):
            sent_before = writes_sent()
            try:
                answers = self._send(adapter, batch, chunk)
            except ProviderError as exc:
                later = [p for rest in chunks[c + 1:] for p in rest]
                unsent.extend(later)
                held.extend(later)
                if isinstance(exc, Throttled) and exc.status is None:
                    # Our own limiter: back-pressure, not a failure (as the single path).
                    own_wait = max(exc.retry_after or 0.05, 0.05)
                    held.extend(chunk)
                    if writes_sent() == sent_before:
                        unsent.extend(chunk)
                else:
                    got.update((p.index, exc) for p in chunk)  # no per-record outcome
                break
            for p, answer in zip(chunk, answers, strict=True):
                got[p.index] = answer
                if isinstance(answer, Throttled) and answer.status is None:
                    unsent.append(p)  # our own limiter stopped its request: never sent
        with self.db.transaction() as s:
            # Never one an earlier attempt left uncertain: that attempt may have landed,
            # whatever this one did.
            outcomes.release_intents(s, [p.write.key for p in unsent
                                         if not p.write.after_unknown_outcome])
            completed: list[tuple[str, str | None]] = []
            final: list[int] = []  # synced or ended: what waits for them may proceed
            rows = _Rows()  # no statement inside the loop: the links' inserts flush together
            for p in planned:
                if p.index not in got:
                    continue
                b = batch[p.index]
                answer = got[p.index]
                if isinstance(answer, ProviderRecord):
                    self._save_link(s, info, b.event, answer, p.digest, rows)
                    completed.append((p.write.key, answer.id))
                    results[p.index] = self._finish(
                        s, b.event, info, SyncStatus.SYNCED, started, b.attempt, new=True,
                        record_id=answer.id, operation=p.operation, rows=rows)
                    final.append(p.index)
                    continue
                if isinstance(answer, Throttled) and answer.status is None:
                    # Our own limiter held its request back: back-pressure, as in _failed.
                    results[p.index] = EngineResult(
                        retry_after_s=max(answer.retry_after or 0.05, 0.05),
                        spend_attempt=False)
                    continue
                log.warning("provider_error", error_code=answer.code.value,
                            transient=answer.transient, attempt=b.attempt, error=str(answer),
                            entity_id=b.event.entity_id, batch=True)
                if isinstance(answer, ReconnectRequired):
                    # Kept, not lost: re-driven when the account reconnects.
                    repo.park(s, event_id=b.event.event_id, account_id=info.account_id,
                              entity_type=b.event.entity_type.value,
                              entity_id=b.event.entity_id, reason="reconnect_required",
                              waits_for="connection", payload=b.payload)
                    results[p.index] = self._finish(
                        s, b.event, info, SyncStatus.FAILED, started, b.attempt, new=True,
                        code=ErrorCode.RECONNECT_REQUIRED, message=str(answer))
                    continue
                result = self._record_failure(s, b.event, info, b.payload, answer, started,
                                              b.attempt, b.origin, parked=False, new=True,
                                              any_parked=False)
                results[p.index] = result
                if result.retry_after_s is None:
                    final.append(p.index)
            rows.insert(s)
            outcomes.complete_intents(s, completed)
            if completed:
                mark_synced(s, info.account_id)
            if any_parked and final:
                waiting = {f"{b.event.entity_type.value}:{b.event.entity_id}": b.event
                           for b in (batch[n] for n in final)}
                redrive: dict[str, list[str]] = {}
                for row in repo.parked_for(s, info.account_id,
                                           reason=ErrorCode.MISSING_DEPENDENCY.value,
                                           waits_for=sorted(waiting)):
                    redrive.setdefault(row.waits_for or "", []).append(row.event_id)
                for n in final:
                    e = batch[n].event
                    ids = redrive.get(f"{e.entity_type.value}:{e.entity_id}")
                    done = results[n]
                    if ids and done is not None:
                        results[n] = EngineResult(done.statuses, done.retry_after_s,
                                                  tuple(ids), done.spend_attempt)
        if own_wait is not None:
            for p in held:
                results[p.index] = EngineResult(retry_after_s=own_wait, spend_attempt=False)
            return []
        return [p.index for p in held]

    @staticmethod
    def _send(adapter: AccountingProvider, batch: Sequence[BatchEvent],
              chunk: list[_Planned]) -> list[ProviderRecord | ProviderError]:
        """One request for the chunk; a chunk of one is the single-record request (one
        record is sent at once, as the single path sends it)."""
        writes = []
        for p in chunk:
            record = batch[p.index].event.record
            assert isinstance(record, Customer | Item)
            writes.append(BatchWrite(record, p.link, p.write, p.income_account))
        if len(writes) == 1:
            w = writes[0]
            if isinstance(w.record, Item):
                return [adapter.upsert_item(w.record, w.income_account_id, w.link, w.write)]
            return [adapter.upsert_customer(w.record, w.link, w.write)]
        answers = adapter.write_batch(writes)
        if len(answers) != len(writes):
            raise RuntimeError(f"write_batch answered {len(answers)} outcomes for "
                               f"{len(writes)} writes")
        return answers

    # -- parked events -----------------------------------------------------------------

    def ready_parked(self) -> list[tuple[str, str]]:
        """(account, event id) of events waiting for a dependency that is now linked."""
        with self.db.transaction() as s:
            rows = s.execute(select(ParkedEvent)
                             .where(ParkedEvent.reason == ErrorCode.MISSING_DEPENDENCY.value)
                             .order_by(ParkedEvent.id)).scalars()
            ready = []
            companies: dict[str, ConnectionInfo | None] = {}
            for row in rows:
                entity_type, _, entity_id = (row.waits_for or ":").partition(":")
                own = (entity_type, entity_id) == (row.entity_type, row.entity_id)
                if row.account_id not in companies:
                    companies[row.account_id] = connection_info(s, row.account_id)
                company = companies[row.account_id]
                linked = company is not None and not own and \
                    repo.get_link(s, company, entity_type, entity_id) is not None
                if linked or (own and not repo.parked_before(
                        s, row.account_id, row.entity_type, row.entity_id, row.event_id)):
                    ready.append((row.account_id, row.event_id))
            return ready

    def drive_parked(self, account_id: str, reasons: set[str],
                     waits_for: set[str] | None = None) -> list[SyncStatusEvent]:
        """Run parked events of one account in arrival order (Sync Now, a saved mapping,
        a reconnect). One that must wait for a retry stops the run, keeping order; the
        rest stay parked for the next run."""
        with self.db.transaction() as s:
            parked = [p.event_id for p in repo.parked_for(s, account_id)
                      if p.reason in reasons and (waits_for is None or p.waits_for in waits_for)]
        statuses: list[SyncStatusEvent] = []
        for event_id in parked:
            payload = self.parked_payload(account_id, event_id)
            if payload is None:
                continue
            result = self.process(self.decode(payload), payload, redrive=True)
            statuses.extend(result.statuses)
            if result.retry_after_s is not None:
                break
            for redriven in result.redrive:
                statuses.extend(self._redrive_one(account_id, redriven))
        return statuses

    def abandon_parked(self, account_id: str, code: ErrorCode, message: str
                       ) -> list[SyncStatusEvent]:
        """End every parked event of an account with a final `skipped` status (its
        connection started afresh with another company, where they mean nothing)."""
        started = time.monotonic()
        statuses: list[SyncStatusEvent] = []
        with self.db.transaction() as s:
            info = connection_info(s, account_id)
            for row in repo.parked_for(s, account_id):
                event = self.decode(row.payload)
                repo.unpark(s, account_id, row.event_id)
                statuses.extend(self._finish(s, event, info, SyncStatus.SKIPPED, started, 1,
                                             code=code, message=message).statuses)
        return statuses

    def parked_payload(self, account_id: str, event_id: str) -> bytes | None:
        """The bytes of a parked event; None once it left the parked table."""
        with self.db.transaction() as s:
            row = repo.get_parked(s, account_id, event_id)
            return row.payload if row else None

    def _redrive_one(self, account_id: str, event_id: str) -> list[SyncStatusEvent]:
        """Re-drive one parked event and, depth first, whatever waited on it in turn."""
        payload = self.parked_payload(account_id, event_id)
        if payload is None:
            return []
        result = self.process(self.decode(payload), payload, redrive=True)
        statuses = list(result.statuses)
        if result.retry_after_s is None:
            for waiting in result.redrive:
                statuses.extend(self._redrive_one(account_id, waiting))
        return statuses

    # -- recording -------------------------------------------------------------------

    def save_outcome(self, s: Session, info: ConnectionInfo, event: ChangeEvent,
                     applied: Applied) -> None:
        if applied.record is None:
            return
        self._save_link(s, info, event, applied.record, applied.payload_hash)
        if not applied.unchanged:
            key = idempotency_key(event.account_id, event.entity_type.value, event.entity_id,
                                  event.entity_version, applied.operation)
            repo.complete_intent(s, key, applied.record.id)

    @staticmethod
    def _save_link(s: Session, info: ConnectionInfo, event: ChangeEvent,
                   record: ProviderRecord, digest: str | None, rows: _Rows | None = None
                   ) -> None:
        """The link and what the write left in the books, in one upsert; `rows`: a
        batch round's, where it is collected to be written with the round's others."""
        # What this write left in the books, for the inbound poller's echo suppression.
        written = written_state(info.provider, event)
        values = repo.link_values(info, event.entity_type.value, event.entity_id, record.id,
                                  record.version, event.entity_version, digest)
        values["written_state"], values["written_hash"] = written
        if rows is None:
            repo.save_links(s, [values])  # one upsert, nothing read back
        else:
            rows.links.append(values)

    def _status(self, event: ChangeEvent, info: ConnectionInfo | None, status: SyncStatus,
                started: float, attempt: int, *, code: ErrorCode | None = None,
                message: str | None = None, record_id: str | None = None,
                operation: str = "none") -> SyncStatusEvent:
        return SyncStatusEvent(
            source_event_id=event.event_id, account_id=event.account_id,
            entity_type=event.entity_type.value, entity_id=event.entity_id,
            operation=operation, status=status, occurred_at=event.occurred_at,
            provider=info.provider if info else None, entity_version=event.entity_version,
            provider_record_id=record_id, error_code=code, message=message, attempt=attempt,
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    def _finish(self, s: Session, event: ChangeEvent, info: ConnectionInfo | None,
                status: SyncStatus, started: float, attempt: int, *, new: bool = False,
                code: ErrorCode | None = None, message: str | None = None,
                record_id: str | None = None, operation: str = "none",
                rows: _Rows | None = None) -> EngineResult:
        """Record the event's outcome and its status in the caller's transaction; `new`:
        the event has no processed_events row yet (known from the first transaction).
        `rows`: a new event's rows are collected there, for the caller to insert with
        the batch's others in one statement each before its transaction commits."""
        result = self._status(event, info, status, started, attempt, code=code,
                              message=message, record_id=record_id, operation=operation)
        if rows is not None and new:
            rows.processed.append({"account_id": event.account_id, "event_id": event.event_id,
                                   "status": status.value, "processed_at": _utcnow()})
            rows.outbox.append(self._outbox_row(result))
        else:
            repo.mark_processed(s, event.event_id, event.account_id, status.value, new=new)
            self._add_status(s, result)
        EVENTS.labels(event.entity_type.value, status.value, result.provider or "none").inc()
        SYNC_SECONDS.labels(event.entity_type.value).observe(time.monotonic() - started)
        log.info("event_finished", status=status.value,
                 error_code=result.error_code.value if result.error_code else None,
                 entity_type=event.entity_type.value, entity_id=event.entity_id,
                 version=event.entity_version)
        return EngineResult((result,))

    def _outbox_row(self, status: SyncStatusEvent) -> dict[str, object]:
        return {"account_id": status.account_id, "topic_kind": "status", "key": status.key,
                "value": self._codec.encode("SyncStatusEvent", status.to_avro()),
                "status": status.status.value,
                "error_code": status.error_code.value if status.error_code else None,
                "entity_type": status.entity_type, "entity_id": status.entity_id,
                "message": status.message, "created_at": _utcnow()}

    def _add_status(self, s: Session, status: SyncStatusEvent) -> None:
        outcomes.insert_outbox(s, [self._outbox_row(status)])


