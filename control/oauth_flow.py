"""Connecting an account: OAuth2 authorization start, callback checks, company choice.

The pending authorization (state, the PKCE verifier encrypted, and the hash of a
one-time browser binding) lives in `oauth_states` for ten minutes. A callback must carry
the binding handed to whoever started the connection, so a consent completed by someone
else attaches nothing; the first such callback spends the state by one conditional
update, before the code is exchanged, so two callbacks racing for one state never both
connect. The company is the one the token is for (QuickBooks: `companyinfo` answered
with the token; Xero: the organisations of this consent's `authEventId`; FreshBooks:
the identity's business memberships); a grant that is then refused is revoked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import structlog
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from control.context import ControlError
from providers.errors import ProviderError, ReconnectRequired, TransientProviderError
from providers.oauth import TokenSet
from schemas.events import ID_LIMITS
from service.bootstrap import Services
from service.config import PROVIDERS
from state.connections import CompanyMismatch, CompanyTaken, Connected, ConnectionInfo
from state.models import OAuthState

__all__ = [
    "BINDING_COOKIE",
    "STATE_TTL",
    "AuthorizationStart",
    "CallbackParams",
    "choose_organisation",
    "complete_authorization",
    "sandbox_consent",
    "start_authorization",
]

log = structlog.get_logger("control")

STATE_TTL = dt.timedelta(minutes=10)
_DISPLAY = {"quickbooks": "QuickBooks Online", "xero": "Xero", "freshbooks": "FreshBooks"}


BINDING_COOKIE = "bc_oauth_binding"


@dataclass(frozen=True, slots=True)
class AuthorizationStart:
    account_id: str
    provider: str
    authorization_url: str
    state: str
    expires_at: dt.datetime
    # Handed only to whoever started the connection (the API also sets it as an
    # HttpOnly cookie); the callback must carry it back.
    binding: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"account_id": self.account_id, "provider": self.provider,
                "authorization_url": self.authorization_url, "state": self.state,
                "binding": self.binding, "expires_at": self.expires_at.isoformat()}


@dataclass(frozen=True, slots=True)
class CallbackParams:
    """What the provider put on the redirect (query parameters), the browser binding of
    whoever started the connection, and an optional choice of organisation (Xero) or
    account (FreshBooks) when the consent authorised several."""

    state: str | None
    code: str | None = None
    error: str | None = None
    error_description: str | None = None
    realm_id: str | None = None  # QuickBooks
    tenant: str | None = None
    binding: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class _Choice:
    tenant_id: str
    name: str | None
    connection_id: str | None = None  # Xero: the connection to delete if refused


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


def _label(name: str | None, tenant_id: str) -> str:
    return f"'{name}' ({tenant_id})" if name else tenant_id


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
            f"accounting system per account: disconnect {_DISPLAY[current.provider]} first "
            f"(`blueclerk-sync disconnect --account {current.account_id}`), then connect "
            f"{_DISPLAY.get(provider, provider)}", 409)


def start_authorization(services: Services, account_id: str, provider: str
                        ) -> AuthorizationStart:
    """Create a pending authorization and the provider's consent URL for it."""
    check_provider(provider)
    if not account_id or len(account_id) > ID_LIMITS["account_id"]:
        raise ControlError("invalid_account", f"an account id has 1 to "
                           f"{ID_LIMITS['account_id']} characters", 400)
    refuse_second_provider(services.connections.get(account_id), provider)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
    binding = secrets.token_urlsafe(32)
    now = _now()
    with services.db.transaction() as s:
        s.execute(delete(OAuthState).where(OAuthState.expires_at < now - STATE_TTL))
        s.add(OAuthState(state=state, account_id=account_id, provider=provider,
                         code_verifier=services.cipher.encrypt(verifier),
                         binding_hash=_hash(binding), created_at=now,
                         expires_at=now + STATE_TTL))
    url = services.providers.oauth(provider).authorization_url(state, verifier)
    return AuthorizationStart(account_id, provider, url, state, now + STATE_TTL, binding)


