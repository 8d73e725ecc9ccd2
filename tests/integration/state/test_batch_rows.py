"""The batch statements (state/outcomes.py, repository.save_links / save_snapshots) on
SQLite and PostgreSQL, where several rows go in one statement from unnest: the same
rules as the per-row functions."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from state import outcomes
from state import repository as repo
from state.connections import ConnectionInfo
from state.db import Database
from state.models import Intent, ProcessedEvent

T = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
REALM1 = ConnectionInfo("a", "quickbooks", "realm-1", "active", T)
REALM2 = ConnectionInfo("a", "quickbooks", "realm-2", "active", T)


@pytest.fixture
def db(database_url: str) -> Database:
    return Database(database_url)


def link(company: ConnectionInfo, entity_id: str, provider_id: str, version: int,
         written: str | None = None, entity_type: str = "customer") -> dict[str, object]:
    values = repo.link_values(company, entity_type, entity_id, provider_id, str(version),
                              version, f"h{version}")
    values["written_state"], values["written_hash"] = written, written and f"w-{written}"
    return values


def test_snapshots_in_one_statement_keep_the_newest_version(db: Database) -> None:
    with db.transaction() as s:
        repo.save_snapshot(s, "a", "customer", "c1", 5, b"v5", T)
        repo.save_snapshots(s, [
            repo.snapshot_values("a", "customer", "c1", 4, b"v4", T),  # older: kept v5
            repo.snapshot_values("a", "customer", "c2", 1, b"v1", T),
            repo.snapshot_values("a", "item", "c1", 2, b"i2", T)])
        repo.save_snapshots(s, [
            repo.snapshot_values("a", "customer", "c2", 3, b"v3", T),
            repo.snapshot_values("a", "item", "c1", 1, b"i1", T)])
    with db.transaction() as s:
        got = {(t, i): repo.get_snapshot(s, "a", t, i)
               for t, i in (("customer", "c1"), ("customer", "c2"), ("item", "c1"))}
    assert {k: (v.entity_version, v.payload) for k, v in got.items() if v} == {
        ("customer", "c1"): (5, b"v5"), ("customer", "c2"): (3, b"v3"),
        ("item", "c1"): (2, b"i2")}


def test_links_in_one_statement_never_go_back_and_start_afresh_in_another_company(
        db: Database) -> None:
    with db.transaction() as s:
        repo.save_links(s, [link(REALM1, "c1", "58", 7, "x"), link(REALM1, "c2", "59", 2),
                            link(REALM1, "c3", "60", 4)])
        repo.save_links(s, [
            link(REALM1, "c1", "58", 5, "y"),  # older in the same company: kept at 7
            link(REALM2, "c2", "9", 1),  # another company: starts afresh at 1
            link(REALM1, "c3", "60", 6, None)])
    with db.transaction() as s:
        loaded = outcomes.load_links(s, "a", [("customer", f"c{i}") for i in (1, 2, 3)])
    assert {k[1]: (r.provider_id, r.tenant_id, r.last_applied_version, r.written_state)
            for k, r in loaded.items()} == {
        "c1": ("58", "realm-1", 7, "y"), "c2": ("9", "realm-2", 1, None),
        "c3": ("60", "realm-1", 6, None)}


def test_a_repeated_record_in_one_call_is_written_row_after_row(db: Database) -> None:
    with db.transaction() as s:
        repo.save_links(s, [link(REALM1, "c1", "58", 1), link(REALM1, "c1", "58", 2)])
        repo.save_snapshots(s, [repo.snapshot_values("a", "customer", "c1", 1, b"v1", T),
                                repo.snapshot_values("a", "customer", "c1", 2, b"v2", T),
                                repo.snapshot_values("a", "customer", "c2", 1, b"w1", T)])
    with db.transaction() as s:
        got = repo.get_link(s, REALM1, "customer", "c1")
        snapshot = repo.get_snapshot(s, "a", "customer", "c1")
    assert got is not None and got.last_applied_version == 2
    assert snapshot is not None and snapshot.payload == b"v2"


def test_load_links_returns_only_the_pairs_asked_for(db: Database) -> None:
    with db.transaction() as s:
        repo.save_links(s, [link(REALM1, "c1", "1", 1), link(REALM1, "i1", "2", 1),
                            link(REALM1, "i1", "3", 1, entity_type="item"),
                            link(REALM1, "c1", "4", 1, entity_type="item")])
    with db.transaction() as s:
        loaded = outcomes.load_links(s, "a", [("customer", "c1"), ("item", "i1")])
    assert {k: r.provider_id for k, r in loaded.items()} == {
        ("customer", "c1"): "1", ("item", "i1"): "3"}


def test_intents_processed_events_and_statuses_of_a_batch(db: Database) -> None:
    keys = [(f"k{i}", "customer", f"c{i}", "create") for i in range(4)]
    with db.transaction() as s:
        assert outcomes.begin_intents(s, "a", keys[:2]) == {"k0": False, "k1": False}
        outcomes.release_intents(s, ["k1"])
    with db.transaction() as s:
        # k0 pending (may have landed), k1 unsent, k2 and k3 new.
        assert outcomes.begin_intents(s, "a", keys) == {
            "k0": True, "k1": False, "k2": False, "k3": False}
        outcomes.complete_intents(s, [("k0", "58"), ("k2", None)])
        outcomes.insert_processed(s, [
            {"account_id": "a", "event_id": f"e{i}", "status": "synced", "processed_at": T}
            for i in range(3)])
        outcomes.insert_processed(s, [
            {"account_id": "b", "event_id": "e0", "status": "failed", "processed_at": T}])
    with db.transaction() as s:
        intents = {i.idempotency_key: (i.state, i.attempts, i.provider_id)
                   for i in s.execute(select(Intent)).scalars()}
        assert intents == {"k0": ("done", 2, "58"), "k1": ("pending", 2, None),
                           "k2": ("done", 1, None), "k3": ("pending", 1, None)}
        assert outcomes.processed_statuses(s, "a", ["e0", "e2", "e9"]) == {
            "e0": "synced", "e2": "synced"}
        assert outcomes.processed_statuses(s, "b", ["e0", "e1"]) == {"e0": "failed"}
        assert len(list(s.execute(select(ProcessedEvent)).scalars())) == 4
