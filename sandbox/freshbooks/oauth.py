"""FreshBooks OAuth2 (providers.md 3.1): authorization code, single-use refresh tokens.

- Code: 5 minutes, single use, bound to client_id and redirect_uri.
- Access token: 12 h (``expires_in: 43200``).
- Refresh token: never expires but can be used once; each refresh returns a new pair
  and the used refresh token is dead (no grace period).
- Revoke: ``POST /auth/oauth/revoke`` ``{client_id, client_secret, token}`` kills the
  whole grant (access and refresh tokens) whichever of its tokens is given [2nd].

Token error bodies are RFC 6749 ``{"error","error_description"}`` with the wording of
Doorkeeper (the Rails OAuth server FreshBooks' auth service answers like); no FreshBooks
fixture records them [unconf].
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import auth_error

__all__ = ["ACCESS_TTL_S", "CODE_TTL_S", "DEFAULT_SCOPE", "Grant", "TokenStore"]

ACCESS_TTL_S = 43200
CODE_TTL_S = 300
DEFAULT_SCOPE = " ".join([
    "user:profile:read",
    "user:clients:read", "user:clients:write",
    "user:invoices:read", "user:invoices:write",
    "user:payments:read", "user:payments:write",
    "user:billable_items:read", "user:billable_items:write",
    "user:taxes:read", "user:taxes:write",
])

INVALID_GRANT = (
    "The provided authorization grant is invalid, expired, revoked, does not match the "
    "redirection URI used in the authorization request, or was issued to another client."
)
INVALID_CLIENT = (
    "Client authentication failed due to unknown client, no client authentication "
    "included, or unsupported authentication method."
)


@dataclass
class Grant:
    grant_id: str
    client_id: str
    tenant: str
    scope: str
    refresh_token: str = ""
    access: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch)
    revoked: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    tenant: str
    scope: str
    expires_at: float
    used: bool = False


class TokenStore:
    def __init__(self, clients: dict[str, str]) -> None:
        self.clients = clients
        self.grants: dict[str, Grant] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, str] = {}  # access token -> grant id
        self._refresh: dict[str, str] = {}  # live refresh token -> grant id
        self._used_refresh: set[str] = set()

    # ---- clients ----------------------------------------------------------------
    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if not client_id or self.clients.get(client_id) != client_secret:
            raise auth_error(401, "invalid_client", INVALID_CLIENT)

    def known_client(self, client_id: str | None) -> bool:
        return bool(client_id) and client_id in self.clients

    # ---- codes ------------------------------------------------------------------
    def issue_code(self, client_id: str, redirect_uri: str, tenant: str, scope: str) -> str:
        code = secrets.token_hex(32)
        self._codes[code] = _Code(client_id, redirect_uri, tenant, scope,
                                  time.time() + CODE_TTL_S)
        return code

    # ---- tokens -----------------------------------------------------------------
    def _mint(self, grant: Grant) -> dict[str, Any]:
        access = secrets.token_hex(32)
        refresh = secrets.token_hex(32)
        now = time.time()
        grant.access[access] = now + ACCESS_TTL_S
        self._access[access] = grant.grant_id
        if grant.refresh_token:
            self._refresh.pop(grant.refresh_token, None)
        grant.refresh_token = refresh
        self._refresh[refresh] = grant.grant_id
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL_S,
            "scope": grant.scope,
            "created_at": int(now),
        }

    def new_grant(self, client_id: str, tenant: str, scope: str | None = None) -> dict[str, Any]:
        grant = Grant(secrets.token_hex(8), client_id, tenant, scope or DEFAULT_SCOPE)
        self.grants[grant.grant_id] = grant
        return self._mint(grant)

    def exchange_code(self, client_id: str, code: str | None,
                      redirect_uri: str | None) -> dict[str, Any]:
        entry = self._codes.get(code or "")
        if (
            entry is None
            or entry.used
            or entry.expires_at < time.time()
            or entry.client_id != client_id
            or entry.redirect_uri != (redirect_uri or "")
        ):
            raise auth_error(400, "invalid_grant", INVALID_GRANT)
        entry.used = True
        return self.new_grant(client_id, entry.tenant, entry.scope)

    def grant_for_refresh(self, client_id: str, refresh_token: str | None) -> Grant:
        gid = self._refresh.get(refresh_token or "")
        grant = self.grants.get(gid or "")
        if grant is None or grant.revoked or grant.client_id != client_id:
            raise auth_error(400, "invalid_grant", INVALID_GRANT)
        return grant

    def refresh(self, grant: Grant, refresh_token: str) -> dict[str, Any]:
        self._used_refresh.add(refresh_token)
        return self._mint(grant)

    def revoke(self, client_id: str, token: str | None) -> None:
        gid = self._access.get(token or "") or self._refresh.get(token or "")
        grant = self.grants.get(gid or "")
        if grant is None or grant.client_id != client_id:
            return  # RFC 7009: unknown tokens are not an error
        grant.revoked = True
        for access in grant.access:
            self._access.pop(access, None)
        grant.access.clear()
        self._refresh.pop(grant.refresh_token, None)

    def grant_for_access(self, token: str | None) -> Grant | None:
        gid = self._access.get(token or "")
        grant = self.grants.get(gid or "")
        if grant is None or grant.revoked:
            return None
        expiry = grant.access.get(token or "", 0.0)
        if expiry < time.time():
            return None
        return grant

    def expire_tenant(self, tenant: str) -> int:
        count = 0
        for grant in self.grants.values():
            if grant.tenant == tenant:
                for access in grant.access:
                    grant.access[access] = 0.0
                    count += 1
        return count
