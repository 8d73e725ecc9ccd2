"""repository.first_look on SQLite and PostgreSQL: the engine's first read of an event
(connection, processed status, parked probe, settings, link) in one statement gives
what the separate reads gave."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete

from state import repository as repo
from state.connections import ConnectionInfo, connection_info
from state.db import Database
from state.models import Connection, ParkedEvent, SyncSettings

T = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(database_url: str) -> Database:
    return Database(database_url)


def connect(db: Database, account: str, tenant: str, *, settings: bool = True) -> None:
    with db.transaction() as s:
        s.add(Connection(account_id=account, provider="quickbooks", tenant_id=tenant,
                         tenant_name="Books", status="active", connected_at=T,
                         access_expires_at=T))
        if settings:
            s.add(SyncSettings(account_id=account, sync_customers=True, sync_items=False,
                               sync_invoices=True, sync_payments=True, auto_sync=False))


def look(db: Database, account: str, event_id: str = "e1",
         record: tuple[str, str] = ("customer", "c1")) -> repo.FirstLook:
    with db.transaction() as s:
        return repo.first_look(s, account, event_id, *record)


def test_a_connected_account_with_nothing_yet(db: Database) -> None:
    connect(db, "a", "realm-1")
    got = look(db, "a")
    with db.transaction() as s:
        assert got.info == connection_info(s, "a")
    assert isinstance(got.info, ConnectionInfo)
    assert (got.info.provider, got.info.tenant_id, got.info.status) == (
        "quickbooks", "realm-1", "active")
    assert got.info.connected_at == T and got.info.tenant_name == "Books"
    assert (got.prior, got.any_parked, got.link) == (None, False, None)
    assert got.settings == repo.Switches(sync_items=False, auto_sync=False)


def test_status_parked_probe_and_link_are_the_events_and_the_records(db: Database) -> None:
    connect(db, "a", "realm-1")
    connect(db, "b", "realm-2")
    company = look(db, "a").info
    assert company is not None
    with db.transaction() as s:
        repo.mark_processed(s, "e1", "a", "synced", new=True)
        repo.mark_processed(s, "e1", "b", "failed", new=True)  # another tenant's
        repo.save_link(s, company, "customer", "c1", "58", "3", 7, "h",
                       written=('{"a": 1}', "w"))
        repo.save_link(s, company, "customer", "c2", "59", "0", 1, "h2")
        repo.park(s, event_id="p1", account_id="a", entity_type="invoice", entity_id="i1",
                  reason="missing_dependency", waits_for="customer:c9", payload=b"x")
    got = look(db, "a")
    assert (got.prior, got.any_parked) == ("synced", True)
    assert look(db, "a", "e2").prior is None
    assert look(db, "b").prior == "failed" and look(db, "b").any_parked is False
    link = got.link
    assert link is not None
    assert (link.provider_id, link.provider_version, link.last_applied_version,
            link.payload_hash, link.written_state, link.written_hash) == (
        "58", "3", 7, "h", '{"a": 1}', "w")
    other = look(db, "a", record=("customer", "c2")).link
    assert other is not None and other.provider_id == "59"
    assert look(db, "a", record=("item", "c1")).link is None
    assert look(db, "b").link is None  # another account's record of the same id


def test_a_link_into_another_company_is_none_and_settings_may_be_absent(
        db: Database) -> None:
    connect(db, "a", "realm-2", settings=False)
    with db.transaction() as s:
        repo.save_link(s, repo_company("a", "realm-1"), "customer", "c1", "58", "3", 7, "h")
    got = look(db, "a")
    assert got.link is None  # made in realm-1; the account is now connected to realm-2
    assert got.settings is None


def test_an_account_without_connection_still_reads_status_and_parked(db: Database) -> None:
    with db.transaction() as s:
        repo.mark_processed(s, "e1", "z", "skipped", new=True)
        repo.park(s, event_id="p1", account_id="z", entity_type="customer", entity_id="c1",
                  reason="reconnect_required", waits_for="connection", payload=b"x")
    got = look(db, "z")
    assert (got.info, got.prior, got.any_parked, got.settings, got.link) == (
        None, "skipped", True, None, None)
    with db.transaction() as s:
        s.execute(delete(ParkedEvent))
    assert look(db, "z").any_parked is False


def repo_company(account: str, tenant: str) -> ConnectionInfo:
    return ConnectionInfo(account, "quickbooks", tenant, "active", T)
