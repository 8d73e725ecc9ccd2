"""AvroCodec: both wire formats, the exact single-object header, and decode failures."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import uuid
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema, to_parsing_canonical_form

from schemas.codec import SCHEMA_DIR, AvroCodec, DecodeError, load_schema, schema_names
from schemas.error_codes import ErrorCode
from schemas.events import SCHEMA_BY_ENTITY, event_from_avro, event_to_avro
from schemas.records import (
    Address,
    ChangeEvent,
    Customer,
    EntityType,
    EventType,
    Invoice,
    InvoiceLine,
    Item,
    Payment,
    Record,
)
from schemas.status import SyncStatus, SyncStatusEvent

# ---------------------------------------------------------------------------------------
# An independent implementation of the Avro specification's fingerprinting: Parsing
# Canonical Form and the Rabin CRC-64-AVRO, written from the spec, not from fastavro.
# ---------------------------------------------------------------------------------------

_EMPTY = 0xC15D213AA4D7A795


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp & 0xFFFFFFFFFFFFFFFF)
    return table


_TABLE = _fp_table()


def crc64_avro(data: bytes) -> int:
    """The spec's `fingerprint64`."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def canonical_form(schema: Any, namespace: str | None = None,
                   seen: set[str] | None = None) -> str:
    """Parsing Canonical Form per the spec: PRIMITIVES, FULLNAMES, STRIP, ORDER, WHITESPACE."""
    seen = set() if seen is None else seen

    def fullname(name: str, ns: str | None) -> str:
        return name if "." in name or not ns else f"{ns}.{name}"

    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return json.dumps(schema)
        return json.dumps(fullname(schema, namespace))
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, namespace, seen) for s in schema) + "]"
    kind = schema["type"]
    if kind in _PRIMITIVES:
        return json.dumps(kind)
    if kind in ("record", "enum", "fixed"):
        name = fullname(schema["name"], schema.get("namespace", namespace))
        if name in seen:
            return json.dumps(name)
        seen.add(name)
        inner_ns = name.rsplit(".", 1)[0] if "." in name else None
        parts = [f'"name":{json.dumps(name)}', f'"type":{json.dumps(kind)}']
        if kind == "record":
            fields = ",".join(
                '{"name":' + json.dumps(f["name"]) + ',"type":'
                + canonical_form(f["type"], inner_ns, seen) + "}"
                for f in schema["fields"]
            )
            parts.append(f'"fields":[{fields}]')
        elif kind == "enum":
            parts.append('"symbols":' + json.dumps(schema["symbols"], separators=(",", ":")))
        else:
            parts.append(f'"size":{int(schema["size"])}')
        return "{" + ",".join(parts) + "}"
    if kind == "array":
        return '{"type":"array","items":' + canonical_form(schema["items"], namespace, seen) + "}"
    if kind == "map":
        return '{"type":"map","values":' + canonical_form(schema["values"], namespace, seen) + "}"
    raise AssertionError(f"unexpected schema {schema!r}")


def raw_schema(name: str) -> Any:
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


# ---------------------------------------------------------------------------------------
# Sample events, one per contract, with millisecond timestamps (timestamp-millis).
# ---------------------------------------------------------------------------------------

T0 = dt.datetime(2026, 11, 2, 9, 30, 15, 123000, tzinfo=dt.UTC)


def _event(record: Record, entity_type: EntityType, version: int = 3) -> ChangeEvent:
    return ChangeEvent(str(uuid.uuid4()), EventType.UPDATED, T0, "acct-1", entity_type,
                       record.id, version, T0 - dt.timedelta(days=2), record)


SAMPLES: dict[str, ChangeEvent] = {
    "CustomerChangeEvent": _event(Customer(
        "c-1", "O'Brien & Söhne: \"Plumbing\"", given_name="Seán", family_name="O'Brien",
        company_name="O'Brien GmbH", email="sean@example.com", phone="+353 1 555 0100",
        billing_address=Address("1 Main St", None, "Dublin", "D", "D01", "IE"),
        currency="EUR", customer_type="Business", active=False), EntityType.CUSTOMER),
    "ItemChangeEvent": _event(Item("i-1", "Drain cleaning 排水", sku="DR-1",
                                   description="Per hour", unit_price=Decimal("19.9950"),
                                   currency="USD", taxable=True), EntityType.ITEM),
    "InvoiceChangeEvent": _event(Invoice(
        "inv-1", "c-1", "INV-0001", dt.date(2026, 11, 2), None, "KWD", "inclusive",
        (InvoiceLine("i-1", "Two hours", Decimal("2"), Decimal("12.3456"), Decimal("10"),
                     Decimal("5"), Decimal("22.222")),
         InvoiceLine("i-2", None, Decimal("0.3333"), Decimal("3"), Decimal("0"),
                     Decimal("0"), Decimal("1.000"))),
        Decimal("22.164"), Decimal("1.058"), Decimal("23.222"), "open", "Thanks"),
        EntityType.INVOICE),
    "PaymentChangeEvent": _event(Payment("p-1", "inv-1", "c-1", Decimal("1500"), "JPY",
                                         dt.date(2026, 11, 5), "card", "ref 42"),
                                 EntityType.PAYMENT),
}


