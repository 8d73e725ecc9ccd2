"""Avro encoding of the event contracts, in both wire formats the service accepts.

- Avro single-object encoding (Avro specification): 0xC3 0x01, the 8-byte
  little-endian CRC-64-AVRO fingerprint of the writer schema, then the body.
  Writer schemas are resolved against the contracts shipped in `schemas/avro/`
  (current and historical versions), so older producers stay readable.
- Confluent wire format: byte 0, a 4-byte big-endian schema id, then the body,
  used when a Schema Registry is configured; encoding goes through
  confluent-kafka's serializer (fastavro underneath), decoding fetches the writer
  schema by id.

The decoder accepts both, whatever the encoder is configured to write.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

__all__ = [
    "SCHEMA_DIR",
    "AvroCodec",
    "DecodeError",
    "Decoded",
    "load_schema",
    "schema_names",
]

SCHEMA_DIR = Path(__file__).with_name("avro")
_SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_CONFLUENT_MAGIC = 0


class DecodeError(ValueError):
    """A record that cannot be decoded; `reason` is a stable machine-readable word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Decoded:
    schema_name: str
    value: dict[str, Any]


def schema_names() -> list[str]:
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


@cache
def load_schema(name: str) -> Any:
    return parse_schema(json.loads((SCHEMA_DIR / f"{name}.avsc").read_text()))


def _fingerprint(parsed: Any) -> bytes:
    # fastavro's CRC-64-AVRO digest is already in the spec's little-endian byte order.
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


@cache
def _current_fingerprint(name: str) -> bytes:
    return _fingerprint(load_schema(name))


@cache
def _writers_by_fingerprint() -> dict[bytes, tuple[str, Any]]:
    """Every known writer schema (current and historical) by its fingerprint."""
    known: dict[bytes, tuple[str, Any]] = {}
    for path in [*SCHEMA_DIR.glob("history/*.avsc"), *SCHEMA_DIR.glob("*.avsc")]:
        name = path.name.split(".")[0]
        # A current schema is load_schema's own object: _read knows it by identity.
        parsed = load_schema(name) if path.parent == SCHEMA_DIR else \
            parse_schema(json.loads(path.read_text()))
        known[_fingerprint(parsed)] = (name, parsed)
    return known


@cache
def _reader_schema(name: str) -> Any | None:
    """The current schema a record of that name is resolved into; None for a name no
    longer current (decoded as written). The schema files ship with the code."""
    return load_schema(name) if (SCHEMA_DIR / f"{name}.avsc").exists() else None


def _short_name(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


@dataclass
class AvroCodec:
    """Encodes with one wire format and decodes both."""

    schema_registry_url: str | None = None
    _serializers: dict[str, Any] = field(default_factory=dict, repr=False)
    _registry_schemas: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._registry: Any = None
        if self.schema_registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._registry = SchemaRegistryClient({"url": self.schema_registry_url})

    def encode(self, schema_name: str, value: dict[str, Any], topic: str = "") -> bytes:
        schema = load_schema(schema_name)
        if self._registry is not None:
            return self._encode_confluent(schema_name, value, topic)
        body = io.BytesIO()
        body.write(_SINGLE_OBJECT_MAGIC)
        body.write(_current_fingerprint(schema_name))
        fastavro.schemaless_writer(body, schema, value)
        return body.getvalue()

    def _encode_confluent(self, schema_name: str, value: dict[str, Any], topic: str) -> bytes:
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        serializer = self._serializers.get(schema_name)
        if serializer is None:
            text = (SCHEMA_DIR / f"{schema_name}.avsc").read_text()
            serializer = AvroSerializer(self._registry, text)
            self._serializers[schema_name] = serializer
        return cast(bytes, serializer(value, SerializationContext(topic, MessageField.VALUE)))

    def decode(self, data: bytes | None, expected: str | None = None) -> Decoded:
        """Decode either wire format; with `expected`, resolve into that reader schema."""
        if not data:
            raise DecodeError("empty", "record has no value")
        if data[:2] == _SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError("truncated", "single-object header is truncated")
            writer = _writers_by_fingerprint().get(data[2:10])
            if writer is None:
                raise DecodeError(
                    "unknown_schema",
                    f"no known schema has fingerprint {data[2:10].hex()}",
                )
            return self._read(writer, data[10:], expected)
        if data[0] == _CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError("truncated", "Confluent header is truncated")
            (schema_id,) = struct.unpack(">I", data[1:5])
            return self._read(self._registry_writer(schema_id), data[5:], expected)
        raise DecodeError("bad_magic", f"unrecognised wire format (first byte 0x{data[0]:02x})")

    def _registry_writer(self, schema_id: int) -> tuple[str, Any]:
        cached = self._registry_schemas.get(schema_id)
        if cached is not None:
            return cached
        if self._registry is None:
            raise DecodeError(
                "unknown_schema",
                f"Confluent-framed record with schema id {schema_id} but no Schema Registry "
                "is configured (set SCHEMA_REGISTRY_URL)",
            )
        try:
            registered = self._registry.get_schema(schema_id)
        except Exception as exc:
            raise DecodeError("unknown_schema", f"schema id {schema_id}: {exc}") from exc
        parsed: Any = parse_schema(json.loads(registered.schema_str))
        writer = (_short_name(str(parsed["name"])), parsed)
        self._registry_schemas[schema_id] = writer
        return writer

    @staticmethod
    def _read(writer: tuple[str, Any], body: bytes, expected: str | None) -> Decoded:
        name, writer_schema = writer
        if expected is not None and name != expected:
            raise DecodeError("wrong_schema", f"expected {expected}, got {name}")
        reader_schema = _reader_schema(name)
        if reader_schema is writer_schema:
            reader_schema = None  # written with the current schema: nothing to resolve
        stream = io.BytesIO(body)
        try:
            value = fastavro.schemaless_reader(stream, writer_schema, reader_schema)
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise DecodeError("corrupt_body", f"{type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(body):
            raise DecodeError("trailing_bytes", f"{len(body) - stream.tell()} bytes after body")
        if not isinstance(value, dict):
            raise DecodeError("corrupt_body", "body is not a record")
        return Decoded(name, value)
