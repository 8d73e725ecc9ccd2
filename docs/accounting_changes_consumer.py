"""Example consumer of `<prefix>accounting-changes`: apply changes made in the books to
BlueClerk's own records (docs/accounting-changes.md explains every field).

It applies a customer's changed contact fields (email, phone, names, address) and an
item's changed name, SKU, description and price to a small JSON "database" standing in
for BlueClerk's, following the conflict policy (README, "Conflicts between BlueClerk and
the books"):

- only the fields in `changed_fields` are touched, with the new value from the snapshot;
- a field listed in `conflicting_fields` is left alone: BlueClerk changed it too and its
  value is being written to the books;
- a field whose BlueClerk value is no longer the event's `previous` value was changed in
  BlueClerk meanwhile: BlueClerk's value is kept (same rule, decided here);
- events are deduplicated on `change_id` (delivery is at least once);
- records the books created (`entity_id` null) are only reported: creating BlueClerk
  records is the owning service's decision.

    python docs/accounting_changes_consumer.py --bootstrap 127.0.0.1:9092 \
        --store blueclerk.json --idle-seconds 5

The store is {"customers": {id: {...}}, "items": {id: {...}}, "seen": [change ids]}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CUSTOMER_FIELDS = ("display_name", "given_name", "family_name", "email", "phone",
                   "billing_address.line1", "billing_address.line2", "billing_address.city",
                   "billing_address.region", "billing_address.postal_code",
                   "billing_address.country")
ITEM_FIELDS = ("name", "sku", "description", "unit_price")


def _snapshot_value(snapshot: dict[str, Any], field: str) -> Any:
    if field.startswith("billing_address."):
        address = snapshot.get("billing_address") or {}
        return address.get(field.split(".", 1)[1])
    value = snapshot.get(field)
    if isinstance(value, Decimal):  # Avro decimal(18,4) -> the text BlueClerk stores
        value = value.normalize()
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent > -2:
            value = value.quantize(Decimal("0.01"))
        return f"{value:f}"
    return value


def apply_change(store: dict[str, Any], event: dict[str, Any]) -> list[str]:
    """Apply one decoded AccountingChangeEvent to the store; returns what it did."""
    seen = store.setdefault("seen", [])
    if event["change_id"] in seen:
        return ["duplicate"]
    seen.append(event["change_id"])
    kind = event["entity_type"]
    if kind not in ("customer", "item") or event["operation"] != "updated":
        return [f"ignored {event['operation']} {kind}"]
    if event.get("entity_id") is None:
        return [f"not linked {kind} {event['provider_record_id']}"]
    fields = CUSTOMER_FIELDS if kind == "customer" else ITEM_FIELDS
    table = store.setdefault("customers" if kind == "customer" else "items", {})
    record = table.get(event["entity_id"])
    if record is None:
        return [f"unknown {kind} {event['entity_id']}"]
    snapshot = event[kind] or {}
    previous = event.get("previous") or {}
    done = []
    for field in event.get("changed_fields") or []:
        if field not in fields:
            continue
        if field in (event.get("conflicting_fields") or []):
            done.append(f"kept {field}: changed in BlueClerk too")
            continue
        if field in previous and record.get(field) != previous[field]:
            done.append(f"kept {field}: BlueClerk changed it meanwhile")
            continue
        record[field] = _snapshot_value(snapshot, field)
        done.append(f"set {field}={record[field]}")
    return done


def main(argv: list[str] | None = None) -> int:
    from confluent_kafka import Consumer

    from schemas.codec import AvroCodec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="blueclerk.accounting-changes")
    parser.add_argument("--group", default=f"accounting-changes-example-{uuid.uuid4()}")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="stop after this long without a message")
    args = parser.parse_args(argv)
    store = json.loads(args.store.read_text()) if args.store.exists() else {}
    codec = AvroCodec()
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic])
    last = time.monotonic()
    try:
        while time.monotonic() - last < args.idle_seconds:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            last = time.monotonic()
            value = message.value()
            assert isinstance(value, bytes)
            event = codec.decode(value).value
            for line in apply_change(store, event):
                print(f"{event['entity_type']} {event.get('entity_id')}: {line}", flush=True)
            args.store.write_text(json.dumps(store, indent=2, sort_keys=True))
            consumer.commit(message, asynchronous=False)  # after the store is saved
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
