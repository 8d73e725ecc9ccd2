"""ProviderHttp, the HTTP edge every adapter shares: bearer tokens, one refresh on 401,
transport failures and common status codes, Retry-After, and the limiter."""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from providers.errors import (
    PermanentProviderError,
    ProviderError,
    ReconnectRequired,
    RecordNotFound,
    Throttled,
    TransientProviderError,
    UnknownOutcome,
)
from providers.http import ProviderHttp, retry_after_seconds
from providers.oauth import TokenSet
from providers.ratelimit import RateLimiter, RateLimits
from providers.testing import MemoryTokenStore
from providers.tokens import ConnectionTokens
from sandbox.serve import free_port
from schemas.error_codes import ErrorCode

Handler = Callable[[httpx.Request], httpx.Response]


def rotating_refresh(token: str) -> TokenSet:
    n = int(token.rsplit("-", 1)[1]) + 1
    return TokenSet(f"tok-{n}", f"ref-{n}", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


class Edge:
    def __init__(self, handler: Handler, *, limits: RateLimits | None = None,
                 classify: Callable[[httpx.Response], ProviderError | None] = lambda r: None,
                 refresh: Callable[[str], TokenSet] = rotating_refresh,
                 expires_in: float = 3600, account: str | None = None) -> None:
        self.requests: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return handler(request)

        self.store = MemoryTokenStore(TokenSet(
            "tok-1", "ref-1", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)))
        self.limiter = RateLimiter(limits or RateLimits(per_minute=1000, concurrent=5),
                                   max_wait_s=0.1)
        tokens = ConnectionTokens(self.store, account or f"acct-{id(self)}", refresh)
        self.http = ProviderHttp(httpx.Client(transport=httpx.MockTransport(record)), tokens,
                                 self.limiter, classify, {"Accept": "application/json",
                                                          "X-Default": "1"})

    def get(self, **kw: object) -> httpx.Response:
        return self.http.request("GET", "https://api.example.test/thing", **kw)  # type: ignore[arg-type]

    def post(self, **kw: object) -> httpx.Response:
        return self.http.request("POST", "https://api.example.test/thing", write=True,
                                 json={"a": 1}, **kw)  # type: ignore[arg-type]


def ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def test_bearer_and_headers() -> None:
    edge = Edge(ok)
    edge.get(headers={"X-Default": "2", "Authorization": "Bearer forged"})
    (request,) = edge.requests
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert request.headers["X-Default"] == "2" and request.headers["Accept"] == "application/json"


def test_401_refreshes_once_and_retries() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer tok-1":
            return httpx.Response(401, json={"error": "expired"})
        return httpx.Response(200, json={"ok": True})

    edge = Edge(handler)
    assert edge.post().json() == {"ok": True}
    assert [r.headers["Authorization"] for r in edge.requests] == ["Bearer tok-1",
                                                                    "Bearer tok-2"]
    assert edge.store.refreshes == 1
    edge.get()
    assert edge.requests[-1].headers["Authorization"] == "Bearer tok-2"
    assert edge.store.refreshes == 1


def test_a_refused_fresh_token_means_reconnect() -> None:
    edge = Edge(lambda r: httpx.Response(401))
    with pytest.raises(ReconnectRequired):
        edge.get()
    assert len(edge.requests) == 2 and edge.store.refreshes == 1


def test_a_refused_refresh_propagates() -> None:
    def refused(_token: str) -> TokenSet:
        raise ReconnectRequired("invalid_grant")

    edge = Edge(lambda r: httpx.Response(401), refresh=refused)
    with pytest.raises(ReconnectRequired, match="invalid_grant"):
        edge.get()
    assert len(edge.requests) == 1


def test_near_expiry_token_is_refreshed_before_the_call() -> None:
    edge = Edge(ok, expires_in=30)
    edge.get()
    assert edge.requests[0].headers["Authorization"] == "Bearer tok-2"
    assert edge.store.refreshes == 1


