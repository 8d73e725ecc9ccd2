"""The final-status check the chaos runs rely on (bench.chaos.check_statuses), and the
split between final and waiting statuses it is built on."""

from __future__ import annotations

import datetime as dt

from bench.chaos import check_statuses
from schemas.error_codes import ErrorCode
from schemas.status import FINAL_STATUSES, WAITING_STATUSES, SyncStatus, SyncStatusEvent

T = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def _s(event: str, status: SyncStatus, code: ErrorCode | None = None) -> SyncStatusEvent:
    return SyncStatusEvent(event, "a", "invoice", "inv-1", "create", status, T,
                           provider="xero", error_code=code)


def test_final_and_waiting_statuses_are_apart() -> None:
    assert {SyncStatus.SYNCED, SyncStatus.SKIPPED, SyncStatus.FAILED,
                              SyncStatus.DEAD_LETTERED} == FINAL_STATUSES
    assert {SyncStatus.WAITING_DEPENDENCY, SyncStatus.PENDING_MANUAL} == WAITING_STATUSES
    assert not FINAL_STATUSES & WAITING_STATUSES
    assert SyncStatus.RETRYING not in FINAL_STATUSES | WAITING_STATUSES


def test_an_event_ends_once_with_synced_or_an_expected_skip() -> None:
    ok = [_s("e1", SyncStatus.WAITING_DEPENDENCY, ErrorCode.MISSING_DEPENDENCY),
          _s("e1", SyncStatus.RETRYING), _s("e1", SyncStatus.SYNCED),
          _s("e2", SyncStatus.SKIPPED, ErrorCode.STALE_VERSION),
          _s("e3", SyncStatus.SKIPPED, ErrorCode.UNCHANGED)]
    assert check_statuses(ok, {"e1", "e2", "e3"}) == []


def test_what_is_not_an_end_or_not_a_good_one_is_reported() -> None:
    cases = {
        "waits forever": [_s("e", SyncStatus.WAITING_DEPENDENCY)],
        "pending manual only": [_s("e", SyncStatus.PENDING_MANUAL)],
        "no status": [],
        "two finals": [_s("e", SyncStatus.SYNCED), _s("e", SyncStatus.SYNCED)],
        "failed": [_s("e", SyncStatus.FAILED, ErrorCode.VALIDATION_FAILED)],
        "dead-lettered": [_s("e", SyncStatus.DEAD_LETTERED, ErrorCode.INTERNAL)],
        "skipped for another reason": [_s("e", SyncStatus.SKIPPED,
                                          ErrorCode.PRE_CONNECTION)],
    }
    for name, statuses in cases.items():
        assert check_statuses(statuses, {"e"}) != [], name
    assert check_statuses([_s("x", SyncStatus.SYNCED)], set()) != []  # never published
