"""ConnectionStore on SQLite and PostgreSQL: one provider per account, tokens encrypted at
rest, and refresh-token rotation that two workers can never spend twice."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text

from providers.errors import ReconnectRequired, TransientProviderError
from providers.oauth import TokenSet
from state.connections import CompanyMismatch, CompanyTaken, ConnectionStore
from state.crypto import TokenCipher, generate_key
from state.db import Database
from state.models import IncomeAccountMapping, WizardProgress

KEY = generate_key()
NOW = dt.datetime.now(dt.UTC)


def tokens(n: int, expires_in: float = 3600) -> TokenSet:
    return TokenSet(f"access-token-{n}-AAAA", f"refresh-token-{n}-BBBB",
                    NOW + dt.timedelta(seconds=expires_in))


def store(url: str, key: str = KEY) -> ConnectionStore:
    return ConnectionStore(Database(url), TokenCipher(key))


class CountingRefresh:
    """A provider token endpoint: rotates on every call, single use, slow."""

    def __init__(self, delay: float = 0.0, start: int = 2) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self._next = start
        self._lock = threading.Lock()
        self.spent: set[str] = set()

    def __call__(self, refresh_token: str) -> TokenSet:
        with self._lock:
            self.calls.append(refresh_token)
            if refresh_token in self.spent:
                raise ReconnectRequired("invalid_grant: refresh token already used")
            self.spent.add(refresh_token)
            n = self._next
            self._next += 1
        time.sleep(self.delay)
        return tokens(n)


def test_connect_and_read_back(database_url: str) -> None:
    s = store(database_url)
    connected_at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    info = s.connect("a-1", "quickbooks", "9341", tokens(1), connected_at=connected_at).info
    assert (info.account_id, info.provider, info.tenant_id, info.status) == (
        "a-1", "quickbooks", "9341", "active")
    assert info.connected_at == connected_at
    got = s.get("a-1")
    assert got == info
    current = s.current("a-1")
    assert (current.access_token, current.refresh_token) == (
        "access-token-1-AAAA", "refresh-token-1-BBBB")
    assert abs((current.expires_at - tokens(1).expires_at).total_seconds()) < 1
    assert s.get("nobody") is None
    with pytest.raises(ReconnectRequired):
        s.current("nobody")


def test_one_accounting_system_per_account(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))
    with pytest.raises(ValueError, match="already connected to quickbooks"):
        s.connect("a-1", "xero", "tenant-x", tokens(2))
    s.set_status("a-1", "reconnect_required", "revoked")
    with pytest.raises(ValueError):
        s.connect("a-1", "xero", "tenant-x", tokens(2))
    s.set_status("a-1", "disconnected")
    connected = s.connect("a-1", "xero", "tenant-x", tokens(2))
    assert (connected.info.provider, connected.info.status) == ("xero", "active")
    assert connected.kind == "new_company"


def test_reconnect_to_the_same_provider_keeps_the_connection_time(database_url: str) -> None:
    s = store(database_url)
    first = s.connect("a-1", "quickbooks", "9341", tokens(1),
                      connected_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).info
    s.set_status("a-1", "reconnect_required", "revoked")
    reconnect = s.connect("a-1", "quickbooks", "9341", tokens(5))
    again = reconnect.info
    assert reconnect.kind == "reconnect"
    assert again.connected_at == first.connected_at
    assert again.status == "active" and again.status_reason is None
    assert s.current("a-1").refresh_token == "refresh-token-5-BBBB"


def test_tokens_are_encrypted_at_rest(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))
    db = Database(database_url)
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT access_token, refresh_token FROM connections "
                                "WHERE account_id = 'a-1'")).one()
    for column, secret in zip(row, ("access-token-1", "refresh-token-1"), strict=True):
        raw = bytes(column)
        assert secret.encode() not in raw
        assert b"-1-AAAA" not in raw and b"-1-BBBB" not in raw
        assert TokenCipher(KEY).decrypt(raw).startswith(secret)
    # another key cannot read them; a rotated key list (new first, old second) can
    with pytest.raises(ValueError, match="cannot be decrypted"):
        store(database_url, generate_key()).current("a-1")
    assert store(database_url, f"{generate_key()},{KEY}").current("a-1").access_token == \
        "access-token-1-AAAA"


def test_rotate_refreshes_once_and_persists_before_returning(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))
    refresh = CountingRefresh()
    fresh = s.rotate("a-1", "access-token-1-AAAA", refresh)
    assert fresh.access_token == "access-token-2-AAAA"
    assert refresh.calls == ["refresh-token-1-BBBB"]
    # A different process (its own engine) sees the rotated refresh token at once.
    other = store(database_url)
    assert other.current("a-1").refresh_token == "refresh-token-2-BBBB"
    assert other.refresh_token("a-1") == "refresh-token-2-BBBB"
    # A caller still holding the old access token gets the new tokens, without a refresh.
    assert other.rotate("a-1", "access-token-1-AAAA", refresh).access_token == \
        "access-token-2-AAAA"
    assert len(refresh.calls) == 1


def test_rotate_commits_the_new_refresh_token_before_returning(database_url: str) -> None:
    """While the provider rotates, the store still holds the old token; once rotate
    returns, the new one is committed (another engine, opened afresh, reads it)."""
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))
    seen_during_refresh: list[str] = []
    sqlite = Database(database_url).is_sqlite

    def refresh(token: str) -> TokenSet:
        # On SQLite every transaction takes the write lock (BEGIN IMMEDIATE), so another
        # connection cannot read while the rotation holds it; PostgreSQL's row lock
        # leaves plain reads free.
        if not sqlite:
            seen_during_refresh.append(store(database_url).refresh_token("a-1"))
        return tokens(2)

    s.rotate("a-1", "access-token-1-AAAA", refresh)
    if not sqlite:
        assert seen_during_refresh == ["refresh-token-1-BBBB"]
    assert store(database_url).current("a-1").refresh_token == "refresh-token-2-BBBB"


def test_rotate_without_rejection_only_near_expiry(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1, expires_in=3600))
    refresh = CountingRefresh()
    assert s.rotate("a-1", None, refresh).access_token == "access-token-1-AAAA"
    assert refresh.calls == []
    s.connect("a-2", "quickbooks", "9342", tokens(1, expires_in=30))
    assert s.rotate("a-2", None, refresh).access_token == "access-token-2-AAAA"
    assert refresh.calls == ["refresh-token-1-BBBB"]


def _race(database_url: str, refresh: Callable[[str], TokenSet], workers: int
          ) -> list[TokenSet | BaseException]:
    results: list[TokenSet | BaseException] = [RuntimeError("not run")] * workers
    barrier = threading.Barrier(workers)

    def worker(i: int) -> None:
        own = store(database_url)  # each worker: its own engine and pool, like a process
        barrier.wait()
        try:
            results[i] = own.rotate("a-1", "access-token-1-AAAA", refresh)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_two_workers_racing_with_the_same_rejected_token_refresh_once(
        database_url: str) -> None:
    store(database_url).connect("a-1", "quickbooks", "9341", tokens(1))
    refresh = CountingRefresh(delay=0.3)
    results = _race(database_url, refresh, workers=4)
    assert refresh.calls == ["refresh-token-1-BBBB"], "the refresh token was spent twice"
    assert all(isinstance(r, TokenSet) for r in results), results
    assert {r.access_token for r in results if isinstance(r, TokenSet)} == \
        {"access-token-2-AAAA"}
    assert store(database_url).current("a-1").refresh_token == "refresh-token-2-BBBB"


def test_reconnect_required_marks_the_connection(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))

    def refused(_token: str) -> TokenSet:
        raise ReconnectRequired("refresh refused (invalid_grant): the grant was revoked")

    with pytest.raises(ReconnectRequired):
        s.rotate("a-1", "access-token-1-AAAA", refused)
    info = s.get("a-1")
    assert info is not None and info.status == "reconnect_required"
    assert info.status_reason is not None and "invalid_grant" in info.status_reason
    with pytest.raises(ReconnectRequired):
        s.current("a-1")
    with pytest.raises(ReconnectRequired):
        s.rotate("a-1", "access-token-1-AAAA", CountingRefresh())


def test_a_transient_refresh_failure_leaves_the_connection_active(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))

    def down(_token: str) -> TokenSet:
        raise TransientProviderError("token endpoint unreachable")

    with pytest.raises(TransientProviderError):
        s.rotate("a-1", "access-token-1-AAAA", down)
    info = s.get("a-1")
    assert info is not None and info.status == "active"
    assert s.current("a-1").refresh_token == "refresh-token-1-BBBB"


def test_touch_sync_and_status(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))
    s.touch_sync("a-1")
    s.set_status("a-1", "disconnected", "user disconnected")
    info = s.get("a-1")
    assert info is not None and (info.status, info.status_reason) == (
        "disconnected", "user disconnected")
    s.set_status("nobody", "disconnected")  # no row: nothing happens


def test_another_company_while_connected_is_refused(database_url: str) -> None:
    """A consent for company B on an account connected to company A is never a silent
    reconnect: refused, and the stored connection (tokens included) is untouched."""
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1), tenant_name="Acme Plumbing")
    for status in ("active", "reconnect_required"):
        s.set_status("a-1", status)
        with pytest.raises(CompanyMismatch) as refused:
            s.connect("a-1", "quickbooks", "7777", tokens(2), tenant_name="Other Co")
        assert refused.value.current.tenant_id == "9341"
        assert refused.value.current.tenant_name == "Acme Plumbing"
        info = s.get("a-1")
        assert info is not None and info.tenant_id == "9341"
        assert s.refresh_token("a-1") == "refresh-token-1-BBBB"


def test_another_company_after_a_disconnect_starts_afresh(database_url: str) -> None:
    db = Database(database_url)
    s = ConnectionStore(db, TokenCipher(generate_key()))
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    s.connect("a-1", "quickbooks", "9341", tokens(1), connected_at=old)
    with db.transaction() as tx:
        tx.add(IncomeAccountMapping(account_id="a-1", item_id="i1", provider_account_id="79"))
        tx.add(WizardProgress(account_id="a-1", state='{"runs": 1}'))
    s.disconnect("a-1", "by the user")
    connected = s.connect("a-1", "quickbooks", "7777", tokens(2))
    assert connected.kind == "new_company"
    assert connected.info.connected_at > old  # no retroactive sync into the new company
    with db.transaction() as tx:
        assert tx.get(IncomeAccountMapping, ("a-1", "i1")) is None
        assert tx.get(WizardProgress, "a-1") is None
    db.dispose()


def test_disconnect_deletes_the_tokens(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "quickbooks", "9341", tokens(1))
    s.disconnect("a-1", "by the user")
    info = s.get("a-1")
    assert info is not None and info.status == "disconnected"
    with pytest.raises(ReconnectRequired):
        s.refresh_token("a-1")
    with pytest.raises(ReconnectRequired):
        s.current("a-1")


def test_one_company_belongs_to_one_account(database_url: str) -> None:
    s = store(database_url)
    s.connect("a-1", "xero", "org-1", tokens(1))
    with pytest.raises(CompanyTaken):
        s.connect("a-2", "xero", "org-1", tokens(2))
    assert s.get("a-2") is None
    # An operator's explicit allowance, and a disconnected owner, both let it through.
    s.connect("a-2", "xero", "org-1", tokens(2), shared_companies=frozenset({("xero", "org-1")}))
    s.disconnect("a-2", "done")
    s.disconnect("a-1", "done")
    assert s.connect("a-3", "xero", "org-1", tokens(3)).info.status == "active"


def test_two_accounts_racing_for_one_company_one_wins(database_url: str) -> None:
    """Concurrent connects of two accounts to one company: exactly one succeeds (the
    advisory transaction lock on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""
    s = store(database_url)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            s.connect(f"race-{n}", "freshbooks", "ACME1", tokens(n))
            outcomes.append("connected")
        except CompanyTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["connected"] + ["taken"] * 7


def test_key_rotation_reencrypts_every_token(database_url: str) -> None:
    old, new = generate_key(), generate_key()
    db = Database(database_url)
    ConnectionStore(db, TokenCipher(old)).connect("a-1", "quickbooks", "9341", tokens(1))
    rotated = ConnectionStore(db, TokenCipher(f"{new},{old}"))
    assert rotated.reencrypt() == 1
    # Only the new key is needed now.
    assert ConnectionStore(db, TokenCipher(new)).refresh_token("a-1") == "refresh-token-1-BBBB"
    db.dispose()


def test_last_sync_at_is_written_at_most_once_per_interval_per_account(
        database_url: str) -> None:
    """Issue 12: mark_synced updated the connection row on every event; now the first sync
    is recorded at once and later ones at most every SYNC_MARK_INTERVAL_S, per account;
    a write whose transaction rolled back does not count."""
    from sqlalchemy import event

    from state.connections import SYNC_MARK_INTERVAL_S, mark_synced
    from state.models import Connection

    s_ = store(database_url)
    db = s_._db
    suffix = str(time.monotonic_ns())
    a, b = f"acct-sync-a-{suffix}", f"acct-sync-b-{suffix}"
    s_.connect(a, "quickbooks", f"realm-a-{suffix}", tokens(1))
    s_.connect(b, "quickbooks", f"realm-b-{suffix}", tokens(1))
    clock = [5000.0]
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: statements.append(sql))

    def synced_at(account: str) -> dt.datetime | None:
        with db.transaction() as s:
            row = s.get(Connection, account)
            assert row is not None
            return row.last_sync_at

    def mark(account: str) -> int:
        statements.clear()
        with db.transaction() as s:
            mark_synced(s, account, clock=lambda: clock[0])
        return sum("connections" in sql for sql in statements)

    assert synced_at(a) is None
    assert mark(a) == 1  # the first sync is recorded at once
    first = synced_at(a)
    assert first is not None
    clock[0] += SYNC_MARK_INTERVAL_S / 2
    assert mark(a) == 0 and synced_at(a) == first  # within the interval: no statement
    assert mark(b) == 1 and synced_at(b) is not None  # per account
    clock[0] += SYNC_MARK_INTERVAL_S / 2
    assert mark(a) == 1
    second = synced_at(a)
    assert second is not None and second > first
    # A rolled-back write does not count: the next event writes again.
    clock[0] += SYNC_MARK_INTERVAL_S
    with pytest.raises(RuntimeError), db.transaction() as s:
        mark_synced(s, a, clock=lambda: clock[0])
        raise RuntimeError("the event's transaction failed")
    assert synced_at(a) == second
    clock[0] += 1
    assert mark(a) == 1 and synced_at(a) != second
