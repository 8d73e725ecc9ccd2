"""Connecting an account: OAuth2 authorization start, callback checks, tenant choice.

The pending authorization (state + PKCE verifier) lives in `oauth_states` for ten
minutes and is spent by the first callback that names it, before the code is
exchanged, so two callbacks racing for one state never both connect.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import delete

from control.service import ControlError
from providers.errors import ReconnectRequired, TransientProviderError
from providers.oauth import TokenSet
from service.bootstrap import Services
from service.config import PROVIDERS
from state.connections import ConnectionInfo
from state.models import OAuthState

__all__ = [
    "STATE_TTL",
    "AuthorizationStart",
    "CallbackParams",
    "complete_authorization",
    "sandbox_consent",
    "start_authorization",
]

STATE_TTL = dt.timedelta(minutes=10)
_DISPLAY = {"quickbooks": "QuickBooks Online", "xero": "Xero", "freshbooks": "FreshBooks"}


@dataclass(frozen=True, slots=True)
class AuthorizationStart:
    account_id: str
    provider: str
    authorization_url: str
    state: str
    expires_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "provider": self.provider,
                "authorization_url": self.authorization_url, "state": self.state,
                "expires_at": self.expires_at.isoformat()}


@dataclass(frozen=True, slots=True)
class CallbackParams:
    """What the provider put on the redirect (query parameters), plus an optional choice
    of organisation (Xero) or account (FreshBooks) when the grant covers several."""

    state: str | None
    code: str | None = None
    error: str | None = None
    error_description: str | None = None
    realm_id: str | None = None  # QuickBooks
    tenant: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise ControlError("unknown_provider",
                           f"unknown provider {provider!r}; choose one of "
                           f"{', '.join(PROVIDERS)}", 400)


def refuse_second_provider(current: ConnectionInfo | None, provider: str) -> None:
    if current is not None and current.status in ("active", "reconnect_required") \
            and current.provider != provider:
        raise ControlError(
            "already_connected",
            f"this account is already connected to {_DISPLAY[current.provider]}; one "
            f"accounting system per account: disconnect {_DISPLAY[current.provider]} first, "
            f"then connect {_DISPLAY.get(provider, provider)}", 409)


def start_authorization(services: Services, account_id: str, provider: str
                        ) -> AuthorizationStart:
    """Create a pending authorization and the provider's consent URL for it."""
    check_provider(provider)
    refuse_second_provider(services.connections.get(account_id), provider)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    now = _now()
    with services.db.transaction() as s:
        s.execute(delete(OAuthState).where(OAuthState.expires_at < now - STATE_TTL))
        s.add(OAuthState(state=state, account_id=account_id, provider=provider,
                         code_verifier=verifier, created_at=now, expires_at=now + STATE_TTL))
    url = services.providers.oauth(provider).authorization_url(state, verifier)
    return AuthorizationStart(account_id, provider, url, state, now + STATE_TTL)


def _spend_state(services: Services, state: str | None) -> tuple[str, str, str]:
    """(account, provider, verifier) of a pending authorization, marked used."""
    if not state:
        raise ControlError("invalid_state", "the callback carries no state; start the "
                           "connection again from Settings > Integrations", 400)
    with services.db.transaction() as s:
        row = s.get(OAuthState, state)
        if row is None:
            raise ControlError("invalid_state", "the state on the callback does not match any "
                               "authorization this service started (tampered or from another "
                               "session); start the connection again", 400)
        if row.used_at is not None:
            raise ControlError("invalid_state", "this authorization was already completed "
                               "(a state is used once); start the connection again", 400)
        row.used_at = _now()  # spent even when expired: a state is never tried twice
        expired = row.expires_at < _now()
        found = (row.account_id, row.provider, row.code_verifier)
    if expired:
        raise ControlError("state_expired", "the authorization took longer than 10 minutes; "
                           "start the connection again", 400)
    return found


