"""Dead-letter producer: the original bytes plus Kafka Connect's error context headers."""

from __future__ import annotations

import threading
import traceback

from confluent_kafka import Producer

from consumers.engine import Origin
from producers.kafka import produce_and_wait
from schemas.error_codes import ErrorCode
from schemas.redaction import scrub

__all__ = ["KafkaDeadLetterSink"]


class KafkaDeadLetterSink:
    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._lock = threading.Lock()

    def dead_letter(self, payload: bytes | None, key: str | None, origin: Origin | None,
                    error: BaseException, code: ErrorCode) -> None:
        headers = [
            ("__connect.errors.topic", (origin.topic if origin else "redrive").encode()),
            ("__connect.errors.partition", str(origin.partition if origin else -1).encode()),
            ("__connect.errors.offset", str(origin.offset if origin else -1).encode()),
            ("__connect.errors.exception.class.name", type(error).__qualname__.encode()),
            ("__connect.errors.exception.message", scrub(str(error))[:2000].encode()),
            ("__connect.errors.exception.stacktrace",
             scrub("".join(traceback.format_exception(error)))[-4000:].encode()),
            ("blueclerk.error_code", code.value.encode()),
        ]
        # Headers require the synchronous Producer (AIOProducer rejects them); the record
        # is acknowledged before the dead_lettered status is recorded.
        with self._lock:
            produce_and_wait(self._producer, [{
                "topic": self._topic, "key": key.encode() if key else None,
                "value": payload, "headers": headers,
            }])
