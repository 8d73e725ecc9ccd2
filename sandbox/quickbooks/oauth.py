"""OAuth 2.0 state of the QuickBooks simulator: codes, grants, access and refresh tokens.

Facts (providers.md 1.1): access token 3600 s; refresh token rolling 100 days
(``x_refresh_token_expires_in: 8726400``); stale or revoked refresh token ->
``400 {"error":"invalid_grant"}``; revoke kills the grant.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACCESS_TTL", "CODE_TTL", "REFRESH_TTL", "Grant", "OAuthError", "OAuthStore"]

ACCESS_TTL = 3600
REFRESH_TTL = 8_726_400
CODE_TTL = 600


class OAuthError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class Grant:
    grant_id: str
    client_id: str
    realm_id: str
    scope: str
    refresh_token: str
    refresh_expires_at: float
    revoked: bool = False
    access: dict[str, float] = field(default_factory=dict)  # token -> expires_at


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    realm_id: str
    scope: str
    expires_at: float


class OAuthStore:
    """All methods are called from the event loop thread without awaits in between."""

    def __init__(self, clients: dict[str, str], clock: Callable[[], float]) -> None:
        self.clients = clients
        self.clock = clock
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, Grant] = {}
        self._by_access: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}

    # -- clients
    def client_ok(self, client_id: str | None, secret: str | None) -> bool:
        if client_id is None or secret is None or client_id not in self.clients:
            return False
        return secrets.compare_digest(self.clients[client_id], secret)

    # -- authorization codes
    def issue_code(self, client_id: str, redirect_uri: str, realm_id: str, scope: str) -> str:
        code = "AB11" + secrets.token_urlsafe(24)
        self._codes[code] = _Code(client_id, redirect_uri, realm_id, scope,
                                  self.clock() + CODE_TTL)
        return code

    def exchange_code(self, client_id: str, code: str, redirect_uri: str) -> dict[str, Any]:
        # Single use: the code is removed whether or not the exchange succeeds.
        entry = self._codes.pop(code, None)
        if (
            entry is None
            or entry.expires_at <= self.clock()
            or entry.client_id != client_id
            or entry.redirect_uri != redirect_uri
        ):
            raise OAuthError(400, "invalid_grant")
        return self.new_grant(client_id, entry.realm_id, entry.scope)

    # -- grants and tokens
    def new_grant(self, client_id: str, realm_id: str, scope: str) -> dict[str, Any]:
        now = self.clock()
        grant = Grant(
            grant_id=secrets.token_hex(8),
            client_id=client_id,
            realm_id=realm_id,
            scope=scope,
            refresh_token="",
            refresh_expires_at=0.0,
        )
        self._grants[grant.grant_id] = grant
        return self._issue(grant, now)

    def _issue(self, grant: Grant, now: float) -> dict[str, Any]:
        access = "eyJ.qbo-sim." + secrets.token_urlsafe(32)
        refresh = "AB11" + secrets.token_hex(24)
        grant.access[access] = now + ACCESS_TTL
        self._by_access[access] = grant
        self._by_refresh.pop(grant.refresh_token, None)
        grant.refresh_token = refresh
        grant.refresh_expires_at = now + REFRESH_TTL
        self._by_refresh[refresh] = grant
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": ACCESS_TTL,
            "x_refresh_token_expires_in": REFRESH_TTL,
        }

    def refresh(self, client_id: str, refresh_token: str, realm_revoked: bool) -> dict[str, Any]:
        # Rotation choice: every refresh returns a NEW refresh token and the previous one
        # stops working at once (-> invalid_grant). providers.md: Intuit says to always use
        # the latest refresh token and documents no grace period for the old value, so the
        # simulator takes the strictest reading; a client that loses the refreshed pair
        # (crash between response and save) must reconnect -- the case worth testing.
        grant = self._by_refresh.get(refresh_token)
        now = self.clock()
        if (
            grant is None
            or grant.revoked
            or realm_revoked
            or grant.client_id != client_id
            or grant.refresh_expires_at <= now
        ):
            raise OAuthError(400, "invalid_grant")
        return self._issue(grant, now)

    def revoke(self, token: str) -> bool:
        grant = self._by_access.get(token) or self._by_refresh.get(token)
        if grant is None:
            return False
        grant.revoked = True
        for access in grant.access:
            self._by_access.pop(access, None)
        self._by_refresh.pop(grant.refresh_token, None)
        return True

    def check_access(self, token: str) -> Grant | None:
        grant = self._by_access.get(token)
        if grant is None or grant.revoked or grant.access.get(token, 0.0) <= self.clock():
            return None
        return grant

    def expire_realm(self, realm_id: str) -> int:
        now = self.clock()
        n = 0
        for grant in self._grants.values():
            if grant.realm_id != realm_id:
                continue
            for token, expires in grant.access.items():
                if expires > now:
                    grant.access[token] = now
                    n += 1
        return n

    def realm_of_refresh(self, refresh_token: str) -> str | None:
        grant = self._by_refresh.get(refresh_token)
        return grant.realm_id if grant else None
