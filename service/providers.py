"""Builds one provider adapter per connection, with its tokens, limiter and HTTP client."""

from __future__ import annotations

import threading

import httpx

from providers.errors import PermanentProviderError
from providers.http import ProviderHttp
from providers.oauth import OAuthFlow
from providers.port import AccountingProvider
from providers.ratelimit import Limiter, LimiterChain, RateLimiter, RateLimits
from providers.tokens import ConnectionTokens
from schemas.error_codes import ErrorCode
from service.config import Settings
from state.connections import ConnectionInfo, ConnectionStore

__all__ = ["QBO_BATCH_LIMITS", "ProviderDirectory"]

# QuickBooks throttles `batch` calls on their own: 40 a minute per realm and app (Intuit,
# "API call limits and throttles"; providers.md 1.5). Each batch call also takes a slot
# of the connection's limiter (500 a minute per realm, "including batch requests").
QBO_BATCH_LIMITS = RateLimits(per_minute=40, concurrent=10)


class ProviderDirectory:
    def __init__(self, settings: Settings, connections: ConnectionStore) -> None:
        self._settings = settings
        self._connections = connections
        self._lock = threading.Lock()
        self._adapters: dict[tuple[str, str, str], AccountingProvider] = {}
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._batch_limiters: dict[str, RateLimiter] = {}  # QuickBooks, by account
        # Limits across all of this app's connections (Xero: 10,000 calls a minute).
        self._app_limiters = {
            name: RateLimiter(RateLimits(per_minute=config.app_per_minute, concurrent=1_000_000),
                              name=f"{name}/app")
            for name, config in settings.providers.items() if config.app_per_minute
        }
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.http_timeout_s, connect=5.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    def oauth(self, provider: str) -> OAuthFlow:
        config = self._settings.providers[provider]
        return OAuthFlow(config.oauth, config.credentials, self._settings.http_timeout_s)

    def limiter(self, account_id: str, provider: str) -> RateLimiter:
        with self._lock:
            key = (account_id, provider)
            if key not in self._limiters:
                self._limiters[key] = RateLimiter(self._settings.providers[provider].limits,
                                                  name=f"{provider}/{account_id}")
            return self._limiters[key]

    def batch_limiter(self, account_id: str) -> RateLimiter:
        """The limiter of one QuickBooks connection's `batch` calls."""
        with self._lock:
            if account_id not in self._batch_limiters:
                self._batch_limiters[account_id] = RateLimiter(
                    QBO_BATCH_LIMITS, name=f"quickbooks-batch/{account_id}")
            return self._batch_limiters[account_id]

    def limiters(self) -> dict[tuple[str, str], RateLimiter]:
        with self._lock:
            return dict(self._limiters)

    def adapter(self, info: ConnectionInfo) -> AccountingProvider:
        key = (info.account_id, info.provider, info.tenant_id)
        with self._lock:
            cached = self._adapters.get(key)
        if cached is not None:
            return cached
        adapter = self._build(info)
        with self._lock:
            return self._adapters.setdefault(key, adapter)

    def forget(self, account_id: str) -> None:
        with self._lock:
            for key in [k for k in self._adapters if k[0] == account_id]:
                del self._adapters[key]

    def _build(self, info: ConnectionInfo) -> AccountingProvider:
        config = self._settings.providers.get(info.provider)
        if config is None:
            raise PermanentProviderError(f"unknown provider {info.provider!r}",
                                         code=ErrorCode.UNSUPPORTED)
        flow = self.oauth(info.provider)
        tokens = ConnectionTokens(self._connections, info.account_id, flow.refresh)
        connection_limiter = self.limiter(info.account_id, info.provider)
        app_limiter = self._app_limiters.get(info.provider)
        limiter: Limiter = (LimiterChain([connection_limiter, app_limiter]) if app_limiter
                            else connection_limiter)
        if info.provider == "quickbooks":
            from providers.quickbooks.adapter import QuickBooksAdapter, classify_quickbooks_error

            http = ProviderHttp(self._client, tokens, limiter, classify_quickbooks_error,
                                {"Accept": "application/json"}, "quickbooks")
            return QuickBooksAdapter(http, config.api_base, info.tenant_id,
                                     self.batch_limiter(info.account_id))
        if info.provider == "xero":
            from providers.xero.adapter import XeroAdapter, classify_xero_error

            http = ProviderHttp(self._client, tokens, limiter, classify_xero_error,
                                {"Accept": "application/json", "xero-tenant-id": info.tenant_id},
                                "xero")
            return XeroAdapter(http, config.api_base)
        from providers.freshbooks.adapter import FreshBooksAdapter, classify_freshbooks_error

        http = ProviderHttp(self._client, tokens, limiter, classify_freshbooks_error,
                            {"Accept": "application/json"}, "freshbooks")
        return FreshBooksAdapter(http, config.api_base, info.tenant_id)

    def close(self) -> None:
        self._client.close()