def _raise(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return handler


def test_timeouts_on_writes_are_unknown_outcomes() -> None:
    edge = Edge(_raise(httpx.ReadTimeout("slow")))
    with pytest.raises(UnknownOutcome) as info:
        edge.post()
    assert info.value.code is ErrorCode.TIMEOUT and info.value.transient
    with pytest.raises(TransientProviderError) as read:
        edge.get()
    assert not isinstance(read.value, UnknownOutcome)
    assert read.value.code is ErrorCode.TIMEOUT
    assert edge.limiter.usage()["in_flight"] == 0


def test_connection_errors_are_transient() -> None:
    edge = Edge(_raise(httpx.ConnectError("refused")))
    for call in (edge.get, edge.post):
        with pytest.raises(TransientProviderError) as info:
            call()
        assert not isinstance(info.value, UnknownOutcome)  # nothing was sent
        assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert edge.limiter.usage()["in_flight"] == 0


@pytest.mark.parametrize(("status", "kind", "code"), [
    (500, TransientProviderError, ErrorCode.PROVIDER_UNAVAILABLE),
    (502, TransientProviderError, ErrorCode.PROVIDER_UNAVAILABLE),
    (503, TransientProviderError, ErrorCode.PROVIDER_UNAVAILABLE),
    (403, PermanentProviderError, ErrorCode.PERMISSION_DENIED),
    (409, TransientProviderError, ErrorCode.CONFLICT),
    (400, PermanentProviderError, ErrorCode.VALIDATION_FAILED),
    (422, PermanentProviderError, ErrorCode.VALIDATION_FAILED),
])
def test_status_codes(status: int, kind: type, code: ErrorCode) -> None:
    edge = Edge(lambda r: httpx.Response(status, text="details here"))
    with pytest.raises(ProviderError) as info:
        edge.get()
    assert type(info.value) is kind and info.value.code is code
    assert info.value.status == status


def test_the_adapter_classifier_wins() -> None:
    edge = Edge(lambda r: httpx.Response(400, json={"code": 610}),
                classify=lambda r: RecordNotFound("gone", status=r.status_code))
    with pytest.raises(RecordNotFound):
        edge.get()


def test_429_with_retry_after_seconds_and_scope() -> None:
    edge = Edge(lambda r: httpx.Response(429, headers={"Retry-After": "7",
                                                       "X-Rate-Limit-Problem": "day"}))
    with pytest.raises(Throttled) as info:
        edge.get()
    assert (info.value.retry_after, info.value.scope, info.value.status) == (7.0, "day", 429)


def test_429_with_an_http_date() -> None:
    when = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30),
                                       usegmt=True)
    edge = Edge(lambda r: httpx.Response(429, headers={"Retry-After": when}))
    with pytest.raises(Throttled) as info:
        edge.get()
    assert 25 <= (info.value.retry_after or 0) <= 31


@pytest.mark.parametrize(("header", "expected"), [
    (None, 60.0), ("0", 0.0), ("-5", 0.0), ("12.5", 12.5),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past
    ("soon", 60.0), ("", 60.0), ("1e999", 60.0), ("nan", 60.0), ("inf", 60.0),
])
def test_retry_after_parsing(header: str | None, expected: float) -> None:
    response = httpx.Response(429, headers={} if header is None else {"Retry-After": header})
    assert retry_after_seconds(response) == expected


def test_a_garbled_retry_after_is_still_a_throttle() -> None:
    edge = Edge(lambda r: httpx.Response(429, headers={"Retry-After": "in a bit"}))
    with pytest.raises(Throttled) as info:
        edge.get()
    assert info.value.retry_after == 60.0


def test_local_limiter_throttles_before_sending() -> None:
    edge = Edge(ok, limits=RateLimits(per_minute=2, concurrent=5))
    edge.get()
    edge.get()
    with pytest.raises(Throttled) as info:
        edge.get()
    assert info.value.status is None and info.value.scope == "minute"
    assert len(edge.requests) == 2


def test_concurrent_callers_share_one_refresh() -> None:
    gate = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer tok-1":
            gate.wait(2)
            return httpx.Response(401)
        return httpx.Response(200, json={})

    calls: list[str] = []

    def slow_refresh(token: str) -> TokenSet:
        calls.append(token)
        time.sleep(0.2)
        return rotating_refresh(token)

    edge = Edge(handler, refresh=slow_refresh, limits=RateLimits(per_minute=1000,
                                                                 concurrent=10))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            edge.get()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert errors == []
    assert calls == ["ref-1"]
    assert edge.limiter.usage()["in_flight"] == 0


def test_a_call_that_never_connected_holds_no_window_slot() -> None:
    """Nothing listens on the port: no provider counted the call, so our limiter does
    not either (issue 12), and a write that never left is not an unknown outcome."""
    port = free_port()
    limiter = RateLimiter(RateLimits(per_minute=1, concurrent=1, per_day=1), max_wait_s=0)
    store = MemoryTokenStore(TokenSet("tok-1", "ref-1",
                                      dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)))
    http = ProviderHttp(httpx.Client(timeout=2), ConnectionTokens(store, "acct-refused",
                                                                 rotating_refresh),
                        limiter, lambda r: None)
    for _ in range(3):
        with pytest.raises(TransientProviderError) as info:
            http.request("POST", f"http://127.0.0.1:{port}/thing", write=True, json={"a": 1})
        assert not isinstance(info.value, (Throttled, UnknownOutcome))
    assert limiter.usage() == {"minute": 0, "day": 0, "in_flight": 0, "throttled": 0}


def test_a_connect_timeout_on_a_write_is_not_an_unknown_outcome() -> None:
    edge = Edge(_raise(httpx.ConnectTimeout("no route")),
                limits=RateLimits(per_minute=1, concurrent=5))
    for _ in range(2):
        with pytest.raises(TransientProviderError) as info:
            edge.post()
        assert not isinstance(info.value, UnknownOutcome)  # no connection, nothing sent
        assert info.value.code is ErrorCode.TIMEOUT
    assert edge.limiter.usage()["minute"] == 0


def test_a_call_that_was_sent_holds_its_slot_after_the_answer() -> None:
    """A read timeout or an answer means the request was sent: the provider may have
    counted it, so its minute slot stays taken (providers/ratelimit.py)."""
    edge = Edge(_raise(httpx.ReadTimeout("slow")), limits=RateLimits(per_minute=1,
                                                                      concurrent=5))
    with pytest.raises(UnknownOutcome):
        edge.post()
    with pytest.raises(Throttled) as info:
        edge.post()
    assert info.value.status is None and info.value.scope == "minute"
    assert len(edge.requests) == 1
