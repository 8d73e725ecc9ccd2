"""Per-tenant locks that hold across worker processes.

The dispatcher already runs one event per tenant at a time inside a process; this lock
extends that to the whole consumer group, because one tenant's customers and invoices
topics may be assigned to different processes and a re-drive may run anywhere. The lock
is held across the provider call, so two tenants must never share one: a throttled or
slow tenant would hold up the other.

- In a process: one ``threading.Lock`` per account id (exact, created on demand and
  dropped when nobody holds or waits for it), taken first, so threads of one process
  queue there rather than on the OS lock (fcntl locks are per process, not per thread).
- PostgreSQL: a session advisory lock, on a pooled connection in autocommit held from
  before the event's first transaction to after its last, on a 64-bit key derived from
  the account id (SHA-256, first 8 bytes, namespaced). Two tenants wait for each other
  only if their keys collide: with n tenants the chance that any two of them do is about
  n² / 2⁶⁵ (10⁶ tenants: 3·10⁻⁸), and even then it costs only latency, never order or
  correctness (the lock is still exclusive for each tenant).
- SQLite (one machine): an fcntl lock on a file per tenant beside the database, named by
  the full SHA-256 of the account id: no collisions.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from state.db import Database

__all__ = ["TenantLocks", "advisory_key", "lock_file_name"]

_NAMESPACE = b"blueclerk.tenant-lock:"


def _digest(account_id: str) -> bytes:
    return hashlib.sha256(_NAMESPACE + account_id.encode()).digest()


def advisory_key(account_id: str) -> int:
    """The PostgreSQL advisory-lock key of a tenant: a signed 64-bit integer."""
    return int.from_bytes(_digest(account_id)[:8], "big", signed=True)


def lock_file_name(account_id: str) -> str:
    """The lock file of a tenant (SQLite): the whole digest, so distinct tenants never
    share a file."""
    return f"{_digest(account_id).hex()}.lock"


@dataclass(slots=True)
class _Local:
    lock: threading.Lock
    users: int = 0  # threads holding or waiting for it


class TenantLocks:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._guard = threading.Lock()
        self._local: dict[str, _Local] = {}
        self._dir: Path | None = None
        # The same pool, its connections in autocommit while they hold a lock.
        self._autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
        if db.is_sqlite:
            path = db.url.split("///", 1)[-1] if "///" in db.url else ""
            base = Path(path).parent if path and path != ":memory:" else Path("var")
            self._dir = base / ".tenant-locks"
            self._dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def hold(self, account_id: str) -> Iterator[None]:
        with self._local_lock(account_id):
            if self._dir is not None:
                with self._file_lock(account_id):
                    yield
            else:
                with self._advisory_lock(account_id):
                    yield

    @contextmanager
    def _local_lock(self, account_id: str) -> Iterator[None]:
        with self._guard:
            entry = self._local.get(account_id)
            if entry is None:
                entry = self._local[account_id] = _Local(threading.Lock())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._local[account_id]

    @contextmanager
    def _file_lock(self, account_id: str) -> Iterator[None]:
        assert self._dir is not None
        fd = os.open(self._dir / lock_file_name(account_id), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def _advisory_lock(self, account_id: str) -> Iterator[None]:
        key = advisory_key(account_id)
        # A session lock on a connection of its own, held across the provider call: a
        # transaction lock (pg_advisory_xact_lock) would end with the engine's first
        # transaction, before the call. Autocommit: the lock needs no transaction, so
        # taking and releasing it are one round trip each, with no BEGIN or COMMIT.
        with self._autocommit.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
