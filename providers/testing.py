"""Test helpers offered as API: fakes of the provider-side ports for adapter tests."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from providers.oauth import TokenSet

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore:
    """A TokenStore for one connection, in memory: rotates under a lock, counts refreshes.

    Same contract as state.connections.ConnectionStore: with `rejected_access` None it
    refreshes only a token about to expire; with a rejected token it refreshes only if no
    other caller did meanwhile."""

    def __init__(self, tokens: TokenSet) -> None:
        self.tokens = tokens
        self.refreshes = 0
        self._lock = threading.Lock()

    def current(self, account_id: str) -> TokenSet:
        return self.tokens

    def rotate(self, account_id: str, rejected_access: str | None,
               refresh: Callable[[str], TokenSet]) -> TokenSet:
        with self._lock:
            if rejected_access is None:
                if self.tokens.expires_at - dt.timedelta(seconds=60) > dt.datetime.now(dt.UTC):
                    return self.tokens
            elif self.tokens.access_token != rejected_access:
                return self.tokens  # another caller refreshed already
            self.tokens = refresh(self.tokens.refresh_token)
            self.refreshes += 1
            return self.tokens