def _pending(s: Session, state: str | None, binding: str | None) -> OAuthState:
    """The pending authorization named by `state`, if the caller holds its binding."""
    if not state:
        raise ControlError("invalid_state", "the callback carries no state; start the "
                           "connection again from Settings > Integrations", 400)
    row = s.get(OAuthState, state)
    if row is None:
        raise ControlError("invalid_state", "the state on the callback does not match any "
                           "authorization this service started (tampered or from another "
                           "session); start the connection again", 400)
    if not binding or not hmac.compare_digest(_hash(binding), row.binding_hash):
        raise ControlError("binding_mismatch", "this authorization was started from another "
                           "browser session, so its consent cannot connect books to the "
                           "account; the person connecting must start and finish it in one "
                           "browser (`blueclerk-sync connect` then `callback` on one "
                           "machine)", 403)
    return row


def _spend_state(services: Services, params: CallbackParams) -> tuple[str, str, str]:
    """(account, provider, verifier) of a pending authorization, marked used by one
    conditional update, so two callbacks racing for one state never both proceed."""
    with services.db.transaction() as s:
        row = _pending(s, params.state, params.binding)
        found = (row.account_id, row.provider, services.cipher.decrypt(row.code_verifier))
        expired = row.expires_at < _now()
        spent = s.execute(update(OAuthState).where(OAuthState.state == row.state,
                                                   OAuthState.used_at.is_(None))
                          .values(used_at=_now())).rowcount  # type: ignore[attr-defined]
    if spent != 1:
        raise ControlError("invalid_state", "this authorization was already completed "
                           "(a state is used once); start the connection again", 400)
    if expired:
        raise ControlError("state_expired", "the authorization took longer than 10 minutes; "
                           "start the connection again", 400)
    return found


def complete_authorization(services: Services, params: CallbackParams) -> Connected:
    """Check the callback, exchange the code, identify the company and store the
    connection. A grant obtained and then refused is revoked at the provider."""
    account_id, provider, verifier = _spend_state(services, params)
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
    refuse_second_provider(services.connections.get(account_id), provider)
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
    choices: list[_Choice] = []
    try:
        choices = _companies(services, provider, tokens, params)
        if params.tenant is not None:
            chosen = [c for c in choices if c.tenant_id == params.tenant]
            if not chosen:
                raise ControlError("unknown_organisation", f"the organisation asked for is not "
                                   f"among those authorised in this {name} consent; start "
                                   "again and authorise it", 400)
        elif len(choices) > 1:
            _keep_pending(services, params.state or "", tokens, choices)
            raise ControlError(
                "choose_organisation",
                f"this {name} consent authorised {len(choices)} organisations "
                f"({', '.join(c.name or c.tenant_id for c in choices)}); choose the one "
                f"this account syncs with: POST /v1/accounts/{account_id}/connection/"
                "organisation with the state, or `blueclerk-sync choose-organisation`", 409,
                details={"state": params.state,
                         "choices": [{"tenant_id": c.tenant_id, "name": c.name}
                                     for c in choices]})
        else:
            chosen = choices
        return _store(services, account_id, provider, chosen[0], tokens)
    except ControlError as exc:
        if exc.code != "choose_organisation":
            _refuse_grant(services, provider, tokens, choices, params.tenant)
        raise


