"""Engine, sessions and migrations. SQLite by default; PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "dialect_of", "migrate"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see below
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; busy_timeout makes concurrent writers
    # (worker threads, a second process) wait for the lock instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_immediate(conn: Any) -> None:
    # On the driver's connection, not through conn.exec_driver_sql: SQLAlchemy's statement
    # machinery (events, result setup) cost more than SQLite's BEGIN itself, once per
    # transaction (issue 12). before_cursor_execute listeners therefore no longer see it.
    conn.connection.driver_connection.execute("BEGIN IMMEDIATE")


# PostgreSQL: a pooled connection is pinged before use only if it sat idle in the pool
# for longer than this (a server restart, an idle timeout of a proxy); one in steady use
# is not (pool_pre_ping cost a round trip on every checkout, several per event). A
# connection that breaks in use anyway raises, SQLAlchemy invalidates the pool, and the
# worker retries the event (consumers/worker.py treats OperationalError as transient).
IDLE_PING_AFTER_S = 30.0
POOL_RECYCLE_S = 1800


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    idle_since = record.info.get("checked_in_at")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()  # leave no transaction open after the ping
    except Exception as error:
        # The pool discards this connection and checks out (or opens) another.
        raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error


def _normalise(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///") and ":memory:" not in url:
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


class Database:
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = _normalise(url)
        # Bound parameters (tokens, payloads) never appear in SQLAlchemy's errors or logs.
        kwargs: dict[str, Any] = {"future": True, "hide_parameters": True}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size,
                          pool_recycle=POOL_RECYCLE_S)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if not self.url.startswith("sqlite"):
            event.listen(self.engine, "checkin", _on_checkin)
            event.listen(self.engine, "checkout", _ping_if_idle)
        if self.url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # Take SQLite's write lock when a transaction begins (SQLAlchemy's documented
            # recipe): a deferred read-then-write upgrade between two writers fails at
            # once with "database is locked" instead of waiting on busy_timeout.
            event.listen(self.engine, "begin", _begin_immediate)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any exception."""
        with self._sessions.begin() as session:
            yield session

    def xact_lock(self, s: Session, name: str) -> None:
        """A lock on `name` held until the caller's transaction ends (PostgreSQL advisory
        transaction lock). SQLite needs none: BEGIN IMMEDIATE serialises writers."""
        if not self.is_sqlite:
            s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:n, 0))"),
                      {"n": name})

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A lock on `name` across threads and processes, held without a transaction
        open (the outbox publisher holds it while it waits for Kafka). PostgreSQL: a
        session advisory lock on a connection of its own; SQLite: a file lock beside the
        database (an in-memory database lives in one process: nothing to lock)."""
        if not self.is_sqlite:
            # Autocommit: the lock is a session's, so no transaction (nor BEGIN/COMMIT).
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                key = {"n": name}
                conn.execute(text("SELECT pg_advisory_lock(hashtextextended(:n, 0))"), key)
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(hashtextextended(:n, 0))"),
                                 key)
            return
        path = self.url.split("///", 1)[-1] if "///" in self.url else ""
        if not path or path == ":memory:":
            yield
            return
        fd = os.open(Path(path).parent / f".{Path(path).name}.{name}.lock",
                     os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def session(self) -> Session:
        return self._sessions()

    def dispose(self) -> None:
        self.engine.dispose()


def dialect_of(s: Session) -> str:
    """The session's database dialect: "sqlite" or "postgresql"."""
    return s.get_bind().dialect.name


def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision`."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", _normalise(url).replace("%", "%%"))
    command.upgrade(config, revision)
