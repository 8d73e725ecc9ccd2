"""What every control-plane service function shares: the wired services (`ControlContext`),
the refusal type (`ControlError`) and the connection/provider helpers.

Every service function takes a `ControlContext` and plain values and returns plain
JSON-able dicts; errors the user can act on are `ControlError(code, message, http_status)`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from consumers.engine import SyncEngine
from providers.errors import ProviderError, ReconnectRequired
from providers.port import AccountingProvider
from schemas.error_codes import ADVICE, ErrorCode
from schemas.events import event_from_avro
from schemas.redaction import scrub
from schemas.status import SyncStatusEvent
from service.bootstrap import Services
from state.connections import Company, ConnectionInfo
from state.models import (
    EntityLink,
    Snapshot,
)

__all__ = [
    "ControlContext",
    "ControlError",
    "KafkaSide",
    "active_connection",
    "adapter_for",
    "advice_for",
    "call_provider",
    "company_links",
    "count_statuses",
    "decode_snapshots",
    "import_id",
    "now",
]

log = structlog.get_logger("control")


class ControlError(Exception):
    """A request the control plane refuses, with a stable code and what to do about it."""

    def __init__(self, code: str, message: str, status: int = 400,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": scrub(self.message), **self.details}}


class KafkaSide:
    """The engine (with its Kafka dead-letter sink) and the outbox publisher, built on first
    use so read-only commands need no broker."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = threading.Lock()
        self._producer: Any = None
        self._engine: SyncEngine | None = None

    def _ensure_producer(self) -> Any:
        if self._producer is None:
            bootstrap = self._services.settings.kafka_bootstrap
            if not bootstrap:
                raise ControlError("kafka_unavailable", "KAFKA_BOOTSTRAP_SERVERS is not set; "
                                   "the control plane needs the broker to sync", 503)
            from producers.kafka import make_producer

            self._producer = make_producer(bootstrap)
        return self._producer

    def engine(self) -> SyncEngine:
        with self._lock:
            if self._engine is None:
                from producers.dead_letters import KafkaDeadLetterSink
                from service.bootstrap import build_engine

                sink = KafkaDeadLetterSink(self._ensure_producer(),
                                           self._services.settings.topics.dead_letter)
                self._engine = build_engine(self._services, sink)
            return self._engine

    def publish_outbox(self) -> int:
        from producers.outbox import OutboxPublisher

        with self._lock:
            producer = self._ensure_producer()
        return OutboxPublisher(self._services.db, producer,
                               self._services.settings.topics).publish_all()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)


@dataclass
class ControlContext:
    services: Services
    engine: Callable[[], SyncEngine]
    publish_outbox: Callable[[], int] | None = None
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def with_kafka(cls, services: Services) -> tuple[ControlContext, KafkaSide]:
        side = KafkaSide(services)
        return cls(services, side.engine, side.publish_outbox), side

    def publish(self) -> bool:
        """Deliver pending outbox rows now; on failure they wait for the worker's publisher."""
        if self.publish_outbox is None:
            return False
        try:
            self.publish_outbox()
        except Exception as exc:  # the rows are committed; the worker delivers them later
            log.warning("outbox_publish_deferred", error=str(exc))
            return False
        return True


# --------------------------------------------------------------------------- helpers


def active_connection(ctx: ControlContext, account_id: str) -> ConnectionInfo:
    info = ctx.services.connections.get(account_id)
    if info is None:
        raise ControlError("not_connected", "this account has no accounting system connected; "
                           "connect QuickBooks Online, Xero or FreshBooks first", 409)
    if info.status == "disconnected":
        raise ControlError("not_connected", f"the {info.provider} connection was disconnected; "
                           "connect again to continue", 409)
    if info.status == "reconnect_required":
        raise ControlError("reconnect_required", f"the {info.provider} connection needs to be "
                           f"renewed ({info.status_reason or 'the grant was revoked or expired'}"
                           "); reconnect from Settings > Integrations", 409)
    return info


def adapter_for(ctx: ControlContext, info: ConnectionInfo) -> AccountingProvider:
    return ctx.services.providers.adapter(info)


def call_provider(ctx: ControlContext, info: ConnectionInfo, what: str,
                   fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ReconnectRequired as exc:
        ctx.services.connections.set_status(info.account_id, "reconnect_required", str(exc))
        raise ControlError("reconnect_required", f"{info.provider} refused the stored grant "
                           f"while {what} ({exc}); reconnect from Settings > Integrations",
                           409) from exc
    except ProviderError as exc:
        advice = ADVICE.get(exc.code, "try again in a few minutes")
        status = 502 if exc.transient else 400
        raise ControlError(exc.code.value, f"{info.provider} failed while {what}: {exc}. "
                           f"{advice}", status) from exc


def decode_snapshots(ctx: ControlContext, s: Session, account_id: str,
                      entity_type: str) -> dict[str, Any]:
    rows = s.execute(select(Snapshot).where(Snapshot.account_id == account_id,
                                            Snapshot.entity_type == entity_type)).scalars()
    out: dict[str, Any] = {}
    for row in rows:
        try:
            decoded = ctx.services.codec.decode(row.payload)
            out[row.entity_id] = event_from_avro(decoded.schema_name, decoded.value).record
        except Exception as exc:  # a snapshot the engine could store but not read back
            log.warning("snapshot_unreadable", entity_id=row.entity_id, error=str(exc))
    return out


def company_links(s: Session, company: Company, entity_type: str) -> list[EntityLink]:
    """The account's links of one type into its connected company (none of another's)."""
    return list(s.execute(select(EntityLink).where(
        EntityLink.account_id == company.account_id, EntityLink.entity_type == entity_type,
        EntityLink.provider == company.provider,
        EntityLink.tenant_id == company.tenant_id)).scalars())


def import_id(provider: str, provider_id: str) -> str:
    return f"imp-{provider}-{provider_id}"


def now(ctx: ControlContext) -> dt.datetime:
    return ctx.clock()


def count_statuses(statuses: Iterable[SyncStatusEvent]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st.status.value] = counts.get(st.status.value, 0) + 1
    return counts


def advice_for(code: str | None) -> str | None:
    if code is None:
        return None
    try:
        return ADVICE.get(ErrorCode(code))
    except ValueError:
        return None
