"""Sync-status events: one final status per consumed event, read by analysts."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from schemas.error_codes import ADVICE, ErrorCode
from schemas.redaction import scrub

__all__ = ["FINAL_STATUSES", "WAITING_STATUSES", "SyncStatus", "SyncStatusEvent"]


class SyncStatus(StrEnum):
    SYNCED = "synced"
    SKIPPED = "skipped"
    PENDING_MANUAL = "pending_manual"
    WAITING_DEPENDENCY = "waiting_dependency"
    RETRYING = "retrying"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"


# A consumed event ends with exactly one of these, and nothing follows it: the event is
# finished (its outcome is recorded; a replay of a dead-lettered record is an operator's
# new decision, not a continuation).
FINAL_STATUSES = frozenset(
    {SyncStatus.SYNCED, SyncStatus.SKIPPED, SyncStatus.FAILED, SyncStatus.DEAD_LETTERED}
)
# Not finished: the event is parked (for its dependency, or for Sync Now) and a later
# status for the same source event follows when it is re-driven. `retrying` is progress
# within one delivery and is in neither set.
WAITING_STATUSES = frozenset({SyncStatus.WAITING_DEPENDENCY, SyncStatus.PENDING_MANUAL})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class SyncStatusEvent:
    source_event_id: str
    account_id: str
    entity_type: str
    entity_id: str
    operation: str
    status: SyncStatus
    occurred_at: dt.datetime
    provider: str | None = None
    entity_version: int | None = None
    provider_record_id: str | None = None
    error_code: ErrorCode | None = None
    message: str | None = None
    attempt: int = 1
    duration_ms: int | None = None
    recorded_at: dt.datetime = field(default_factory=_now)
    status_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def key(self) -> str:
        """Compaction key: the latest status per record survives."""
        return f"{self.account_id}/{self.entity_type}/{self.entity_id}"

    def to_avro(self) -> dict[str, Any]:
        message = scrub(self.message) if self.message is not None else None
        if message is None and self.error_code is not None:
            message = ADVICE[self.error_code]
        return {
            "status_id": self.status_id,
            "source_event_id": self.source_event_id,
            "account_id": self.account_id,
            "provider": self.provider,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "entity_version": self.entity_version,
            "provider_record_id": self.provider_record_id,
            "operation": self.operation,
            "status": self.status.value,
            "error_code": self.error_code.value if self.error_code else None,
            "message": message,
            "attempt": self.attempt,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> SyncStatusEvent:
        code = value.get("error_code")
        return cls(
            source_event_id=value["source_event_id"], account_id=value["account_id"],
            entity_type=value["entity_type"], entity_id=value["entity_id"],
            operation=value["operation"], status=SyncStatus(value["status"]),
            occurred_at=value["occurred_at"], provider=value.get("provider"),
            entity_version=value.get("entity_version"),
            provider_record_id=value.get("provider_record_id"),
            error_code=ErrorCode(code) if code else None, message=value.get("message"),
            attempt=value.get("attempt", 1), duration_ms=value.get("duration_ms"),
            recorded_at=value["recorded_at"], status_id=value["status_id"],
        )
