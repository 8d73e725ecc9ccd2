"""Repository functions on SQLite and PostgreSQL: snapshots, links, parking, intents, outbox."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from state import repository as repo
from state.db import Database
from state.models import Intent, Snapshot

T = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(database_url: str) -> Database:
    return Database(database_url)


def test_snapshot_keeps_the_newest_version(db: Database) -> None:
    with db.transaction() as s:
        repo.save_snapshot(s, "a", "customer", "c1", 2, b"v2", T)
    with db.transaction() as s:
        repo.save_snapshot(s, "a", "customer", "c1", 1, b"v1", T - dt.timedelta(days=1))
        repo.save_snapshot(s, "a", "customer", "c1", 2, b"v2-again", T)
    with db.transaction() as s:
        row = repo.get_snapshot(s, "a", "customer", "c1")
        assert row is not None and (row.entity_version, bytes(row.payload)) == (2, b"v2")
        assert row.record_created_at == T
    with db.transaction() as s:
        repo.save_snapshot(s, "a", "customer", "c1", 7, b"v7", T)
    with db.transaction() as s:
        row = repo.get_snapshot(s, "a", "customer", "c1")
        assert row is not None and (row.entity_version, bytes(row.payload)) == (7, b"v7")
        assert repo.get_snapshot(s, "b", "customer", "c1") is None  # per tenant
        assert s.query(Snapshot).count() == 1


@dataclass(frozen=True)
class _Company:
    account_id: str
    provider: str
    tenant_id: str


A_REALM1 = _Company("a", "quickbooks", "realm-1")
A_REALM2 = _Company("a", "quickbooks", "realm-2")


def test_links_never_go_back_in_version(db: Database) -> None:
    with db.transaction() as s:
        repo.save_link(s, A_REALM1, "invoice", "i1", "130", "0", 3, "h3")
    with db.transaction() as s:
        repo.save_link(s, A_REALM1, "invoice", "i1", "130", "1", 2, "h2")
    with db.transaction() as s:
        link = repo.get_link(s, A_REALM1, "invoice", "i1")
        assert link is not None
        assert (link.provider_id, link.provider_version, link.last_applied_version,
                link.payload_hash) == ("130", "1", 3, "h2")
        assert repo.get_link(s, A_REALM1, "invoice", "i2") is None


def test_a_link_belongs_to_one_company(db: Database) -> None:
    """A link made in one company is never handed out for another, and a write for the
    other company starts the record's history afresh."""
    with db.transaction() as s:
        repo.save_link(s, A_REALM1, "customer", "c1", "58", "3", 7, "h")
    with db.transaction() as s:
        assert repo.get_link(s, A_REALM2, "customer", "c1") is None
        assert repo.get_link(s, _Company("a", "xero", "realm-1"), "customer", "c1") is None
        repo.save_link(s, A_REALM2, "customer", "c1", "9", None, 2, None)
    with db.transaction() as s:
        link = repo.get_link(s, A_REALM2, "customer", "c1")
        assert link is not None and (link.provider_id, link.last_applied_version) == ("9", 2)
        assert repo.get_link(s, A_REALM1, "customer", "c1") is None


def test_processed_events(db: Database) -> None:
    with db.transaction() as s:
        assert repo.processed_status(s, "a", "e1") is None
        repo.mark_processed(s, "e1", "a", "waiting_dependency")
    with db.transaction() as s:
        assert repo.processed_status(s, "a", "e1") == "waiting_dependency"
        repo.mark_processed(s, "e1", "a", "synced")
    with db.transaction() as s:
        assert repo.processed_status(s, "a", "e1") == "synced"
        # Event ids are unique per account: another tenant's "e1" is another event.
        assert repo.processed_status(s, "b", "e1") is None
        repo.mark_processed(s, "e1", "b", "skipped")
    with db.transaction() as s:
        assert repo.processed_status(s, "a", "e1") == "synced"
        assert repo.processed_status(s, "b", "e1") == "skipped"


