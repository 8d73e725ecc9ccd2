"""Tenant locks: exclusive per tenant across lock owners (processes), never shared between
two tenants, on both databases. The tenants used here collide on the 4,096 lock slots the
service used before (sha256 % 4096), so a return to slots fails these tests."""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections.abc import Iterator

import pytest

from state.db import Database
from state.locks import TenantLocks, advisory_key, lock_file_name


def _old_slot(account_id: str) -> int:
    return int.from_bytes(hashlib.sha256(account_id.encode()).digest()[:4], "big") % 4096


def _colliding_tenants() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for n in itertools.count():
        account = f"acct-{n}"
        slot = _old_slot(account)
        if slot in seen:
            return seen[slot], account
        seen[slot] = account
    raise AssertionError("unreachable")


A, B = _colliding_tenants()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _hold_in_thread(locks: TenantLocks, account: str, acquired: threading.Event,
                    release: threading.Event) -> threading.Thread:
    def run() -> None:
        with locks.hold(account):
            acquired.set()
            release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_tenants_here_shared_a_slot_before() -> None:
    assert A != B and _old_slot(A) == _old_slot(B)
    assert advisory_key(A) != advisory_key(B)
    assert lock_file_name(A) != lock_file_name(B)


def test_two_tenants_never_wait_for_each_other(db: Database) -> None:
    """A holds its lock (as across a slow provider call); B, on another owner (a second
    TenantLocks: its own connection or file descriptor, as another process has), and on
    the same owner, gets its lock while A still holds."""
    holder, other = TenantLocks(db), TenantLocks(db)
    a_held, a_release = threading.Event(), threading.Event()
    thread_a = _hold_in_thread(holder, A, a_held, a_release)
    try:
        assert a_held.wait(10)
        for owner in (other, holder):
            b_held, b_release = threading.Event(), threading.Event()
            b_release.set()
            thread_b = _hold_in_thread(owner, B, b_held, b_release)
            assert b_held.wait(10), f"tenant {B} waited for tenant {A}"
            thread_b.join(10)
    finally:
        a_release.set()
        thread_a.join(10)


def test_one_tenant_is_exclusive_across_owners(db: Database) -> None:
    holder, other = TenantLocks(db), TenantLocks(db)
    first, release_first = threading.Event(), threading.Event()
    thread_1 = _hold_in_thread(holder, A, first, release_first)
    assert first.wait(10)
    second, release_second = threading.Event(), threading.Event()
    release_second.set()
    thread_2 = _hold_in_thread(other, A, second, release_second)
    try:
        assert not second.wait(1.0), "two owners held one tenant's lock at once"
    finally:
        release_first.set()
    assert second.wait(10), "the lock was not handed over after release"
    thread_1.join(10)
    thread_2.join(10)