def test_samples_cover_every_change_event_schema() -> None:
    assert set(SAMPLES) == set(SCHEMA_BY_ENTITY.values())
    assert set(schema_names()) == {*SAMPLES, "SyncStatusEvent", "AccountingChangeEvent"}


@pytest.mark.parametrize("schema_name", sorted(SAMPLES))
def test_change_event_round_trip(schema_name: str) -> None:
    codec = AvroCodec()
    event = SAMPLES[schema_name]
    data = codec.encode(schema_name, event_to_avro(event))
    decoded = codec.decode(data)
    assert decoded.schema_name == schema_name
    assert event_from_avro(decoded.schema_name, decoded.value) == event
    assert codec.decode(data, expected=schema_name).schema_name == schema_name


def test_sync_status_event_round_trip() -> None:
    codec = AvroCodec()
    status = SyncStatusEvent(
        source_event_id="e-1", account_id="acct-1", entity_type="invoice", entity_id="inv-1",
        operation="create", status=SyncStatus.FAILED, occurred_at=T0, provider="quickbooks",
        entity_version=4, provider_record_id="146", error_code=ErrorCode.TOTAL_MISMATCH,
        message="totals differ", attempt=3, duration_ms=250,
        recorded_at=T0 + dt.timedelta(seconds=1))
    decoded = codec.decode(codec.encode("SyncStatusEvent", status.to_avro()))
    assert decoded.schema_name == "SyncStatusEvent"
    assert SyncStatusEvent.from_avro(decoded.value) == status


def test_sync_status_without_message_carries_the_advice() -> None:
    status = SyncStatusEvent("e", "a", "customer", "c", "none", SyncStatus.SKIPPED, T0,
                             error_code=ErrorCode.NOT_CONNECTED, recorded_at=T0)
    codec = AvroCodec()
    value = codec.decode(codec.encode("SyncStatusEvent", status.to_avro())).value
    assert value["message"].startswith("Connect an accounting system")
    assert value["provider"] is None and value["duration_ms"] is None


def test_accounting_change_event_round_trip() -> None:
    codec = AvroCodec()
    value: dict[str, Any] = {
        "change_id": str(uuid.uuid4()), "account_id": "acct-1", "provider": "xero",
        "entity_type": "item", "provider_record_id": "X-9", "entity_id": "i-1",
        "operation": "imported", "changed_at": T0, "customer": None,
        "item": {"id": "i-1", "name": "Boiler", "sku": None, "description": None,
                 "unit_price": Decimal("100.5000"), "currency": "GBP", "taxable": True,
                 "active": True, "income_account_id": "200"},
        "details": {"income_account": "200"},
        "invoice": None, "payment": None, "changed_fields": [], "previous": {},
        "conflicting_fields": [],
    }
    decoded = codec.decode(codec.encode("AccountingChangeEvent", value))
    assert decoded.schema_name == "AccountingChangeEvent"
    assert decoded.value == value


# ---------------------------------------------------------------------------------------
# The single-object header, byte for byte.
# ---------------------------------------------------------------------------------------


def test_crc64_avro_reference_values() -> None:
    # The fingerprint of the empty input is the spec's EMPTY constant; the primitive
    # schema "null" has a published fingerprint (Avro's test vectors).
    assert crc64_avro(b"") == _EMPTY
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A


