"""OAuth2 for the three providers: authorization URLs, code exchange, refresh, revoke.

Built on authlib's httpx client. Each provider's endpoints and client-authentication
method are data (`OAuthEndpoints`); the flow is the same code for all three.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from providers.errors import PermanentProviderError, ReconnectRequired, TransientProviderError

__all__ = ["ClientCredentials", "OAuthEndpoints", "OAuthFlow", "TokenSet"]


@dataclass(frozen=True, slots=True)
class OAuthEndpoints:
    authorize_url: str
    token_url: str
    revoke_url: str
    scope: str
    token_auth_method: str = "client_secret_basic"  # FreshBooks: client_secret_post
    use_pkce: bool = True
    # How the revoke endpoint wants the token: QuickBooks JSON + Basic, Xero form + Basic,
    # FreshBooks JSON with the client credentials in the body.
    revoke_style: str = "form_basic"  # json_basic | form_basic | json_body


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str
    redirect_uri: str

    def __repr__(self) -> str:  # never print the secret
        return (f"ClientCredentials(client_id={self.client_id!r}, "
                f"redirect_uri={self.redirect_uri!r})")


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: dt.datetime
    extra: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"TokenSet(expires_at={self.expires_at.isoformat()})"

    def to_json(self) -> str:
        """For encrypted storage only: this string holds the tokens."""
        return json.dumps({"access_token": self.access_token,
                           "refresh_token": self.refresh_token,
                           "expires_at": self.expires_at.isoformat(), "extra": self.extra})

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        raw = json.loads(text)
        return cls(raw["access_token"], raw["refresh_token"],
                   dt.datetime.fromisoformat(raw["expires_at"]),
                   tuple((str(k), str(v)) for k, v in raw["extra"]))

    @classmethod
    def from_response(cls, body: dict[str, Any], now: dt.datetime | None = None) -> TokenSet:
        now = now or dt.datetime.now(dt.UTC)
        expires_in = int(body.get("expires_in", 3600))
        extra = tuple((k, str(v)) for k, v in body.items()
                      if k in ("realmId", "x_refresh_token_expires_in", "scope"))
        return cls(body["access_token"], body["refresh_token"],
                   now + dt.timedelta(seconds=expires_in), extra)


class OAuthFlow:
    def __init__(self, endpoints: OAuthEndpoints, credentials: ClientCredentials,
                 timeout: float = 30.0) -> None:
        self.endpoints = endpoints
        self.credentials = credentials
        self._timeout = timeout

    def _client(self, **kwargs: Any) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.credentials.client_id,
            client_secret=self.credentials.client_secret,
            redirect_uri=self.credentials.redirect_uri,
            scope=self.endpoints.scope,
            token_endpoint_auth_method=self.endpoints.token_auth_method,
            timeout=self._timeout,
            **kwargs,
        )

    def authorization_url(self, state: str, code_verifier: str | None) -> str:
        kwargs: dict[str, Any] = {}
        if self.endpoints.use_pkce and code_verifier:
            kwargs["code_challenge_method"] = "S256"
        with self._client(**kwargs) as client:
            url, _ = client.create_authorization_url(
                self.endpoints.authorize_url, state=state, code_verifier=code_verifier
            )
            return str(url)

    def exchange_code(self, code: str, code_verifier: str | None) -> TokenSet:
        with self._client() as client:
            try:
                token = client.fetch_token(
                    self.endpoints.token_url, grant_type="authorization_code", code=code,
                    code_verifier=code_verifier if self.endpoints.use_pkce else None,
                )
            except OAuthError as exc:
                raise ReconnectRequired(f"the provider refused the code: {exc.error}") from exc
            except httpx.HTTPError as exc:
                raise TransientProviderError(f"token endpoint unreachable: {exc}") from exc
        return TokenSet.from_response(dict(token))

    def refresh(self, refresh_token: str) -> TokenSet:
        """Spend `refresh_token` once; the caller must persist the result before using it."""
        with self._client() as client:
            try:
                token = client.refresh_token(self.endpoints.token_url, refresh_token=refresh_token)
            except OAuthError as exc:
                if exc.error in ("invalid_grant", "invalid_client", "unauthorized_client"):
                    raise ReconnectRequired(
                        f"refresh refused ({exc.error}): the grant was revoked or expired"
                    ) from exc
                raise TransientProviderError(f"refresh failed: {exc.error}") from exc
            except httpx.HTTPError as exc:
                raise TransientProviderError(f"token endpoint unreachable: {exc}") from exc
        body = dict(token)
        body.setdefault("refresh_token", refresh_token)
        return TokenSet.from_response(body)

    def revoke(self, token: str) -> None:
        """Revoke the grant; raises unless the provider confirmed it (2xx)."""
        auth = (self.credentials.client_id, self.credentials.client_secret)
        url = self.endpoints.revoke_url
        style = self.endpoints.revoke_style
        try:
            if style == "json_basic":
                response = httpx.post(url, json={"token": token}, auth=auth,
                                      timeout=self._timeout)
            elif style == "json_body":
                response = httpx.post(url, json={"client_id": auth[0], "client_secret": auth[1],
                                                 "token": token}, timeout=self._timeout)
            else:
                response = httpx.post(url, data={"token": token}, auth=auth,
                                      timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise TransientProviderError(f"revoke endpoint unreachable "
                                         f"({type(exc).__name__})") from exc
        if response.status_code >= 500:
            raise TransientProviderError(f"revoke failed with {response.status_code}")
        if response.status_code >= 300:
            raise PermanentProviderError(f"revoke refused with {response.status_code}",
                                         status=response.status_code)
