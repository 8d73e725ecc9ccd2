"""Kafka producer construction and delivery that waits for the broker's acknowledgement."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

__all__ = ["DeliveryFailed", "ensure_topics", "make_producer", "produce_and_wait"]


class DeliveryFailed(RuntimeError):
    pass


def make_producer(bootstrap: str, **overrides: Any) -> Producer:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # no duplicates from the producer's own retries
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.timeout.ms": 30000,
    }
    config.update(overrides)
    return Producer(config)


def produce_and_wait(producer: Producer, records: list[dict[str, Any]],
                     timeout: float = 30.0) -> None:
    """Produce every record and block until each is acknowledged (or raise)."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    for record in records:
        while True:
            try:
                producer.produce(on_delivery=on_delivery, **record)
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as exc:
                raise DeliveryFailed(str(exc)) from exc
    remaining = producer.flush(timeout)
    if remaining:
        raise DeliveryFailed(f"{remaining} records not acknowledged within {timeout}s")
    if errors:
        raise DeliveryFailed(f"delivery failed: {errors[0]}")


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3,
                  compacted: tuple[str, ...] = ()) -> None:
    """Create missing topics (local runs and tests; production provisions them)."""
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(t, num_partitions=partitions, replication_factor=1,
                 config={"cleanup.policy": "compact"} if t in compacted else {})
        for t in topics if t not in existing
    ]
    if not wanted:
        return
    for future in admin.create_topics(wanted).values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
