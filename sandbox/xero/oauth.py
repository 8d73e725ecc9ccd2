"""OAuth 2.0 state of the Xero simulator: codes, grants, tokens, connections.

Rules (providers.md §2.1):

- authorization codes are single use and live 5 minutes; a replay is `invalid_grant`;
- PKCE: when the authorize call carried `code_challenge`, the token call must carry a
  `code_verifier` that matches (`S256`, or `plain`); public clients (PKCE, no secret)
  may authenticate with `client_id` alone;
- access tokens live 30 minutes;
- every refresh returns a NEW refresh token. The old one keeps working for 30
  minutes after its first use (a client that lost the response may retry); each such
  retry returns a fresh pair (all pairs belong to the same grant). After the grace
  period the old token gets `400 {"error":"invalid_grant"}`;
- a refresh token not used within 60 days of issue expires;
- revoking a refresh token ends the whole grant: its connections (tenants) are gone
  and every token of the grant stops working.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.xero.limits import XeroLimits

__all__ = ["AuthCode", "Connection", "Grant", "OAuthError", "OAuthState", "iso_utc"]


class OAuthError(Exception):
    def __init__(self, error: str, status: int = 400, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.description = description


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0")


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    tenants: list[str]
    issued_at: float
    challenge: str | None
    method: str
    used: bool = False
    user: str | None = None


@dataclass
class Connection:
    id: str
    tenant_id: str
    auth_event_id: str
    created: float
    updated: float

    def render(self, tenant_name: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "authEventId": self.auth_event_id,
            "tenantId": self.tenant_id,
            "tenantType": "ORGANISATION",
            "tenantName": tenant_name,
            "createdDateUtc": iso_utc(self.created),
            "updatedDateUtc": iso_utc(self.updated),
        }


@dataclass
class Grant:
    id: str
    client_id: str
    scope: str
    connections: dict[str, Connection] = field(default_factory=dict)  # by tenant id
    revoked: bool = False
    auth_event_id: str = ""


@dataclass
class _Refresh:
    grant_id: str
    issued_at: float
    first_used_at: float | None = None


@dataclass
class _Access:
    grant_id: str
    expires_at: float


def _jwt(claims: dict[str, Any]) -> str:
    """An access token shaped like Xero's: a JWT whose claims include
    `authentication_event_id` (seen in decoded Xero access tokens; xero-node reads it to
    filter `/connections?authEventId=`). The signature is random: clients must not trust
    it and the simulator only looks tokens up."""
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    return ".".join([part({"alg": "RS256", "typ": "JWT"}), part(claims),
                     secrets.token_urlsafe(32)])


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthState:
    def __init__(self, clients: dict[str, str], limits: XeroLimits,
                 clock: Callable[[], float]) -> None:
        self.clients = clients
        self.limits = limits
        self.clock = clock
        self.codes: dict[str, AuthCode] = {}
        self.grants: dict[str, Grant] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._access: dict[str, _Access] = {}
        self.user_connections: dict[tuple[str, str], dict[str, Connection]] = {}

    # -- client authentication ------------------------------------------------------
    def check_client(self, client_id: str | None, secret: str | None, *,
                     public_ok: bool = False) -> str:
        if not client_id or client_id not in self.clients:
            raise OAuthError("invalid_client", 400)
        if secret is None and public_ok:
            return client_id
        if secret is None or not secrets.compare_digest(secret, self.clients[client_id]):
            raise OAuthError("invalid_client", 400)
        return client_id

    # -- authorize -----------------------------------------------------------------
    def issue_code(self, client_id: str, redirect_uri: str, scope: str, tenants: list[str],
                   challenge: str | None, method: str, user: str | None = None) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthCode(code, client_id, redirect_uri, scope, tenants,
                                    self.clock(), challenge, method or "plain", user=user)
        return code

    # -- token endpoint ---------------------------------------------------------------
    def exchange_code(self, code: str, client_id: str, redirect_uri: str | None,
                      verifier: str | None) -> dict[str, Any]:
        ac = self.codes.get(code)
        now = self.clock()
        if ac is None or ac.client_id != client_id:
            raise OAuthError("invalid_grant")
        if ac.used or now - ac.issued_at > self.limits.code_ttl_s:
            ac.used = True
            raise OAuthError("invalid_grant")
        ac.used = True  # single use, even when the rest of the exchange fails
        if redirect_uri is not None and redirect_uri != ac.redirect_uri:
            raise OAuthError("invalid_grant")
        if ac.challenge is not None:
            if not verifier:
                raise OAuthError("invalid_grant", description="code_verifier required")
            expected = _s256(verifier) if ac.method == "S256" else verifier
            if not secrets.compare_digest(expected, ac.challenge):
                raise OAuthError("invalid_grant", description="code_verifier mismatch")
        grant = self.new_grant(client_id, ac.scope, ac.tenants, ac.user)
        return self._pair(grant)

    def new_grant(self, client_id: str, scope: str, tenants: list[str],
                  user: str | None = None) -> Grant:
        """A grant for the organisations chosen in one consent. Connections belong to the
        Xero user and the app, so a named user's earlier organisations stay connected and
        show in `/connections` beside the new ones; `authEventId` tells this consent's
        apart (xero-identity.yaml: "Identifier shared across connections authorised at
        the same time")."""
        now = self.clock()
        event = str(uuid.uuid4())
        grant = Grant(str(uuid.uuid4()), client_id, scope, auth_event_id=event)
        shared = self.user_connections.setdefault((client_id, user), {}) if user else {}
        for t in tenants:
            shared[t] = Connection(str(uuid.uuid4()), t, event, now, now)
        grant.connections = dict(shared)
        self.grants[grant.id] = grant
        return grant

    def _pair(self, grant: Grant) -> dict[str, Any]:
        now = self.clock()
        access = _jwt({"authentication_event_id": grant.auth_event_id,
                       "client_id": grant.client_id,
                       "exp": int(now + self.limits.access_token_ttl_s),
                       "jti": secrets.token_hex(16)})
        refresh = secrets.token_urlsafe(32)
        self._access[access] = _Access(grant.id, now + self.limits.access_token_ttl_s)
        self._refresh[refresh] = _Refresh(grant.id, now)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(self.limits.access_token_ttl_s),
            "token_type": "Bearer",
            "scope": grant.scope,
        }

    def refresh(self, token: str, client_id: str,
                revoked_tenant: Callable[[str], bool]) -> dict[str, Any]:
        rec = self._refresh.get(token)
        now = self.clock()
        if rec is None:
            raise OAuthError("invalid_grant")
        grant = self.grants.get(rec.grant_id)
        if grant is None or grant.revoked or grant.client_id != client_id:
            raise OAuthError("invalid_grant")
        if any(revoked_tenant(t) for t in grant.connections):
            raise OAuthError("invalid_grant")
        if rec.first_used_at is None:
            if now - rec.issued_at > self.limits.refresh_idle_s:
                raise OAuthError("invalid_grant")
            rec.first_used_at = now
        elif now - rec.first_used_at > self.limits.refresh_grace_s:
            raise OAuthError("invalid_grant")
        return self._pair(grant)

    def revoke(self, token: str) -> None:
        rec = self._refresh.get(token)
        if rec is None:
            acc = self._access.get(token)
            if acc is None:
                return
            gid = acc.grant_id
        else:
            gid = rec.grant_id
        grant = self.grants.get(gid)
        if grant is not None:
            grant.revoked = True
            grant.connections.clear()

    # -- bearer checks ----------------------------------------------------------------
    def grant_for(self, access_token: str) -> tuple[Grant | None, str]:
        """(grant, "") when valid, else (None, "TokenExpired" | "AuthenticationUnsuccessful")."""
        acc = self._access.get(access_token)
        if acc is None:
            return None, "AuthenticationUnsuccessful"
        grant = self.grants.get(acc.grant_id)
        if grant is None or grant.revoked:
            return None, "AuthenticationUnsuccessful"
        if self.clock() >= acc.expires_at:
            return None, "TokenExpired"
        return grant, ""

    def expire_access(self, tenant: str) -> int:
        n = 0
        now = self.clock()
        for acc in self._access.values():
            grant = self.grants.get(acc.grant_id)
            if grant is not None and tenant in grant.connections and acc.expires_at > now:
                acc.expires_at = now
                n += 1
        return n

    def issue_direct(self, client_id: str, scope: str, tenants: list[str]) -> dict[str, Any]:
        return self._pair(self.new_grant(client_id, scope, tenants))
