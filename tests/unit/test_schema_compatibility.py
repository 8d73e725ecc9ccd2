"""Every schema change so far is backward compatible: old data reads with today's schema."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema
from fastavro.utils import generate_many

from schemas.codec import SCHEMA_DIR, AvroCodec, schema_names

HISTORY = SCHEMA_DIR / "history"
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")


def _history() -> list[tuple[str, int, Path]]:
    found = []
    for path in sorted(HISTORY.glob("*.avsc")):
        match = _VERSIONED.match(path.name)
        assert match, f"{path.name} is not named <Schema>.v<N>.avsc"
        found.append((match["name"], int(match["version"]), path))
    return found


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _current(name: str) -> Any:
    return _load(SCHEMA_DIR / f"{name}.avsc")


def _latest(name: str) -> tuple[int, Any]:
    versions = [(v, p) for n, v, p in _history() if n == name]
    version, path = max(versions)
    return version, _load(path)


def _strip_logical(schema: Any) -> Any:
    """Logical types do not take part in resolution; random raw values need them off."""
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    return schema


def _named_records(schema: Any, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named record in a schema, by short name."""
    out = {} if out is None else out
    if isinstance(schema, list):
        for s in schema:
            _named_records(s, out)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            out.setdefault(schema["name"].rsplit(".", 1)[-1], schema)
        for f in schema.get("fields", []):
            _named_records(f["type"], out)
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), dict | list):
                _named_records(schema[key], out)
    return out


HISTORY_CASES = [pytest.param(n, v, p, id=f"{n}.v{v}") for n, v, p in _history()]


def test_history_has_a_v1_for_every_current_schema() -> None:
    versions = {(n, v) for n, v, _ in _history()}
    for name in schema_names():
        assert (name, 1) in versions, f"add schemas/avro/history/{name}.v1.avsc"
    # and versions are contiguous: v1..vN without gaps
    for name in schema_names():
        numbers = sorted(v for n, v in versions if n == name)
        assert numbers == list(range(1, len(numbers) + 1)), (name, numbers)


def test_history_names_only_known_schemas() -> None:
    assert {n for n, _, _ in _history()} <= set(schema_names())


@pytest.mark.parametrize(("name", "version", "path"), HISTORY_CASES)
def test_new_fields_have_defaults(name: str, version: int, path: Path) -> None:
    old = _named_records(_load(path))
    new = _named_records(_current(name))
    for record_name, reader in new.items():
        if reader.get("type") != "record" or record_name not in old:
            continue
        writer_fields = {f["name"] for f in old[record_name]["fields"]}
        for field in reader["fields"]:
            known = {field["name"], *field.get("aliases", [])} & writer_fields
            if not known:
                assert "default" in field, (
                    f"{name}: field {record_name}.{field['name']} is new since v{version} "
                    f"and has no default, so v{version} data cannot be read")


@pytest.mark.parametrize(("name", "version", "path"), HISTORY_CASES)
def test_enum_symbols_are_never_removed(name: str, version: int, path: Path) -> None:
    old = _named_records(_load(path))
    new = _named_records(_current(name))
    for enum_name, writer in old.items():
        if writer.get("type") != "enum" or enum_name not in new:
            continue
        reader = new[enum_name]
        missing = set(writer["symbols"]) - set(reader["symbols"])
        assert not missing or "default" in reader, (name, enum_name, missing)


@pytest.mark.parametrize(("name", "version", "path"), HISTORY_CASES)
def test_old_data_reads_with_the_current_schema(name: str, version: int, path: Path) -> None:
    writer = parse_schema(_strip_logical(_load(path)))
    reader = parse_schema(_strip_logical(_current(name)))
    for value in generate_many(writer, 60):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, value)
        buf.seek(0)
        read = fastavro.schemaless_reader(buf, writer, reader)
        assert buf.tell() == len(buf.getvalue())
        assert isinstance(read, dict)
        # every field the reader knows is present (filled from defaults when new)
        assert {f["name"] for f in _current(name)["fields"]} == set(read)


