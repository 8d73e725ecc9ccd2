"""The HTTP edge shared by the adapters: limiter, bearer token, one refresh on 401,
and the classification of transport failures and common status codes.

Provider-specific error bodies are mapped by the adapter's `classify` callback, which
sees every non-2xx response first.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from prometheus_client import Counter

from providers.errors import (
    PermanentProviderError,
    ProviderError,
    ReconnectRequired,
    Throttled,
    TransientProviderError,
    UnknownOutcome,
)
from providers.ratelimit import Limiter, give_back
from providers.tokens import ConnectionTokens
from schemas.error_codes import ErrorCode

__all__ = ["PROVIDER_REQUESTS", "ProviderHttp", "retry_after_seconds", "writes_sent"]

PROVIDER_REQUESTS = Counter("bc_provider_requests_total", "HTTP calls to providers",
                            ["provider", "outcome"])

Classifier = Callable[[httpx.Response], ProviderError | None]

_sent = threading.local()


def writes_sent() -> int:
    """Write requests this thread has handed to the network so far (monotonic).

    The engine compares it before and after a write that our own limiter deferred: when
    it did not move, nothing reached the provider and the write intent is not uncertain.
    """
    return getattr(_sent, "count", 0)


def retry_after_seconds(response: httpx.Response, default: float = 60.0) -> float:
    value = response.headers.get("Retry-After")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default  # a garbled header still means "throttled": wait the default
        seconds = parsed.timestamp() - time.time()
    return max(seconds, 0.0) if math.isfinite(seconds) else default


def _with_query(url: str, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`params` written into the URL, as httpx would write them: httpx then parses the
    URL once instead of twice (once more to merge the params, which for a QuickBooks
    query of an IN list of ids is a few thousand characters checked one by one). A URL
    that carries a query already is left to httpx, which merges the two."""
    params = kwargs.get("params")
    if params is None or "?" in url:
        return url, kwargs
    rest = {k: v for k, v in kwargs.items() if k != "params"}
    query = str(httpx.QueryParams(params))
    return (f"{url}?{query}" if query else url), rest


class ProviderHttp:
    def __init__(self, client: httpx.Client, tokens: ConnectionTokens, limiter: Limiter,
                 classify: Classifier, headers: Mapping[str, str] | None = None,
                 provider: str = "") -> None:
        self._provider = provider
        self._client = client
        self._tokens = tokens
        self._limiter = limiter
        self._classify = classify
        self._headers = dict(headers or {})

    def request(self, method: str, url: str, *, write: bool = False,
                headers: Mapping[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        url, kwargs = _with_query(url, kwargs)
        token = self._tokens.access_token()
        response = self._send(method, url, token, write, headers, kwargs)
        if response.status_code == 401:
            token = self._tokens.refresh_after_rejection(token)
            response = self._send(method, url, token, write, headers, kwargs)
            if response.status_code == 401:
                raise ReconnectRequired("the provider refuses a freshly refreshed token",
                                        status=401)
        if response.is_success:
            PROVIDER_REQUESTS.labels(self._provider, "ok").inc()
            return response
        error = self._error(response)
        PROVIDER_REQUESTS.labels(self._provider, error.code.value).inc()
        raise error

    def _send(self, method: str, url: str, token: str, write: bool,
              headers: Mapping[str, str] | None, kwargs: dict[str, Any]) -> httpx.Response:
        merged = {**self._headers, **(headers or {}), "Authorization": f"Bearer {token}"}
        self._limiter.acquire()
        if write:
            _sent.count = writes_sent() + 1
        # The limiter holds the slot from here until the answer, then one window on
        # (providers/ratelimit.py): the provider counted the call at some moment between.
        # A call that never got a connection reached no provider and is given back.
        reached = True
        try:
            return self._client.request(method, url, headers=merged, **kwargs)
        except httpx.TimeoutException as exc:
            reached = not isinstance(exc, httpx.ConnectTimeout)
            if write and reached:
                raise UnknownOutcome(f"{method} {url} timed out; the write may have been "
                                     "applied") from exc
            raise TransientProviderError(f"{method} {url} timed out",
                                         code=ErrorCode.TIMEOUT) from exc
        except httpx.TransportError as exc:
            reached = not isinstance(exc, httpx.ConnectError)
            raise TransientProviderError(f"{method} {url}: {type(exc).__name__}") from exc
        finally:
            if reached:
                self._limiter.release()
            else:
                give_back(self._limiter)

    def _error(self, response: httpx.Response) -> ProviderError:
        specific = self._classify(response)
        if specific is not None:
            return specific
        status = response.status_code
        if status == 429:
            scope = response.headers.get("X-Rate-Limit-Problem", "minute")
            return Throttled(f"throttled by the provider ({scope})",
                             retry_after=retry_after_seconds(response), scope=scope)
        if status >= 500:
            return TransientProviderError(f"provider answered {status}", status=status,
                                          retry_after=None)
        if status == 403:
            return PermanentProviderError("the provider refused access", status=status,
                                          code=ErrorCode.PERMISSION_DENIED)
        if status == 409:
            return TransientProviderError("the record is being modified by another request",
                                          status=status, code=ErrorCode.CONFLICT)
        return PermanentProviderError(f"provider answered {status}: {response.text[:300]}",
                                      status=status)
