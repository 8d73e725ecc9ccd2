"""The outbox publisher on SQLite and PostgreSQL (a fake Kafka producer): no transaction is
open while it waits for acknowledgements, concurrent publishers never send a row twice,
and a crash between produce and mark republishes (at least once)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event, select

from producers.outbox import OutboxPublisher
from service.config import Topics
from state import repository as repo
from state.db import Database
from state.models import OutboxMessage

TOPICS = Topics("test.")


class FakeProducer:
    """produce() queues, flush() acknowledges everything (after `on_flush`)."""

    def __init__(self, on_flush: Callable[[], None] = lambda: None) -> None:
        self.sent: list[bytes] = []
        self._pending: list[tuple[Any, bytes]] = []
        self._on_flush = on_flush

    def produce(self, *, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        assert topic == TOPICS.status
        self._pending.append((on_delivery, value))

    def flush(self, timeout: float = -1) -> int:
        self._on_flush()
        for on_delivery, value in self._pending:
            self.sent.append(value)
            on_delivery(None, None)
        self._pending.clear()
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


class OpenTransactions:
    """Database transactions begun and not yet ended on an engine, from its events."""

    def __init__(self, db: Database) -> None:
        self.open = 0
        event.listen(db.engine, "begin", self._begin)
        event.listen(db.engine, "commit", self._end)
        event.listen(db.engine, "rollback", self._end)

    def _begin(self, conn: Any) -> None:
        self.open += self._counts(conn)

    def _end(self, conn: Any) -> None:
        self.open = max(0, self.open - self._counts(conn))

    @staticmethod
    def _counts(conn: Any) -> int:
        # An autocommit connection (the publisher lock's) opens no database transaction.
        return int(conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT")


@pytest.fixture
def db(database_url: str) -> Database:
    return Database(database_url)


def _fill(db: Database, n: int) -> list[bytes]:
    values = [f"status-{i:03d}".encode() for i in range(n)]
    with db.transaction() as s:
        for value in values:
            repo.add_outbox(s, account_id="a", topic_kind="status", key="a", value=value)
    return values


def _unpublished(db: Database) -> int:
    with db.transaction() as s:
        return len(list(s.execute(select(OutboxMessage.id)
                                  .where(OutboxMessage.published_at.is_(None))).scalars()))


def test_no_transaction_is_open_while_kafka_acknowledges(db: Database) -> None:
    values = _fill(db, 5)
    transactions = OpenTransactions(db)
    seen: list[int] = []
    producer = FakeProducer(on_flush=lambda: seen.append(transactions.open))
    assert OutboxPublisher(db, producer, TOPICS).publish_all() == 5  # type: ignore[arg-type]
    assert seen == [0]  # while waiting for the acknowledgements
    assert producer.sent == values and _unpublished(db) == 0


def test_two_publishers_never_send_the_same_rows(database_url: str) -> None:
    """As two worker processes would: two Database objects, two publishers, slow acks."""
    first, second = Database(database_url), Database(database_url)
    values = _fill(first, 40)
    producers = [FakeProducer(on_flush=lambda: time.sleep(0.2)) for _ in range(2)]
    publishers = [OutboxPublisher(d, p, TOPICS, batch=15)  # type: ignore[arg-type]
                  for d, p in zip((first, second), producers, strict=True)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(publisher: OutboxPublisher) -> None:
        try:
            start.wait()
            publisher.publish_all()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(p,)) for p in publishers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    sent = producers[0].sent + producers[1].sent
    assert sorted(sent) == values  # every row once: none twice, none lost
    assert _unpublished(first) == 0
    first.dispose()
    second.dispose()


def test_a_crash_between_produce_and_mark_publishes_again(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    values = _fill(db, 3)
    producer = FakeProducer()
    publisher = OutboxPublisher(db, producer, TOPICS)  # type: ignore[arg-type]
    mark = repo.mark_published

    def crash(*_: Any) -> None:
        raise RuntimeError("the process died after Kafka acknowledged")

    monkeypatch.setattr(repo, "mark_published", crash)
    with pytest.raises(RuntimeError):
        publisher.publish_pending()
    assert producer.sent == values and _unpublished(db) == 3
    monkeypatch.setattr(repo, "mark_published", mark)
    assert publisher.publish_all() == 3  # at least once: sent again, then marked
    assert producer.sent == values + values and _unpublished(db) == 0
    assert publisher.publish_all() == 0


def test_a_delivery_failure_leaves_the_rows_for_the_next_batch(db: Database) -> None:
    values = _fill(db, 2)

    class Failing(FakeProducer):
        def flush(self, timeout: float = -1) -> int:
            return len(self._pending)  # never acknowledged

    with pytest.raises(Exception, match="not acknowledged"):
        OutboxPublisher(db, Failing(), TOPICS).publish_pending()  # type: ignore[arg-type]
    assert _unpublished(db) == 2
    producer = FakeProducer()
    assert OutboxPublisher(db, producer, TOPICS).publish_all() == 2  # type: ignore[arg-type]
    assert producer.sent == values