def choose_organisation(services: Services, state: str, binding: str | None, tenant: str
                        ) -> Connected:
    """Finish a consent that authorised several organisations with the user's choice."""
    with services.db.transaction() as s:
        row = _pending(s, state, binding)
        if row.pending_tokens is None or row.tenant_choices is None:
            raise ControlError("invalid_state", "no choice of organisation is waiting for this "
                               "authorization; start the connection again", 400)
        if row.expires_at < _now():
            raise ControlError("state_expired", "the choice took longer than 10 minutes; "
                               "start the connection again", 400)
        account_id, provider = row.account_id, row.provider
        tokens = TokenSet.from_json(services.cipher.decrypt(row.pending_tokens))
        choices = [_Choice(**c) for c in json.loads(row.tenant_choices)]
        taken = s.execute(update(OAuthState).where(OAuthState.state == state,
                                                   OAuthState.pending_tokens.is_not(None))
                          .values(pending_tokens=None)).rowcount  # type: ignore[attr-defined]
    if taken != 1:
        raise ControlError("invalid_state", "this choice was already made; start the "
                           "connection again to change it", 400)
    chosen = [c for c in choices if c.tenant_id == tenant]
    if not chosen:
        _refuse_grant(services, provider, tokens, choices, None)
        raise ControlError("unknown_organisation", "that organisation is not among those "
                           "authorised in this consent; start the connection again", 400)
    try:
        return _store(services, account_id, provider, chosen[0], tokens)
    except ControlError:
        _refuse_grant(services, provider, tokens, choices, tenant)
        raise


def _keep_pending(services: Services, state: str, tokens: TokenSet,
                  choices: list[_Choice]) -> None:
    with services.db.transaction() as s:
        row = s.get(OAuthState, state)
        assert row is not None
        row.pending_tokens = services.cipher.encrypt(tokens.to_json())
        row.tenant_choices = json.dumps([asdict(c) for c in choices])


def _store(services: Services, account_id: str, provider: str, company: _Choice,
           tokens: TokenSet) -> Connected:
    name = _DISPLAY[provider]
    try:
        connected = services.connections.connect(
            account_id, provider, company.tenant_id, tokens, tenant_name=company.name,
            shared_companies=services.settings.shared_companies)
    except CompanyMismatch as exc:
        current = _label(exc.current.tenant_name, exc.current.tenant_id)
        raise ControlError(
            "company_mismatch",
            f"this account syncs with {name} company {current}, but the consent chose "
            f"{_label(company.name, company.tenant_id)}; nothing was changed and the new "
            f"grant was revoked. To keep syncing, reconnect and choose {current}. To move "
            f"the account to the other company, disconnect first (`blueclerk-sync "
            f"disconnect --account {account_id}`), then connect it: a new connection starts "
            "afresh (mappings, wizard and pending changes; records already in the old "
            "company stay there)", 409) from exc
    except CompanyTaken as exc:
        raise ControlError(
            "company_in_use",
            f"{name} company {_label(company.name, company.tenant_id)} is already connected "
            "to another BlueClerk account; one company syncs with one account. Disconnect it "
            "there first, or ask an operator to allow sharing it (SHARED_COMPANIES)",
            409) from exc
    except ValueError as exc:
        raise ControlError("already_connected", str(exc), 409) from exc
    services.providers.forget(account_id)
    return connected


def _refuse_grant(services: Services, provider: str, tokens: TokenSet,
                  choices: list[_Choice], tenant: str | None) -> None:
    """Give back a grant we will not use. Xero: remove only this consent's organisations
    (revoking the token would also drop the user's other organisations, which an
    existing connection may rely on); elsewhere revoke the grant."""
    try:
        if provider == "xero":
            url = services.settings.providers[provider].identity_url
            for c in choices:
                if c.connection_id and (tenant is None or c.tenant_id == tenant):
                    httpx.delete(f"{url}/{c.connection_id}", timeout=services.settings
                                 .http_timeout_s, headers={
                                     "Authorization": f"Bearer {tokens.access_token}"})
        else:
            services.providers.oauth(provider).revoke(tokens.refresh_token)
    except (ProviderError, httpx.HTTPError) as exc:
        log.warning("refused_grant_not_revoked", provider=provider, error=str(exc))


