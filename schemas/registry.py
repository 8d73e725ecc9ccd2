"""Registering the Avro contracts with a Confluent Schema Registry
(`blueclerk-sync register-schemas --registry URL`).

Subjects follow the serializer's default TopicNameStrategy, `<topic>-value`, so what a
producer's `AvroSerializer` looks up is what was registered here. Each subject gets the
compatibility rule first (BACKWARD: a new schema must read everything written with the
one before it), then every version of the contract in order, the kept history
(`schemas/avro/history/<Name>.v<N>.avsc`) and the current file, so the registry itself
checks each step of the evolution. Registering again is a no-op (same schema, same id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from schemas.codec import SCHEMA_DIR
from service.config import Topics

__all__ = ["RegisteredSubject", "register_schemas", "subjects_for"]

_VERSIONED = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class RegisteredSubject:
    subject: str
    schema: str  # the contract's name, e.g. InvoiceChangeEvent
    schema_id: int  # the registry's id of the current version
    versions: int  # how many versions the subject holds
    compatibility: str


def subjects_for(topics: Topics) -> dict[str, str]:
    """Contract name -> subject (`<topic>-value`)."""
    topic = {"CustomerChangeEvent": topics.entity("customer"),
             "ItemChangeEvent": topics.entity("item"),
             "InvoiceChangeEvent": topics.entity("invoice"),
             "PaymentChangeEvent": topics.entity("payment"),
             "SyncStatusEvent": topics.status,
             "AccountingChangeEvent": topics.inbound}
    return {name: f"{t}-value" for name, t in topic.items()}


def _versions(name: str) -> list[Path]:
    history = []
    for path in (SCHEMA_DIR / "history").glob(f"{name}.v*.avsc"):
        match = _VERSIONED.match(path.name)
        if match and match["name"] == name:
            history.append((int(match["version"]), path))
    return [p for _, p in sorted(history)] + [SCHEMA_DIR / f"{name}.avsc"]


def register_schemas(registry_url: str, topics: Topics | None = None,
                     compatibility: str = "BACKWARD") -> list[RegisteredSubject]:
    """Set `compatibility` on every subject and register every version of its contract.
    Raises the registry client's error (naming the subject) when one is refused."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": registry_url})
    out = []
    for name, subject in subjects_for(topics or Topics()).items():
        client.set_compatibility(subject_name=subject, level=compatibility)
        schema_id = 0
        for path in _versions(name):
            try:
                schema_id = client.register_schema(subject, Schema(path.read_text(), "AVRO"))
            except Exception as exc:
                raise RuntimeError(f"{subject}: the registry refused {path.name}: {exc}") \
                    from exc
        versions = len(client.get_versions(subject))
        out.append(RegisteredSubject(subject, name, schema_id, versions, compatibility))
    return out
