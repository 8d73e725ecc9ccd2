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


# -- records written with every historical schema, decoded through the codec ---------------
#
# Random raw values (fastavro's generate_many) rarely satisfy logical types, so decoding
# them through the codec mostly fails; the values below are valid for every logical type,
# and the decoded record is compared field by field with what the writer wrote (fields the
# writer did not have at the reader's defaults).


def _named_types(schema: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, list):
        for s in schema:
            _named_types(s, out)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            out[schema["name"].rsplit(".", 1)[-1]] = schema
            if "namespace" in schema:
                out[f"{schema['namespace']}.{schema['name']}"] = schema
        for f in schema.get("fields", []):
            _named_types(f["type"], out)
        for key in ("items", "values"):
            if isinstance(schema.get(key), dict | list):
                _named_types(schema[key], out)
    return out


class _Values:
    """Valid values for an Avro schema; `variant` varies union branches and enum symbols."""

    def __init__(self, schema: Any, variant: int) -> None:
        import random

        self._named = _named_types(schema, {})
        self._rng = random.Random(variant)
        self._variant = variant

    def _deref(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self._named:
            return self._named[schema]
        return schema

    def make(self, schema: Any) -> Any:
        import datetime as dt
        import uuid
        from decimal import Decimal

        schema = self._deref(schema)
        if isinstance(schema, list):
            branches = [b for b in schema if b != "null"]
            if "null" in schema and (self._variant % 2 or not branches):
                return None
            return self.make(branches[self._rng.randrange(len(branches))])
        kind = schema["type"] if isinstance(schema, dict) else schema
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if isinstance(kind, dict | list):
            return self.make(kind)
        if logical == "decimal":
            scale = int(schema.get("scale", 0))
            return Decimal(self._rng.randint(-10**9, 10**9)).scaleb(-scale)
        if logical in ("timestamp-millis", "timestamp-micros"):
            ms = self._rng.randint(0, 4_000_000_000_000)
            return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)
        if logical == "date":
            return dt.date(2020, 1, 1) + dt.timedelta(days=self._rng.randint(0, 4000))
        if logical == "uuid":
            return str(uuid.UUID(int=self._rng.getrandbits(128)))
        if kind == "record":
            return {f["name"]: self.make(f["type"]) for f in schema["fields"]}
        if kind == "enum":
            return schema["symbols"][self._rng.randrange(len(schema["symbols"]))]
        if kind == "array":
            return [self.make(schema["items"]) for _ in range(2)]
        if kind == "map":
            return {f"k{n}": self.make(schema["values"]) for n in range(2)}
        if kind == "fixed":
            return bytes(self._rng.getrandbits(8) for _ in range(schema["size"]))
        primitive: dict[str, Any] = {
            "null": None, "boolean": bool(self._variant % 2),
            "int": self._rng.randint(-2**31, 2**31 - 1),
            "long": self._rng.randint(-2**62, 2**62), "float": 0.5, "double": 1.25,
            "string": f"v{self._rng.randint(0, 10**6)} ü", "bytes": b"\x00\xffb"}
        return primitive[kind]


def _expected(writer: Any, reader: Any, value: Any, wnamed: dict[str, Any],
              rnamed: dict[str, Any]) -> Any:
    """What the reader schema makes of `value` written with the writer schema."""
    writer = wnamed.get(writer, writer) if isinstance(writer, str) else writer
    reader = rnamed.get(reader, reader) if isinstance(reader, str) else reader
    if value is None:
        return None
    if isinstance(writer, list):
        writer = next(b for b in (wnamed.get(b, b) if isinstance(b, str) else b
                                  for b in writer if b != "null")
                      if not (isinstance(value, dict) and _kind(b) != "record"))
    if isinstance(reader, list):
        candidates = [rnamed.get(b, b) if isinstance(b, str) else b
                      for b in reader if b != "null"]
        reader = next((b for b in candidates if _kind(b) == _kind(writer)), candidates[0])
    kind = _kind(writer)
    if kind == "record":
        out = {}
        for f in reader["fields"]:
            names = {f["name"], *f.get("aliases", [])}
            source = next((w for w in writer["fields"] if w["name"] in names), None)
            out[f["name"]] = f.get("default") if source is None else _expected(
                source["type"], f["type"], value[source["name"]], wnamed, rnamed)
        return out
    if kind == "array":
        return [_expected(writer["items"], reader["items"], v, wnamed, rnamed) for v in value]
    if kind == "map":
        return {k: _expected(writer["values"], reader["values"], v, wnamed, rnamed)
                for k, v in value.items()}
    return value


def _kind(schema: Any) -> str:
    if isinstance(schema, dict):
        kind = schema["type"]
        return _kind(kind) if isinstance(kind, dict | list) else str(kind)
    return "union" if isinstance(schema, list) else str(schema)


def _single_object(writer_json: Any, value: Any) -> bytes:
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    writer = parse_schema(writer_json)
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(writer), "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer, value)
    return b"\xc3\x01" + fp + body.getvalue()


@pytest.mark.parametrize(("name", "version", "path"), HISTORY_CASES)
def test_records_written_with_every_historical_schema_decode_field_by_field(
        name: str, version: int, path: Path) -> None:
    """Picks up every file in schemas/avro/history by itself: a record written with that
    schema (valid values for every logical type; optional fields both set and null)
    decodes through the codec with every field the writer wrote, and every field added
    since at the current schema's default."""
    writer_json, reader_json = _load(path), _current(name)
    wnamed, rnamed = _named_types(writer_json, {}), _named_types(reader_json, {})
    for variant in range(6):
        value = _Values(writer_json, variant).make(writer_json)
        decoded = AvroCodec().decode(_single_object(writer_json, value))
        assert decoded.schema_name == name
        want = _expected(writer_json, reader_json, value, wnamed, rnamed)
        assert set(decoded.value) == {f["name"] for f in reader_json["fields"]}
        for field in reader_json["fields"]:
            assert decoded.value[field["name"]] == want[field["name"]], (
                f"{name}.v{version} field {field['name']}: decoded "
                f"{decoded.value[field['name']]!r}, written/default {want[field['name']]!r}")


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