@pytest.mark.parametrize(("name", "version", "path"), HISTORY_CASES)
def test_codec_knows_every_historical_writer(name: str, version: int, path: Path) -> None:
    """Single-object records written with an old schema are resolved by its fingerprint."""
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    parsed = parse_schema(_load(path))
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    value = next(iter(generate_many(parse_schema(_strip_logical(_load(path))), 1)))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parse_schema(_strip_logical(_load(path))), value)
    data = b"\xc3\x01" + fp + body.getvalue()
    try:
        decoded = AvroCodec().decode(data)
    except Exception as exc:  # random raw values may not convert to logical types
        from schemas.codec import DecodeError

        assert isinstance(exc, DecodeError)
        assert exc.reason == "corrupt_body", exc  # known writer: never unknown_schema
    else:
        assert decoded.schema_name == name


@pytest.mark.parametrize("name", schema_names())
def test_current_is_the_latest_history_version_or_compatible(name: str) -> None:
    _version, latest = _latest(name)
    current = _current(name)
    if current == latest:
        return
    # The current schema moved on without a new history file: it must still read
    # everything the latest recorded version wrote.
    writer = parse_schema(_strip_logical(latest))
    reader = parse_schema(_strip_logical(current))
    for value in generate_many(writer, 60):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, value)
        buf.seek(0)
        fastavro.schemaless_reader(buf, writer, reader)


def test_a_breaking_change_would_be_caught() -> None:
    """The checks above are not vacuous: a new field without default fails resolution."""
    old = _strip_logical(_current("ItemChangeEvent"))
    new = json.loads(json.dumps(old))
    new["fields"].append({"name": "warehouse", "type": "string"})
    writer, reader = parse_schema(old), parse_schema(new)
    value = next(iter(generate_many(writer, 1)))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, writer, value)
    buf.seek(0)
    with pytest.raises(Exception, match=r"warehouse|default"):
        fastavro.schemaless_reader(buf, writer, reader)


def _sample_events() -> dict[str, Any]:
    import datetime as dt
    from decimal import Decimal

    from schemas.records import (
        ChangeEvent,
        Customer,
        EntityType,
        EventType,
        Invoice,
        InvoiceLine,
        Item,
        Payment,
    )

    t = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)

    def ev(record: Any, entity: EntityType) -> ChangeEvent:
        return ChangeEvent("e-1", EventType.CREATED, t, "a-1", entity, record.id, 1, t, record)

    return {
        "CustomerChangeEvent": ev(Customer("c-1", "Ada", email="a@x.com"), EntityType.CUSTOMER),
        "ItemChangeEvent": ev(Item("i-1", "Drain", unit_price=Decimal("9.5")), EntityType.ITEM),
        "InvoiceChangeEvent": ev(Invoice(
            "inv-1", "c-1", "1", dt.date(2026, 4, 1), None, "USD", "none",
            (InvoiceLine("i-1", None, Decimal("1"), Decimal("9.5"), Decimal("0"),
                         Decimal("0"), Decimal("9.50")),),
            Decimal("9.50"), Decimal("0"), Decimal("9.50")), EntityType.INVOICE),
        "PaymentChangeEvent": ev(Payment("p-1", "inv-1", "c-1", Decimal("9.50"), "USD",
                                         dt.date(2026, 4, 2)), EntityType.PAYMENT),
    }


CHANGE_HISTORY = [pytest.param(n, v, p, id=f"{n}.v{v}") for n, v, p in _history()
                  if n.endswith("ChangeEvent") and n != "AccountingChangeEvent"]


@pytest.mark.parametrize(("name", "version", "path"), CHANGE_HISTORY)
def test_an_old_producers_event_decodes_to_the_same_record(name: str, version: int,
                                                          path: Path) -> None:
    """A real event written by a producer still on vN decodes through the codec, with the
    fields added since then at their defaults."""
    from dataclasses import fields, replace

    from fastavro.schema import fingerprint, to_parsing_canonical_form

    from schemas.events import event_from_avro, event_to_avro

    sample = _sample_events()[name]
    writer = parse_schema(_load(path))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, event_to_avro(sample))  # extra fields ignored
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(writer), "CRC-64-AVRO"))
    decoded = AvroCodec().decode(b"\xc3\x01" + fp + body.getvalue())
    event = event_from_avro(decoded.schema_name, decoded.value)
    old_fields = {f["name"] for r in _named_records(_load(path)).values()
                  if r.get("type") == "record" for f in r["fields"]}
    # fields the old writer did not have come back as the record's defaults
    expected_record = replace(sample.record, **{
        f.name: f.default for f in fields(sample.record)
        if f.name not in old_fields and not callable(f.default)})
    assert event == replace(sample, record=expected_record)
