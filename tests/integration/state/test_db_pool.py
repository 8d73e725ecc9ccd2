"""PostgreSQL pool: no ping on every checkout (issue 12), but a pooled connection that sat
idle is pinged, and one the server dropped meanwhile is replaced instead of failing."""

from __future__ import annotations

import pytest
from sqlalchemy import event, text

from state import db as db_module
from state.db import Database


def test_no_ping_per_checkout(fresh_postgres_url: str) -> None:
    db = Database(fresh_postgres_url)
    pool = db.engine.pool
    assert pool._pre_ping is False  # type: ignore[attr-defined]
    assert pool._recycle == db_module.POOL_RECYCLE_S  # type: ignore[attr-defined]
    assert event.contains(db.engine, "checkout", db_module._ping_if_idle)
    db.dispose()


def test_an_idle_connection_dropped_by_the_server_is_replaced(
        fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(fresh_postgres_url, pool_size=1)
    with db.transaction() as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = Database(fresh_postgres_url)
    with admin.transaction() as s:
        s.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    monkeypatch.setattr(db_module, "IDLE_PING_AFTER_S", 0.0)  # it has been idle "long"
    with db.transaction() as s:
        assert s.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    db.dispose()