def test_intents_report_an_uncertain_earlier_attempt(db: Database) -> None:
    kw = {"key": "k1", "account_id": "a", "entity_type": "customer", "entity_id": "c1",
          "operation": "create"}
    with db.transaction() as s:
        assert repo.begin_intent(s, **kw) is False  # first attempt
    with db.transaction() as s:
        assert repo.begin_intent(s, **kw) is True  # the first may have landed
        repo.complete_intent(s, "k1", "58")
    with db.transaction() as s:
        assert repo.begin_intent(s, **kw) is False  # done: nothing uncertain
        intent = s.get(Intent, "k1")
        assert intent is not None
        assert (intent.state, intent.attempts, intent.provider_id) == ("done", 3, "58")
        repo.complete_intent(s, "missing", None)  # no row: nothing happens


def test_an_intent_released_unsent_is_not_uncertain(db: Database) -> None:
    kw = {"key": "k2", "account_id": "a", "entity_type": "customer", "entity_id": "c2",
          "operation": "create"}
    with db.transaction() as s:
        assert repo.begin_intent(s, **kw) is False
        repo.release_intent(s, "k2")  # our own limiter stopped it before sending
    with db.transaction() as s:
        assert repo.begin_intent(s, **kw) is False  # nothing can have landed
    with db.transaction() as s:
        assert repo.begin_intent(s, **kw) is True  # the second attempt may have
        repo.complete_intent(s, "k2", "7")
        repo.release_intent(s, "k2")  # a done intent stays done
    with db.transaction() as s:
        intent = s.get(Intent, "k2")
        assert intent is not None and intent.state == "done"


def test_parking_in_arrival_order(db: Database) -> None:
    with db.transaction() as s:
        for n, (entity_id, reason, waits) in enumerate([
            ("inv1", "missing_dependency", "customer:c1"),
            ("i2", "unmapped_item", "mapping:i2"),
            ("inv2", "missing_dependency", "customer:c1"),
            ("c9", "pending_manual", None),
        ]):
            repo.park(s, event_id=f"e{n}", account_id="a", entity_type="invoice",
                      entity_id=entity_id, reason=reason, waits_for=waits,
                      payload=f"p{n}".encode())
        repo.park(s, event_id="other", account_id="b", entity_type="invoice",
                  entity_id="inv1", reason="missing_dependency", waits_for="customer:c1",
                  payload=b"x")
    with db.transaction() as s:
        assert [p.event_id for p in repo.parked_for(s, "a")] == ["e0", "e1", "e2", "e3"]
        assert [p.event_id for p in repo.parked_for(
            s, "a", reason="missing_dependency", waits_for=["customer:c1"])] == ["e0", "e2"]
        assert [bytes(p.payload) for p in repo.parked_for(s, "a", reason="unmapped_item")] \
            == [b"p1"]
        assert repo.is_parked(s, "a", "e1") and not repo.is_parked(s, "a", "nope")
        assert not repo.is_parked(s, "b", "e1")  # per account
        # parking again updates the reason, it does not duplicate the event
        repo.park(s, event_id="e0", account_id="a", entity_type="invoice", entity_id="inv1",
                  reason="missing_dependency", waits_for="item:i1", payload=b"p0")
    with db.transaction() as s:
        assert repo.parked_for(s, "a")[0].waits_for == "item:i1"
        assert len(repo.parked_for(s, "a")) == 4
        repo.unpark(s, "b", "e0")  # another account's id: nothing happens
        repo.unpark(s, "a", "e0")
        repo.unpark(s, "a", "never-parked")
    with db.transaction() as s:
        assert [p.event_id for p in repo.parked_for(s, "a")] == ["e1", "e2", "e3"]


def test_parked_before_orders_changes_of_one_record(db: Database) -> None:
    with db.transaction() as s:
        for n in range(3):
            repo.park(s, event_id=f"v{n}", account_id="a", entity_type="invoice",
                      entity_id="inv1", reason="missing_dependency",
                      waits_for="customer:c1", payload=b"")
        repo.park(s, event_id="manual", account_id="a", entity_type="invoice",
                  entity_id="inv2", reason="pending_manual", waits_for=None, payload=b"")
    with db.transaction() as s:
        assert not repo.parked_before(s, "a", "invoice", "inv1", "v0")
        assert repo.parked_before(s, "a", "invoice", "inv1", "v2")
        assert repo.parked_before(s, "a", "invoice", "inv1", "")  # anything waiting
        assert not repo.parked_before(s, "a", "invoice", "inv2", "")  # manual does not block
        assert not repo.parked_before(s, "b", "invoice", "inv1", "")


