"""Access tokens for one connection: refreshed single-flight, rotation persisted first.

In-process, one lock per connection makes concurrent callers share one refresh. Across
processes the store's `rotate` runs the refresh under a row lock and compares versions,
so two workers never spend the same single-use refresh token.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Protocol

from providers.oauth import TokenSet

__all__ = ["ConnectionTokens", "TokenStore"]

_EARLY_REFRESH = dt.timedelta(seconds=60)


class TokenStore(Protocol):
    def current(self, account_id: str) -> TokenSet:
        """The stored tokens; raises ReconnectRequired if the connection is not active."""
        ...

    def rotate(self, account_id: str, rejected_access: str | None,
               refresh: Callable[[str], TokenSet]) -> TokenSet:
        """Refresh under a lock unless another caller already did; persist before returning.

        With `rejected_access` None, refresh only if the stored token is about to expire.
        On ReconnectRequired from `refresh`, mark the connection and re-raise.
        """
        ...


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(account_id: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(account_id, threading.Lock())


class ConnectionTokens:
    def __init__(self, store: TokenStore, account_id: str,
                 refresh: Callable[[str], TokenSet],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._store = store
        self._account_id = account_id
        self._refresh = refresh
        self._clock = clock
        self._cached: TokenSet | None = None

    def access_token(self) -> str:
        tokens = self._cached or self._store.current(self._account_id)
        if tokens.expires_at - _EARLY_REFRESH <= self._clock():
            with _lock_for(self._account_id):
                tokens = self._store.rotate(self._account_id, None, self._refresh)
        self._cached = tokens
        return tokens.access_token

    def refresh_after_rejection(self, rejected_access: str) -> str:
        """The provider refused `rejected_access` (401): refresh once, shared by all callers."""
        with _lock_for(self._account_id):
            tokens = self._store.rotate(self._account_id, rejected_access, self._refresh)
        self._cached = tokens
        return tokens.access_token
