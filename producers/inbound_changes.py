"""AccountingChangeEvent rows for the transactional outbox (topic_kind "inbound").

One function builds the event value the contract in
`schemas/avro/AccountingChangeEvent.avsc` describes, encodes it and adds it to the outbox
inside the caller's transaction; the `OutboxPublisher` then delivers it to
`Topics.inbound`, keyed by the account id so one tenant's changes stay in order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from schemas.codec import AvroCodec
from state import repository as repo

__all__ = ["CHANGE_ID_NAMESPACE", "add_change_event", "change_id_for"]

# Fixed namespace for deterministic change ids (uuid5); never change it, or re-reads of
# the same provider change would stop mapping to the same id.
CHANGE_ID_NAMESPACE = uuid.UUID("6d3c2f0e-1b7a-5c4e-9a51-b1c0c1e4a7d2")


def change_id_for(account_id: str, provider: str, entity_type: str, provider_id: str,
                  changed_at: dt.datetime) -> str:
    """The same provider change always gets the same id, so readers can dedupe on it."""
    stamp = changed_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    name = "|".join((account_id, provider, entity_type, provider_id, stamp))
    return str(uuid.uuid5(CHANGE_ID_NAMESPACE, name))


def add_change_event(s: Session, codec: AvroCodec, *, change_id: str, account_id: str,
                     provider: str, entity_type: str, provider_id: str,
                     entity_id: str | None, operation: str, changed_at: dt.datetime,
                     details: Mapping[str, str],
                     customer: Mapping[str, Any] | None = None,
                     item: Mapping[str, Any] | None = None) -> None:
    """Encode one AccountingChangeEvent and add it to the outbox in `s`'s transaction."""
    value: dict[str, Any] = {
        "change_id": change_id, "account_id": account_id, "provider": provider,
        "entity_type": entity_type, "provider_record_id": provider_id,
        "entity_id": entity_id, "operation": operation, "changed_at": changed_at,
        "customer": dict(customer) if customer is not None else None,
        "item": dict(item) if item is not None else None,
        "details": {str(k): str(v) for k, v in details.items()},
    }
    shown = entity_id if entity_id is not None else "unlinked"
    repo.add_outbox(s, account_id=account_id, topic_kind="inbound", key=account_id,
                    value=codec.encode("AccountingChangeEvent", value),
                    entity_type=entity_type, entity_id=entity_id,
                    message=f"{operation} {entity_type} {provider_id} ({shown})")