def test_outbox_publish_marking(db: Database) -> None:
    with db.transaction() as s:
        for n in range(5):
            repo.add_outbox(s, account_id="a", topic_kind="status", key=f"a/customer/c{n}",
                            value=f"status-{n}".encode(), status="synced",
                            entity_type="customer", entity_id=f"c{n}")
    with db.transaction() as s:
        pending = repo.unpublished(s)
        assert [bytes(m.value) for m in pending] == [f"status-{n}".encode() for n in range(5)]
        first_two = [m.id for m in pending[:2]]
        assert len(repo.unpublished(s, limit=3)) == 3
    with db.transaction() as s:
        repo.mark_published(s, first_two)
        repo.mark_published(s, [])  # a no-op
    with db.transaction() as s:
        rest = repo.unpublished(s)
        assert [m.key for m in rest] == ["a/customer/c2", "a/customer/c3", "a/customer/c4"]
        repo.mark_published(s, [m.id for m in rest])
    with db.transaction() as s:
        assert repo.unpublished(s) == []


def test_a_failed_transaction_leaves_no_trace(db: Database) -> None:
    with pytest.raises(RuntimeError), db.transaction() as s:
        repo.add_outbox(s, account_id="a", topic_kind="status", key="k", value=b"v")
        repo.mark_processed(s, "e1", "a", "synced")
        s.flush()
        raise RuntimeError("crash between the outcome and the commit")
    with db.transaction() as s:
        assert repo.unpublished(s) == []
        assert repo.processed_status(s, "a", "e1") is None


def test_dead_letters_and_settings(db: Database) -> None:
    with db.transaction() as s:
        repo.add_dead_letter(s, account_id=None, entity_type=None, entity_id=None,
                             topic="blueclerk.items", partition=3, offset=2**40,
                             error_code="undecodable", reason="bad magic", payload=b"\x07")
        assert repo.get_settings(s, "a") is None
        assert repo.get_mapping(s, "a", "i1") is None
    from state.models import DeadLetter

    with db.transaction() as s:
        (row,) = s.query(DeadLetter).all()
        assert (row.topic, row.partition, row.offset, bytes(row.payload or b"")) == (
            "blueclerk.items", 3, 2**40, b"\x07")


# -- Core statements in place of the ORM (issue 12): what callers relied on still holds --


def _statements(db: Database) -> list[str]:
    from sqlalchemy import event

    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_: seen.append(" ".join(sql.split())))
    return seen


def test_a_change_set_on_a_saved_link_is_written_at_commit(db: Database) -> None:
    """The engine sets what its write left in the books on the link save_link returns,
    as it did on the ORM entity: the change lands with the transaction, is seen by a
    read later in the same transaction, and goes nowhere if the transaction fails."""
    with db.transaction() as s:
        link = repo.save_link(s, A_REALM1, "customer", "c1", "58", "0", 1, "h1")
        link.written_state, link.written_hash = '{"name": "Ada"}', "w1"
        seen = repo.get_link(s, A_REALM1, "customer", "c1")
        assert seen is not None and (seen.written_state, seen.written_hash) == (
            '{"name": "Ada"}', "w1")
    with db.transaction() as s:
        link = repo.save_link(s, A_REALM1, "customer", "c1", "58", "1", 2, "h2")
        link.written_hash = "w2"  # the last statement of the transaction: flushed at commit
    with pytest.raises(RuntimeError), db.transaction() as s:
        link = repo.save_link(s, A_REALM1, "customer", "c1", "58", "2", 3, "h3")
        link.written_hash = "lost"
        raise RuntimeError("crash before the commit")
    with db.transaction() as s:
        after = repo.get_link(s, A_REALM1, "customer", "c1")
        assert after is not None
        assert (after.provider_version, after.last_applied_version, after.payload_hash,
                after.written_state, after.written_hash) == ("1", 2, "h2",
                                                             '{"name": "Ada"}', "w2")
    with pytest.raises(AttributeError):
        after.entity_id = "c2"  # the key of a link is not a column one may set


