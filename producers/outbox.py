"""Publishes status and inbound-change events from the transactional outbox.

Outcomes and their status events commit together in the database; this publisher then
delivers them to Kafka and marks them published. A crash between the two republishes
(at least once); every status carries a unique `status_id` for readers that dedupe.
"""

from __future__ import annotations

import threading

from confluent_kafka import Producer

from producers.kafka import produce_and_wait
from service.config import Topics
from state import repository as repo
from state.db import Database

__all__ = ["OutboxPublisher"]


class OutboxPublisher:
    def __init__(self, db: Database, producer: Producer, topics: Topics,
                 batch: int = 500) -> None:
        self._db = db
        self._producer = producer
        self._topics = topics
        self._batch = batch
        self._lock = threading.Lock()

    def publish_pending(self) -> int:
        """Publish one batch of unpublished messages; returns how many."""
        with self._lock, self._db.transaction() as s:
            rows = repo.unpublished(s, self._batch, claim=True)
            if not rows:
                return 0
            produce_and_wait(self._producer, [
                {"topic": self._topics.status if r.topic_kind == "status"
                 else self._topics.inbound, "key": r.key.encode(), "value": r.value}
                for r in rows
            ])
            repo.mark_published(s, [r.id for r in rows])
            return len(rows)

    def publish_all(self) -> int:
        total = 0
        while (n := self.publish_pending()) > 0:
            total += n
        return total
