"""`register-schemas` against a Confluent-compatible registry: every contract version
registered under `<topic>-value` with BACKWARD set; an incompatible change refused; a
producer's Confluent-framed event decodes through the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from control.cli import main
from producers.upstream import ChangeEventBuilder, encode_event
from sandbox.schema_registry import create_schema_registry
from sandbox.serve import serve_in_thread
from schemas.codec import SCHEMA_DIR, AvroCodec
from schemas.registry import register_schemas
from service.config import Topics


@pytest.fixture
def registry() -> Iterator[str]:
    with serve_in_thread(create_schema_registry()) as url:
        yield url


def test_register_schemas_sets_backward_and_keeps_history(
        registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register-schemas", "--registry", registry, "--topic-prefix", "bc."]) == 0
    out = capsys.readouterr().out
    assert out.count("BACKWARD") == 6 and "bc.invoices-value" in out
    subjects = httpx.get(f"{registry}/subjects").json()
    assert sorted(subjects) == sorted(f"bc.{t}-value" for t in (
        "customers", "items", "invoices", "payments", "sync-status", "accounting-changes"))
    for subject in subjects:
        assert httpx.get(f"{registry}/config/{subject}").json() == \
            {"compatibilityLevel": "BACKWARD"}
    # InvoiceChangeEvent and PaymentChangeEvent have two versions each (v1, v2 = current).
    assert httpx.get(f"{registry}/subjects/bc.invoices-value/versions").json() == [1, 2]
    again = register_schemas(registry, Topics("bc."))  # idempotent
    assert [s.versions for s in again if s.subject == "bc.payments-value"] == [2]

    client = SchemaRegistryClient({"url": registry})
    breaking = json.loads((SCHEMA_DIR / "CustomerChangeEvent.avsc").read_text())
    breaking["fields"].append({"name": "loyalty_tier", "type": "string"})  # no default
    with pytest.raises(Exception, match="incompatible"):
        client.register_schema("bc.customers-value", Schema(json.dumps(breaking), "AVRO"))
    breaking["fields"][-1]["default"] = "none"  # with a default it is a compatible change
    assert client.register_schema("bc.customers-value", Schema(json.dumps(breaking), "AVRO"))


def test_producer_events_in_the_confluent_format_decode(registry: str) -> None:
    register_schemas(registry, Topics("bc."))
    event = ChangeEventBuilder("acct-1").item("item-1", "Drain cleaning", unit_price="95.00")
    _topic, key, value = encode_event(event, AvroCodec(registry), topic_prefix="bc.")
    assert key == b"acct-1" and value[0] == 0  # byte 0, then the registry's schema id
    schema_id = int.from_bytes(value[1:5], "big")
    registered = httpx.get(f"{registry}/subjects/bc.items-value/versions/latest").json()
    assert registered["id"] == schema_id
    assert AvroCodec(registry).decode(value).value["item"]["name"] == "Drain cleaning"


def test_cli_names_the_missing_registry(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEMA_REGISTRY_URL", raising=False)
    assert main(["register-schemas"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: say which registry: `blueclerk-sync register-schemas --registry URL`")