def test_a_rolled_back_link_change_is_not_written_by_the_next_commit(db: Database) -> None:
    """One session, a transaction rolled back, then another committed: the change queued
    in the first is not carried into the second."""
    s = db.session()
    try:
        repo.save_link(s, A_REALM1, "customer", "c3", "60", None, 1, None)
        s.commit()
        link = repo.get_link(s, A_REALM1, "customer", "c3")  # begins the second transaction
        assert link is not None
        link.written_hash = "from-the-rolled-back-transaction"
        s.rollback()
        repo.mark_processed(s, "e9", "a", "synced")
        s.commit()
    finally:
        s.close()
    with db.transaction() as s:
        after = repo.get_link(s, A_REALM1, "customer", "c3")
        assert after is not None and after.written_hash is None


def test_save_link_with_what_was_written_is_one_statement(db: Database) -> None:
    with db.transaction() as s:
        repo.save_link(s, A_REALM1, "item", "i1", "7", "0", 1, "h", written=('{"a": 1}', "w"))
    statements = _statements(db)
    with db.transaction() as s:
        statements.clear()
        repo.save_link(s, A_REALM1, "item", "i1", "7", "1", 2, "h2", written=('{"a": 2}', "w2"))
        assert [q.split()[0] for q in statements if not q.startswith("BEGIN")] == ["INSERT"]
        # Without `written`, what an earlier write left in the books is kept.
        repo.save_link(s, A_REALM1, "item", "i1", "7", "2", 3, "h3")
    with db.transaction() as s:
        link = repo.get_link(s, A_REALM1, "item", "i1")
        assert link is not None
        assert (link.provider_version, link.last_applied_version, link.written_state,
                link.written_hash) == ("2", 3, '{"a": 2}', "w2")


def test_settings_and_mappings_changed_in_place_are_saved(db: Database) -> None:
    """The control API edits what get_settings and get_mapping return, as ORM entities."""
    from state.models import IncomeAccountMapping, SyncSettings

    with db.transaction() as s:
        s.add(SyncSettings(account_id="a", sync_customers=True, sync_items=True,
                           sync_invoices=True, sync_payments=True, auto_sync=True))
        s.add(IncomeAccountMapping(account_id="a", item_id="i1", provider_account_id="79"))
    with db.transaction() as s:
        settings = repo.get_settings(s, "a")
        assert settings is not None and settings.auto_sync is True
        settings.auto_sync = False
        assert repo.get_settings(s, "a") is settings  # one entity per row in a session
        mapping = repo.get_mapping(s, "a", "i1")
        assert mapping is not None and mapping.provider_account_id == "79"
        mapping.provider_account_id = "80"
    with db.transaction() as s:
        settings = repo.get_settings(s, "a")
        mapping = repo.get_mapping(s, "a", "i1")
        assert settings is not None and mapping is not None
        assert (settings.auto_sync, settings.sync_items, mapping.provider_account_id) == (
            False, True, "80")


def test_reads_see_what_the_same_session_changed_through_the_orm(db: Database) -> None:
    """Core statements skip the ORM's autoflush; the repository flushes first, so a row
    added or changed through the ORM earlier in the transaction is seen."""
    from state.connections import connection_info
    from state.models import Connection, ProcessedEvent, SyncSettings

    with db.transaction() as s:
        s.add(ProcessedEvent(account_id="a", event_id="e1", status="waiting_dependency"))
        assert repo.processed_status(s, "a", "e1") == "waiting_dependency"
        s.add(SyncSettings(account_id="a", sync_customers=False, sync_items=True,
                           sync_invoices=True, sync_payments=True, auto_sync=True))
        settings = repo.get_settings(s, "a")
        assert settings is not None and settings.sync_customers is False
        s.add(Connection(account_id="a", provider="xero", tenant_id="org-1", status="active",
                         connected_at=T, access_expires_at=T, token_version=1))
        row = s.get(Connection, "a")
        assert row is not None
        row.status = "reconnect_required"
        info = connection_info(s, "a")
        assert info is not None and (info.provider, info.status) == ("xero",
                                                                   "reconnect_required")
