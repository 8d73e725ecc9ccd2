"""Publishes status and inbound-change events from the transactional outbox.

Outcomes and their status events commit together in the database; this publisher then
delivers them to Kafka and marks them published. A crash between the two republishes
(at least once); every status carries a unique `status_id` for readers that dedupe.

No database transaction is open while Kafka acknowledges (issue 12: holding one kept
SQLite's write lock for the ~100 ms of a flush, stalling every worker thread). One batch:

1. take the publisher lock (`Database.exclusive`: a PostgreSQL session advisory lock on
   an autocommit connection, or a file lock beside the SQLite database; no transaction),
   so publishers in several threads or processes never send the same rows concurrently;
2. read the oldest unpublished rows in a short transaction and commit;
3. produce them and wait for the acknowledgements (no transaction open);
4. mark them published in a second short transaction; release the lock.

A crash or an error after 3 leaves them unpublished: the next batch sends them again.
"""

from __future__ import annotations

import threading

from confluent_kafka import Producer

from producers.kafka import produce_and_wait
from service.config import Topics
from state import repository as repo
from state.db import Database

__all__ = ["OutboxPublisher"]

PUBLISHER_LOCK = "blueclerk.outbox-publisher"


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
        with self._lock, self._db.exclusive(PUBLISHER_LOCK):
            return self._publish_batch()

    def publish_all(self) -> int:
        """Publish every message unpublished when called (one lock, batch after batch)."""
        total = 0
        with self._lock, self._db.exclusive(PUBLISHER_LOCK):
            while (n := self._publish_batch()) > 0:
                total += n
                if n < self._batch:  # that was the last of them: no need to ask again
                    break
        return total

    def _publish_batch(self) -> int:
        with self._db.transaction() as s:
            records = [(r.id, {"topic": self._topics.status if r.topic_kind == "status"
                               else self._topics.inbound,
                               "key": r.key.encode(), "value": bytes(r.value)})
                       for r in repo.unpublished(s, self._batch)]
        if not records:
            return 0
        produce_and_wait(self._producer, [record for _, record in records])
        with self._db.transaction() as s:
            repo.mark_published(s, [row_id for row_id, _ in records])
        return len(records)
