"""Connections and their tokens: the TokenStore behind providers.tokens."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, delete, event, select, update
from sqlalchemy.orm import Session

from providers.errors import ReconnectRequired
from providers.oauth import TokenSet
from state.crypto import TokenCipher
from state.db import Database
from state.models import (
    Connection,
    InboundCursor,
    IncomeAccountMapping,
    SyncSettings,
    TaxRateMapping,
    WizardProgress,
)

__all__ = [
    "Company",
    "CompanyMismatch",
    "CompanyTaken",
    "Connected",
    "ConnectionInfo",
    "ConnectionStore",
    "connection_info",
    "mark_synced",
]

_EARLY_REFRESH = dt.timedelta(seconds=60)


class Company(Protocol):
    """The provider company an account is connected to; what links are scoped by."""

    @property
    def account_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    account_id: str
    provider: str
    tenant_id: str
    status: str
    connected_at: dt.datetime
    status_reason: str | None = None
    tenant_name: str | None = None


def _info(row: Connection) -> ConnectionInfo:
    return ConnectionInfo(row.account_id, row.provider, row.tenant_id, row.status,
                          row.connected_at, row.status_reason, row.tenant_name)


_CONNECTIONS = cast(Table, Connection.__table__)
# Core statements built once (issue 12: the ORM's load cost more than the query itself).
_CONNECTION_INFO = select(
    _CONNECTIONS.c.account_id, _CONNECTIONS.c.provider, _CONNECTIONS.c.tenant_id,
    _CONNECTIONS.c.status, _CONNECTIONS.c.connected_at, _CONNECTIONS.c.status_reason,
    _CONNECTIONS.c.tenant_name).where(_CONNECTIONS.c.account_id == bindparam("a"))
_MARK_SYNCED = update(_CONNECTIONS).where(
    _CONNECTIONS.c.account_id == bindparam("a")).values(last_sync_at=bindparam("at"))


def connection_info(s: Session, account_id: str) -> ConnectionInfo | None:
    """The connection as seen inside the caller's transaction (ORM changes to it in the
    same session included: Session.execute autoflushes before Core statements too)."""
    row = s.execute(_CONNECTION_INFO, {"a": account_id}).first()
    return ConnectionInfo(*row) if row else None


# last_sync_at is shown to people ("last synced 2 minutes ago"); writing it on every event
# cost a read and an UPDATE of the connection row per event (issue 12). Each process
# writes it at most once per interval per account; the first sync is recorded at once.
SYNC_MARK_INTERVAL_S = 30.0
_sync_marks: dict[str, float] = {}  # account -> monotonic time of its last committed write
_sync_marks_lock = threading.Lock()


def mark_synced(s: Session, account_id: str, *,
                clock: Callable[[], float] = time.monotonic) -> None:
    """Record the last successful sync inside the caller's transaction, unless this
    process recorded one for the account less than SYNC_MARK_INTERVAL_S ago."""
    now = clock()
    with _sync_marks_lock:
        last = _sync_marks.get(account_id)
    if last is not None and now - last < SYNC_MARK_INTERVAL_S:
        return
    s.execute(_MARK_SYNCED, {"a": account_id, "at": dt.datetime.now(dt.UTC)})

    def committed(_session: Session) -> None:  # a rolled-back write does not count
        with _sync_marks_lock:
            _sync_marks[account_id] = now

    event.listen(s, "after_commit", committed, once=True)


@dataclass(frozen=True, slots=True)
class Connected:
    info: ConnectionInfo
    kind: str  # new | reconnect (same company) | new_company (after a disconnect)


class CompanyMismatch(Exception):
    """The consent picked another company than the one the account is connected to."""

    def __init__(self, current: ConnectionInfo, tenant_id: str, tenant_name: str | None
                 ) -> None:
        super().__init__(f"account {current.account_id} is connected to {current.provider} "
                         f"company {current.tenant_id}, not {tenant_id}")
        self.current = current
        self.tenant_id = tenant_id
        self.tenant_name = tenant_name


class CompanyTaken(Exception):
    """Another BlueClerk account is connected to this provider company."""

    def __init__(self, provider: str, tenant_id: str, tenant_name: str | None) -> None:
        super().__init__(f"{provider} company {tenant_id} is connected to another account")
        self.provider = provider
        self.tenant_id = tenant_id
        self.tenant_name = tenant_name


def _start_afresh(s: Session, account_id: str) -> None:
    """What belonged to the account's previous company and means nothing in a new one.
    Links stay (scoped by company, they are inert); parked events are ended by the
    caller with a final status, so none is lost silently."""
    for model in (IncomeAccountMapping, TaxRateMapping, WizardProgress, InboundCursor):
        s.execute(delete(model).where(model.account_id == account_id))


class ConnectionStore:
    def __init__(self, db: Database, cipher: TokenCipher,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock

    def connect(self, account_id: str, provider: str, tenant_id: str, tokens: TokenSet, *,
                tenant_name: str | None = None, connected_at: dt.datetime | None = None,
                shared_companies: frozenset[tuple[str, str]] = frozenset()) -> Connected:
        """Store the account's connection to one provider company.

        Same company as before: a reconnect (links, mappings, parked events and the
        original connection time kept). Another company while connected: refused
        (`CompanyMismatch`), never a silent reconnect. Another company after a
        disconnect: a new connection whose mappings, wizard progress and connection
        time start afresh (links of the old company stay, inert: every link is scoped
        by company). A company another account is connected to: refused
        (`CompanyTaken`) unless an operator listed it in `shared_companies`.
        """
        with self._db.transaction() as s:
            # Serialise connects per account and per company across processes; on
            # SQLite, BEGIN IMMEDIATE already serialises every writer.
            self._db.xact_lock(s, f"account:{account_id}")
            self._db.xact_lock(s, f"company:{provider}:{tenant_id}")
            row = s.execute(select(Connection).where(Connection.account_id == account_id)
                            .with_for_update()).scalar_one_or_none()
            live = row is not None and row.status in ("active", "reconnect_required")
            if row is not None and live and row.provider != provider:
                raise ValueError(
                    f"account {account_id} is already connected to {row.provider}; "
                    "disconnect it before connecting another accounting system"
                )
            if row is not None and live and row.tenant_id != tenant_id:
                raise CompanyMismatch(_info(row), tenant_id, tenant_name)
            if (provider, tenant_id) not in shared_companies:
                other = s.execute(select(Connection.account_id).where(
                    Connection.provider == provider, Connection.tenant_id == tenant_id,
                    Connection.account_id != account_id,
                    Connection.status != "disconnected").limit(1)).scalar_one_or_none()
                if other is not None:
                    raise CompanyTaken(provider, tenant_id, tenant_name)
            same_company = row is not None and (row.provider, row.tenant_id) == (provider,
                                                                                 tenant_id)
            kind = "reconnect" if same_company else ("new" if row is None else "new_company")
            if row is None:
                row = Connection(account_id=account_id, token_version=0)
                s.add(row)
            if kind == "new_company":
                _start_afresh(s, account_id)
            # A reconnect keeps the original connection time, so records created while
            # disconnected are not synced retroactively either.
            previous = row.connected_at if same_company else None
            row.provider = provider
            row.tenant_id = tenant_id
            row.tenant_name = tenant_name or (row.tenant_name if same_company else None)
            row.status = "active"
            row.status_reason = None
            row.connected_at = connected_at or previous or self._clock()
            self._write_tokens(row, tokens)
            if s.get(SyncSettings, account_id) is None:
                s.add(SyncSettings(account_id=account_id, sync_customers=True, sync_items=True,
                                   sync_invoices=True, sync_payments=True, auto_sync=True))
            s.flush()
            return Connected(_info(row), kind)

    def _write_tokens(self, row: Connection, tokens: TokenSet) -> None:
        row.access_token = self._cipher.encrypt(tokens.access_token)
        row.refresh_token = self._cipher.encrypt(tokens.refresh_token)
        row.access_expires_at = tokens.expires_at
        row.token_version = (row.token_version or 0) + 1

    def get(self, account_id: str) -> ConnectionInfo | None:
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            return _info(row) if row else None

    def _tokens(self, row: Connection) -> TokenSet:
        if row.access_token is None or row.refresh_token is None:
            raise ReconnectRequired(f"account {row.account_id} holds no tokens (disconnected)")
        return TokenSet(self._cipher.decrypt(row.access_token),
                        self._cipher.decrypt(row.refresh_token), row.access_expires_at)

    def current(self, account_id: str) -> TokenSet:
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            if row is None or row.status != "active":
                raise ReconnectRequired(f"account {account_id} has no active connection")
            return self._tokens(row)

    def refresh_token(self, account_id: str) -> str:
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            if row is None or row.refresh_token is None:
                raise ReconnectRequired(f"account {account_id} has no connection")
            return self._cipher.decrypt(row.refresh_token)

    def rotate(self, account_id: str, rejected_access: str | None,
               refresh: Callable[[str], TokenSet]) -> TokenSet:
        failure: ReconnectRequired | None = None
        with self._db.transaction() as s:
            row = self._locked(s, account_id)
            if row is None or row.status != "active":
                raise ReconnectRequired(f"account {account_id} has no active connection")
            stored = self._tokens(row)
            if rejected_access is not None and stored.access_token != rejected_access:
                return stored  # another caller refreshed while we waited for the lock
            if rejected_access is None and stored.expires_at - _EARLY_REFRESH > self._clock():
                return stored
            try:
                fresh = refresh(stored.refresh_token)
            except ReconnectRequired as exc:
                row.status = "reconnect_required"
                row.status_reason = str(exc)
                failure = exc
            else:
                # Persisted (on commit, below) before anyone uses it: a crash after the
                # provider rotated but before this commit is the one window that loses
                # the grant, and it is as small as one row update.
                self._write_tokens(row, fresh)
                return fresh
        assert failure is not None
        raise failure

    @staticmethod
    def _locked(s: Session, account_id: str) -> Connection | None:
        return s.execute(
            select(Connection).where(Connection.account_id == account_id).with_for_update()
        ).scalar_one_or_none()

    def disconnect(self, account_id: str, reason: str) -> None:
        """Mark the connection disconnected and delete its tokens, whatever the provider
        said to the revoke: a disconnected account holds no grant."""
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            if row is not None:
                row.status = "disconnected"
                row.status_reason = reason
                row.access_token = None
                row.refresh_token = None
                row.token_version = (row.token_version or 0) + 1

    def reencrypt(self) -> int:
        """Re-encrypt every stored token with the first configured key (key rotation);
        returns how many connections were rewritten."""
        with self._db.transaction() as s:
            rows = list(s.execute(select(Connection).with_for_update()).scalars())
            for row in rows:
                if row.access_token is not None:
                    row.access_token = self._cipher.rotate(row.access_token)
                if row.refresh_token is not None:
                    row.refresh_token = self._cipher.rotate(row.refresh_token)
            return len(rows)

    def set_status(self, account_id: str, status: str, reason: str | None = None) -> None:
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            if row is not None:
                row.status = status
                row.status_reason = reason

    def touch_sync(self, account_id: str) -> None:
        with self._db.transaction() as s:
            mark_synced(s, account_id)