@pytest.mark.parametrize("schema_name", schema_names())
def test_single_object_header_is_spec_exact(schema_name: str) -> None:
    codec = AvroCodec()
    if schema_name in SAMPLES:
        value = event_to_avro(SAMPLES[schema_name])
    elif schema_name == "SyncStatusEvent":
        value = SyncStatusEvent("e", "a", "customer", "c", "none", SyncStatus.SYNCED, T0,
                                recorded_at=T0).to_avro()
    else:
        value = {"change_id": "x", "account_id": "a", "provider": "quickbooks",
                 "entity_type": "customer", "provider_record_id": "1",
                 "operation": "created", "changed_at": T0}
    data = codec.encode(schema_name, value)

    ours = canonical_form(raw_schema(schema_name))
    # Our spec reading agrees with fastavro's canonical form, character for character.
    assert ours == to_parsing_canonical_form(parse_schema(raw_schema(schema_name)))
    expected_fp = struct.pack("<Q", crc64_avro(ours.encode()))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == expected_fp

    body = io.BytesIO()
    fastavro.schemaless_writer(body, load_schema(schema_name), value)
    assert data[10:] == body.getvalue()


# ---------------------------------------------------------------------------------------
# Confluent wire format with a fake registry client.
# ---------------------------------------------------------------------------------------


class _Registered:
    def __init__(self, schema_str: str) -> None:
        self.schema_str = schema_str


class FakeRegistry:
    """Stands in for confluent-kafka's SchemaRegistryClient: schemas by id."""

    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas = schemas
        self.lookups: list[int] = []

    def get_schema(self, schema_id: int) -> _Registered:
        self.lookups.append(schema_id)
        if schema_id not in self.schemas:
            raise LookupError(f"Schema {schema_id} not found (40403)")
        return _Registered(self.schemas[schema_id])


def _confluent(schema_id: int, schema_name: str, value: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, load_schema(schema_name), value)
    return b"\x00" + struct.pack(">I", schema_id) + body.getvalue()


def test_confluent_frame_decodes_through_the_registry() -> None:
    codec = AvroCodec()
    registry = FakeRegistry({70000: (SCHEMA_DIR / "InvoiceChangeEvent.avsc").read_text()})
    codec._registry = registry
    event = SAMPLES["InvoiceChangeEvent"]
    data = _confluent(70000, "InvoiceChangeEvent", event_to_avro(event))
    assert data[0] == 0 and data[1:5] == b"\x00\x01\x11\x70"
    decoded = codec.decode(data)
    assert decoded.schema_name == "InvoiceChangeEvent"
    assert event_from_avro(decoded.schema_name, decoded.value) == event
    codec.decode(data)
    assert registry.lookups == [70000]  # the writer schema is cached by id


def test_confluent_unknown_id_is_unknown_schema() -> None:
    codec = AvroCodec()
    codec._registry = FakeRegistry({})
    with pytest.raises(DecodeError) as info:
        codec.decode(_confluent(5, "ItemChangeEvent", event_to_avro(SAMPLES["ItemChangeEvent"])))
    assert info.value.reason == "unknown_schema"
    assert "5" in str(info.value)


def test_confluent_frame_without_registry_is_a_clear_error() -> None:
    data = _confluent(12, "ItemChangeEvent", event_to_avro(SAMPLES["ItemChangeEvent"]))
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(data)
    assert info.value.reason == "unknown_schema"
    assert "no Schema Registry is configured" in str(info.value)
    assert "schema id 12" in str(info.value)


# ---------------------------------------------------------------------------------------
# Decode failures, each with its stable reason.
# ---------------------------------------------------------------------------------------


def _valid() -> bytes:
    return AvroCodec().encode("PaymentChangeEvent", event_to_avro(SAMPLES["PaymentChangeEvent"]))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\x07garbage", "bad_magic"),
        (b"{\"json\": true}", "bad_magic"),
        (b"\xc3\x01\x01\x02\x03", "truncated"),
        (b"\xc3\x01", "truncated"),
        (b"\xc3\x01" + b"\xab" * 8 + b"\x00", "unknown_schema"),
    ],
)
def test_decode_error_reasons(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(data)
    assert info.value.reason == reason


def test_corrupt_body() -> None:
    valid = _valid()
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(valid[:-6])  # the body ends mid-record
    assert info.value.reason == "corrupt_body"
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(valid[:10] + b"\xff" * 20)
    assert info.value.reason == "corrupt_body"


def test_trailing_bytes() -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(_valid() + b"\x00\x00")
    assert info.value.reason == "trailing_bytes"
    assert "2 bytes" in str(info.value)


def test_wrong_schema_when_a_reader_is_expected() -> None:
    with pytest.raises(DecodeError) as info:
        AvroCodec().decode(_valid(), expected="InvoiceChangeEvent")
    assert info.value.reason == "wrong_schema"


def test_decode_error_is_a_value_error_with_a_message() -> None:
    err = DecodeError("bad_magic", "nope")
    assert isinstance(err, ValueError) and str(err) == "nope" and err.reason == "bad_magic"
