"""The closed list of error codes a sync-status event may carry, each with what to do.

Analysts and the web app key on these codes; add new ones at the end, never rename.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ADVICE", "ErrorCode"]


class ErrorCode(StrEnum):
    UNDECODABLE = "undecodable"
    SCHEMA_INVALID = "schema_invalid"
    UNKNOWN_CURRENCY = "unknown_currency"
    NOT_CONNECTED = "not_connected"
    SYNC_DISABLED = "sync_disabled"
    PRE_CONNECTION = "pre_connection"
    DUPLICATE_EVENT = "duplicate_event"
    STALE_VERSION = "stale_version"
    UNCHANGED = "unchanged"
    MISSING_DEPENDENCY = "missing_dependency"
    UNMAPPED_ITEM = "unmapped_item"
    VALIDATION_FAILED = "validation_failed"
    DUPLICATE_NAME = "duplicate_name"
    CONFLICT = "conflict"
    TOTAL_MISMATCH = "total_mismatch"
    AUTH_EXPIRED = "auth_expired"
    RECONNECT_REQUIRED = "reconnect_required"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    THROTTLED = "throttled"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    TIMEOUT = "timeout"
    RETRY_BUDGET_EXHAUSTED = "retry_budget_exhausted"
    UNSUPPORTED = "unsupported"
    INTERNAL = "internal"
    KEY_MISMATCH = "key_mismatch"
    CONNECTION_CHANGED = "connection_changed"
    UNMAPPED_TAX_RATE = "unmapped_tax_rate"


ADVICE: dict[ErrorCode, str] = {
    ErrorCode.UNDECODABLE: "The producer sent bytes that are not a known Avro contract; fix the "
    "producer, then replay the dead letter.",
    ErrorCode.SCHEMA_INVALID: "The event breaks the contract's rules; fix the producer, then "
    "replay the dead letter.",
    ErrorCode.UNKNOWN_CURRENCY: "Use an ISO 4217 currency code the service knows.",
    ErrorCode.NOT_CONNECTED: "Connect an accounting system in Settings > Integrations.",
    ErrorCode.SYNC_DISABLED: "Turn on syncing for this record type in the sync settings.",
    ErrorCode.PRE_CONNECTION: "Records created before the connection are not synced "
    "retroactively; import them through the setup wizard if needed.",
    ErrorCode.DUPLICATE_EVENT: "Nothing to do: this event was already applied.",
    ErrorCode.STALE_VERSION: "Nothing to do: a newer version of this record was already applied.",
    ErrorCode.UNCHANGED: "Nothing to do: the books already hold this data.",
    ErrorCode.MISSING_DEPENDENCY: "Waiting for a related record; it syncs when that arrives.",
    ErrorCode.UNMAPPED_ITEM: "Map the item to an income account in the setup wizard (step 3).",
    ErrorCode.VALIDATION_FAILED: "The accounting system rejected the data; correct the record "
    "in BlueClerk.",
    ErrorCode.DUPLICATE_NAME: "Another record in the accounting system uses this name; rename "
    "one of them or link them in the setup wizard.",
    ErrorCode.CONFLICT: "The record changed in the accounting system at the same time; it "
    "will be retried.",
    ErrorCode.TOTAL_MISMATCH: "The books would total differently from BlueClerk; check tax "
    "and discount settings on the invoice.",
    ErrorCode.AUTH_EXPIRED: "The access token expired; it is refreshed automatically.",
    ErrorCode.RECONNECT_REQUIRED: "The connection was revoked or expired; reconnect the "
    "accounting system in Settings > Integrations.",
    ErrorCode.PERMISSION_DENIED: "The connected user lacks permission; reconnect with an "
    "administrator account.",
    ErrorCode.NOT_FOUND: "The linked record no longer exists in the accounting system.",
    ErrorCode.THROTTLED: "The accounting system's rate limit was reached; it will be retried.",
    ErrorCode.PROVIDER_UNAVAILABLE: "The accounting system is unavailable; it will be retried.",
    ErrorCode.TIMEOUT: "The accounting system did not answer in time; it will be retried.",
    ErrorCode.RETRY_BUDGET_EXHAUSTED: "Retries ran out; replay the dead letter once the "
    "accounting system is healthy.",
    ErrorCode.UNSUPPORTED: "This operation is not supported by the connected accounting system.",
    ErrorCode.INTERNAL: "An internal error; the event was dead-lettered for replay.",
    ErrorCode.KEY_MISMATCH: "The Kafka key must be the event's account_id; fix the producer "
    "and publish the event again with the right key.",
    ErrorCode.UNMAPPED_TAX_RATE: "Map the tax rate to one of the accounting system's tax codes "
    "in the setup wizard (step 3, taxes); the invoices waiting for it are sent then.",
    ErrorCode.CONNECTION_CHANGED: "The account was connected to another company, where this "
    "waiting change means nothing; it was not synced. Import or re-send it if needed.",
}
