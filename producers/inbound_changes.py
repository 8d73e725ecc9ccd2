"""AccountingChangeEvent rows for the transactional outbox (topic_kind "inbound").

One function builds the event value the contract in
`schemas/avro/AccountingChangeEvent.avsc` describes, encodes it and adds it to the outbox
inside the caller's transaction; the `OutboxPublisher` then delivers it to
`Topics.inbound`, keyed by the account id so one tenant's changes stay in order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from schemas.codec import AvroCodec
from state import repository as repo

__all__ = ["CHANGE_ID_NAMESPACE", "add_change_event", "change_id_for"]

# Fixed namespace for deterministic change ids (uuid5); never change it, or re-reads of
# the same provider change would stop mapping to the same id.
CHANGE_ID_NAMESPACE = uuid.UUID("6d3c2f0e-1b7a-5c4e-9a51-b1c0c1e4a7d2")


def change_id_for(account_id: str, provider: str, entity_type: str, provider_id: str,
                  changed_at: dt.datetime, content: str | None = None) -> str:
    """The same provider change always gets the same id, so readers can dedupe on it.
    `content` (the inbound poller's digest of the record's state) tells apart two
    changes of one record stamped with the same time (whole-second stamps)."""
    stamp = changed_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    parts = (account_id, provider, entity_type, provider_id, stamp)
    name = "|".join(parts if content is None else (*parts, content))
    return str(uuid.uuid5(CHANGE_ID_NAMESPACE, name))


def add_change_event(s: Session, codec: AvroCodec, *, change_id: str, account_id: str,
                     provider: str, entity_type: str, provider_id: str,
                     entity_id: str | None, operation: str, changed_at: dt.datetime,
                     details: Mapping[str, str],
                     customer: Mapping[str, Any] | None = None,
                     item: Mapping[str, Any] | None = None,
                     invoice: Mapping[str, Any] | None = None,
                     payment: Mapping[str, Any] | None = None,
                     changed_fields: Sequence[str] = (),
                     previous: Mapping[str, str | None] | None = None,
                     conflicting_fields: Sequence[str] = ()) -> None:
    """Encode one AccountingChangeEvent and add it to the outbox in `s`'s transaction.

    `customer`/`item`/`invoice`/`payment` are the Avro values of the snapshot records
    (at most one, matching `entity_type`); `changed_fields`, `previous` and
    `conflicting_fields` as the schema documents them."""
    value: dict[str, Any] = {
        "change_id": change_id, "account_id": account_id, "provider": provider,
        "entity_type": entity_type, "provider_record_id": provider_id,
        "entity_id": entity_id, "operation": operation, "changed_at": changed_at,
        "customer": dict(customer) if customer is not None else None,
        "item": dict(item) if item is not None else None,
        "details": {str(k): str(v) for k, v in details.items()},
        "invoice": dict(invoice) if invoice is not None else None,
        "payment": dict(payment) if payment is not None else None,
        "changed_fields": list(changed_fields),
        "previous": dict(previous or {}),
        "conflicting_fields": list(conflicting_fields),
    }
    shown = entity_id if entity_id is not None else "unlinked"
    repo.add_outbox(s, account_id=account_id, topic_kind="inbound", key=account_id,
                    value=codec.encode("AccountingChangeEvent", value),
                    entity_type=entity_type, entity_id=entity_id,
                    message=f"{operation} {entity_type} {provider_id} ({shown})")
