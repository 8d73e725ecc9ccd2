"""Connections and their tokens: the TokenStore behind providers.tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from providers.errors import ReconnectRequired
from providers.oauth import TokenSet
from state.crypto import TokenCipher
from state.db import Database
from state.models import Connection, SyncSettings

__all__ = ["ConnectionInfo", "ConnectionStore", "connection_info", "mark_synced"]

_EARLY_REFRESH = dt.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    account_id: str
    provider: str
    tenant_id: str
    status: str
    connected_at: dt.datetime
    status_reason: str | None = None


def _info(row: Connection) -> ConnectionInfo:
    return ConnectionInfo(row.account_id, row.provider, row.tenant_id, row.status,
                          row.connected_at, row.status_reason)


def connection_info(s: Session, account_id: str) -> ConnectionInfo | None:
    """The connection as seen inside the caller's transaction."""
    row = s.get(Connection, account_id)
    return _info(row) if row else None


def mark_synced(s: Session, account_id: str) -> None:
    """Record the last successful sync inside the caller's transaction."""
    row = s.get(Connection, account_id)
    if row is not None:
        row.last_sync_at = dt.datetime.now(dt.UTC)


class ConnectionStore:
    def __init__(self, db: Database, cipher: TokenCipher,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._db = db
        self._cipher = cipher
        self._clock = clock

    def connect(self, account_id: str, provider: str, tenant_id: str, tokens: TokenSet,
                connected_at: dt.datetime | None = None) -> ConnectionInfo:
        """Store a new connection; one accounting system per account."""
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            if row is not None and row.status in ("active", "reconnect_required") \
                    and row.provider != provider:
                raise ValueError(
                    f"account {account_id} is already connected to {row.provider}; "
                    "disconnect it before connecting another accounting system"
                )
            if row is None:
                row = Connection(account_id=account_id, token_version=0)
                s.add(row)
            # A reconnect to the same provider keeps the original connection time, so
            # records created while disconnected are not synced retroactively either.
            previous = row.connected_at if row.provider == provider else None
            row.provider = provider
            row.tenant_id = tenant_id
            row.status = "active"
            row.status_reason = None
            row.connected_at = connected_at or previous or self._clock()
            self._write_tokens(row, tokens)
            if s.get(SyncSettings, account_id) is None:
                s.add(SyncSettings(account_id=account_id, sync_customers=True, sync_items=True,
                                   sync_invoices=True, sync_payments=True, auto_sync=True))
            s.flush()
            return _info(row)

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
            if row is None:
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

    def set_status(self, account_id: str, status: str, reason: str | None = None) -> None:
        with self._db.transaction() as s:
            row = s.get(Connection, account_id)
            if row is not None:
                row.status = status
                row.status_reason = reason

    def touch_sync(self, account_id: str) -> None:
        with self._db.transaction() as s:
            mark_synced(s, account_id)