def _companies(services: Services, provider: str, tokens: TokenSet, params: CallbackParams
               ) -> list[_Choice]:
    """The companies this consent authorised, as the provider reports them for the token."""
    timeout = services.settings.http_timeout_s
    headers = {"Authorization": f"Bearer {tokens.access_token}", "Accept": "application/json"}
    name = _DISPLAY[provider]
    if provider == "quickbooks":
        realm = params.realm_id
        if not realm:
            raise ControlError("missing_realm", "QuickBooks did not say which company was "
                               "connected (no realmId on the callback); start again", 400)
        # The realmId rides on the redirect, outside the token: ask QuickBooks with the
        # token itself, which answers only for the company it was granted for.
        base = services.settings.providers[provider].api_base
        url = f"{base}/{realm}/companyinfo/{realm}?minorversion=75"
        response = _identity_get(url, headers, timeout, name)
        if response.status_code in (401, 403):
            raise ControlError("realm_mismatch", "the company named on the callback is not "
                               "the one QuickBooks granted access to; nothing was connected. "
                               "Start the connection again", 400)
        _ok(response, name)
        info = (response.json().get("CompanyInfo") or {})
        return [_Choice(realm, info.get("CompanyName"))]
    url = services.settings.providers[provider].identity_url
    if provider == "xero":
        event = _claims(tokens.access_token).get("authentication_event_id")
        if event:
            url = f"{url}?authEventId={event}"
        response = _identity_get(url, headers, timeout, name)
        _ok(response, name)
        choices = [_Choice(str(c["tenantId"]), c.get("tenantName"), c.get("id"))
                   for c in response.json()
                   if c.get("tenantId") and (not event or c.get("authEventId") == event)]
    else:
        response = _identity_get(url, headers, timeout, name)
        _ok(response, name)
        memberships = (response.json().get("response") or {}).get("business_memberships") or []
        choices = [_Choice(str(m["business"]["account_id"]), m["business"].get("name"))
                   for m in memberships if (m.get("business") or {}).get("account_id")]
    if not choices:
        what = "organisation" if provider == "xero" else "account"
        raise ControlError("no_tenant", f"the {name} consent authorised no {what}; start "
                           f"again and choose an {what}", 400)
    return choices


def _identity_get(url: str, headers: dict[str, str], timeout: float, name: str
                  ) -> httpx.Response:
    try:
        return httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ControlError("provider_unavailable", f"{name} could not be reached to read the "
                           f"connected company ({type(exc).__name__}); start again",
                           502) from exc


def _ok(response: httpx.Response, name: str) -> None:
    if response.status_code != 200:
        raise ControlError("tenant_lookup_failed", f"{name} answered "
                           f"{response.status_code} when asked which company was connected; "
                           "start again", 502)


def _claims(access_token: str) -> dict[str, Any]:
    """The claims of a JWT access token (Xero's carry `authentication_event_id`); the
    token came straight from the token endpoint, so its signature is not re-checked."""
    try:
        body = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def sandbox_consent(authorization_url: str, *, approve: bool = True, tenant: str | None = None,
                    user: str | None = None, timeout: float = 10.0) -> dict[str, str]:
    """Answer a simulator's consent page headlessly (`POST <authorize path>/decision`) and
    return the query parameters of the redirect it answers with (code/state/realmId or
    error). For the local sandbox, tests and demos; real providers need a person."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(authorization_url)
    form = dict(parse_qsl(parts.query))
    form["decision"] = "approve" if approve else "deny"
    if tenant is not None:
        form["tenant"] = tenant
    if user is not None:  # the simulated provider user giving consent (Xero)
        form["user"] = user
    target = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/decision", "",
                         ""))
    response = httpx.post(target, data=form, follow_redirects=False, timeout=timeout)
    if response.status_code != 302:
        raise ControlError("consent_failed", f"the consent page answered "
                           f"{response.status_code}: {response.text[:200]}", 502)
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))