def complete_authorization(services: Services, params: CallbackParams
                           ) -> tuple[ConnectionInfo, bool]:
    """Check the callback, exchange the code, pick the tenant and store the connection.

    Returns the connection and whether it replaced an earlier connection to the same
    provider (a reconnect, whose parked events the caller re-drives)."""
    account_id, provider, verifier = _spend_state(services, params.state)
    name = _DISPLAY[provider]
    if params.error:
        if params.error == "access_denied":
            raise ControlError("access_denied", f"access_denied: the user declined the "
                               f"connection at {name}; start again and choose to allow access "
                               "to connect", 400)
        detail = f" ({params.error_description})" if params.error_description else ""
        raise ControlError("authorization_failed", f"{name} ended the authorization with "
                           f"{params.error}{detail}; start the connection again", 400)
    if not params.code:
        raise ControlError("missing_code", "the callback carries neither a code nor an error; "
                           "start the connection again", 400)
    previous = services.connections.get(account_id)
    refuse_second_provider(previous, provider)
    flow = services.providers.oauth(provider)
    try:
        tokens = flow.exchange_code(params.code, verifier)
    except ReconnectRequired as exc:
        if "invalid_grant" in str(exc):
            raise ControlError("invalid_grant", "the authorization code was already used or "
                               "expired; start again", 400) from exc
        raise ControlError("authorization_failed", f"{name} refused the code ({exc}); check "
                           "the client id, secret and redirect URI, then start again",
                           400) from exc
    except TransientProviderError as exc:
        raise ControlError("provider_unavailable", f"{name} could not be reached to finish the "
                           f"connection ({exc}); start again in a few minutes", 502) from exc
    tenant = _tenant(services, provider, tokens, params)
    try:
        info = services.connections.connect(account_id, provider, tenant, tokens)
    except ValueError as exc:
        raise ControlError("already_connected", str(exc), 409) from exc
    services.providers.forget(account_id)
    reconnect = previous is not None and previous.provider == provider
    return info, reconnect


def _tenant(services: Services, provider: str, tokens: TokenSet, params: CallbackParams) -> str:
    if provider == "quickbooks":
        realm = params.realm_id or dict(tokens.extra).get("realmId")
        if not realm:
            raise ControlError("missing_realm", "QuickBooks did not say which company was "
                               "connected (no realmId on the callback); start again", 400)
        return realm
    url = services.settings.providers[provider].identity_url
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {tokens.access_token}",
                                           "Accept": "application/json"},
                             timeout=services.settings.http_timeout_s)
    except httpx.HTTPError as exc:
        raise ControlError("provider_unavailable", f"{_DISPLAY[provider]} could not be reached "
                           f"to read the connected organisation ({exc}); start again",
                           502) from exc
    if response.status_code != 200:
        raise ControlError("tenant_lookup_failed", f"{_DISPLAY[provider]} answered "
                           f"{response.status_code} when asked which organisation was "
                           "connected; start again", 502)
    if provider == "xero":
        ids = [str(c["tenantId"]) for c in response.json() if c.get("tenantId")]
        what = "organisation"
    else:
        memberships = (response.json().get("response") or {}).get("business_memberships") or []
        ids = [str(m["business"]["account_id"]) for m in memberships
               if (m.get("business") or {}).get("account_id")]
        what = "account"
    if not ids:
        raise ControlError("no_tenant", f"the {_DISPLAY[provider]} grant covers no {what}; "
                           f"start again and choose an {what}", 400)
    if params.tenant:
        if params.tenant not in ids:
            raise ControlError("unknown_tenant", f"{params.tenant} is not among the connected "
                               f"{what}s ({', '.join(ids)}); pick one of them", 400)
        return params.tenant
    return ids[0]



def sandbox_consent(authorization_url: str, *, approve: bool = True, tenant: str | None = None,
                    timeout: float = 10.0) -> dict[str, str]:
    """Answer a simulator's consent page headlessly (`POST <authorize path>/decision`) and
    return the query parameters of the redirect it answers with (code/state/realmId or
    error). For the local sandbox, tests and demos; real providers need a person."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(authorization_url)
    form = dict(parse_qsl(parts.query))
    form["decision"] = "approve" if approve else "deny"
    if tenant is not None:
        form["tenant"] = tenant
    target = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/decision", "",
                         ""))
    response = httpx.post(target, data=form, follow_redirects=False, timeout=timeout)
    if response.status_code != 302:
        raise ControlError("consent_failed", f"the consent page answered "
                           f"{response.status_code}: {response.text[:200]}", 502)
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))
