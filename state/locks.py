"""Per-tenant locks that hold across worker processes.

The dispatcher already runs one event per tenant at a time inside a process; this lock
extends that to the whole consumer group, because one tenant's customers and invoices
topics may be assigned to different processes and a re-drive may run anywhere.
PostgreSQL: session advisory locks. SQLite (one machine): fcntl locks on files beside
the database.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from state.db import Database

__all__ = ["TenantLocks"]

_SLOTS = 4096  # tenants hash onto this many lock slots


def _slot(account_id: str) -> int:
    return int.from_bytes(hashlib.sha256(account_id.encode()).digest()[:4], "big") % _SLOTS


class TenantLocks:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._local = [threading.Lock() for _ in range(_SLOTS)]
        self._dir: Path | None = None
        if db.is_sqlite:
            path = db.url.split("///", 1)[-1] if "///" in db.url else ""
            base = Path(path).parent if path and path != ":memory:" else Path("var")
            self._dir = base / ".tenant-locks"
            self._dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def hold(self, account_id: str) -> Iterator[None]:
        slot = _slot(account_id)
        # A process-local lock first, so threads of one process queue here rather than
        # on the OS lock (fcntl locks are per process, not per thread).
        with self._local[slot]:
            if self._dir is not None:
                with self._file_lock(slot):
                    yield
            else:
                with self._advisory_lock(slot):
                    yield

    @contextmanager
    def _file_lock(self, slot: int) -> Iterator[None]:
        assert self._dir is not None
        fd = os.open(self._dir / f"{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def _advisory_lock(self, slot: int) -> Iterator[None]:
        with self._db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": 0x5C0000 + slot})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": 0x5C0000 + slot})
                conn.commit()
