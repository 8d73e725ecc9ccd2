"""A tenant driven at its quota across several window turnovers gets no 429.

Real HTTP to the simulators. Two things make it run in seconds and make it bite:

- Time is scaled: the simulator and our limiter read the same clock, which runs `SCALE`
  times faster than the wall clock, so a 60 s window passes in a couple of seconds. The
  windows, limits and Retry-After values are the documented ones (providers.md 1.5, 2.4).
- Every request is held back by the client's transport for a random time before it goes
  on the wire (and after the answer comes back). That is the gap a real network puts
  between our limiter admitting a request and the provider counting it; it varies per
  request, so a request admitted later can arrive relatively earlier. A limiter that
  measures its window from admission then lets the provider see one call too many at
  each window turnover.

The driver behaves like the engine: a refusal by our own limiter (`Throttled` with no
HTTP status) defers the caller for `retry_after`, then it tries again at once, so the
tenant stays at its quota the whole run.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from providers.errors import Throttled
from providers.http import ProviderHttp
from providers.oauth import ClientCredentials, OAuthEndpoints, OAuthFlow, TokenSet
from providers.quickbooks.adapter import classify_quickbooks_error
from providers.ratelimit import RateLimiter, RateLimits
from providers.testing import MemoryTokenStore
from providers.tokens import ConnectionTokens
from providers.xero.adapter import classify_xero_error
from sandbox.quickbooks.app import QuickBooksLimits
from sandbox.quickbooks.app import create_app as create_quickbooks
from sandbox.serve import serve_in_thread
from sandbox.xero.app import create_app as create_xero
from sandbox.xero.limits import XeroLimits


class ScaledClock:
    """Epoch seconds that run `scale` times faster than the wall clock."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self._epoch = time.time()
        self._start = time.monotonic()

    def __call__(self) -> float:
        return self._epoch + (time.monotonic() - self._start) * self.scale

    def sleep(self, simulated_s: float) -> None:
        time.sleep(max(simulated_s, 0.0) / self.scale)


class NetworkDelay(httpx.BaseTransport):
    """Holds each request back a random time before sending it and after its answer."""

    def __init__(self, inner: httpx.BaseTransport, outbound_s: tuple[float, float],
                 inbound_s: tuple[float, float], seed: int) -> None:
        self._inner = inner
        self._outbound = outbound_s
        self._inbound = inbound_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _draw(self, span: tuple[float, float]) -> float:
        with self._lock:
            return self._rng.uniform(*span)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self._draw(self._outbound))
        response = self._inner.handle_request(request)
        response.read()
        time.sleep(self._draw(self._inbound))
        return response

    def close(self) -> None:
        self._inner.close()


@dataclass
class Tally:
    ok: int = 0
    provider_429: list[str] = field(default_factory=list)  # X-Rate-Limit-Problem or ""
    local: dict[str, int] = field(default_factory=dict)  # our own refusals by scope
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def drive(request: Callable[[], Any], clock: ScaledClock, threads: int,
          simulated_s: float) -> Tally:
    """Call `request` from `threads` threads until `simulated_s` of scaled time passed."""
    tally = Tally()
    end = clock() + simulated_s

    def worker() -> None:
        while clock() < end:
            try:
                request()
            except Throttled as exc:
                with tally.lock:
                    if exc.status is None:
                        tally.local[exc.scope] = tally.local.get(exc.scope, 0) + 1
                    else:
                        tally.provider_429.append(exc.scope)
                clock.sleep(exc.retry_after or 0.0)
            except Exception as exc:  # any other failure is recorded and fails the test
                with tally.lock:
                    tally.errors.append(repr(exc))
                return
            else:
                with tally.lock:
                    tally.ok += 1

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not any(t.is_alive() for t in pool)
    return tally


def _client(seed: int, outbound_s: tuple[float, float],
            inbound_s: tuple[float, float] = (0.0, 0.005)) -> httpx.Client:
    return httpx.Client(timeout=30, transport=NetworkDelay(httpx.HTTPTransport(), outbound_s,
                                                           inbound_s, seed))


# -- Xero: 60 per rolling minute, 5 concurrent, 5,000 per rolling 24 h per tenant --------

XERO_SCALE = 30.0  # a minute in 2 s


@pytest.fixture(scope="module")
def xero_clock() -> ScaledClock:
    return ScaledClock(XERO_SCALE)


@pytest.fixture(scope="module")
def xero(xero_clock: ScaledClock) -> Iterator[str]:
    # Documented limits; only the access token lives longer so the run needs no refresh.
    limits = XeroLimits(access_token_ttl_s=10 * 86400.0)
    with serve_in_thread(create_xero(limits=limits, clock=xero_clock)) as url:
        yield url


def xero_http(base: str, limits: RateLimits, clock: ScaledClock, seed: int,
              outbound_s: tuple[float, float]) -> tuple[ProviderHttp, RateLimiter, str]:
    tenant = str(uuid.uuid4())
    with httpx.Client(base_url=base, timeout=10) as sim:
        grant = sim.post("/_sandbox/grants", json={"tenant": tenant})
        assert grant.status_code == 200, grant.text
    flow = OAuthFlow(
        OAuthEndpoints(authorize_url=f"{base}/identity/connect/authorize",
                       token_url=f"{base}/connect/token",
                       revoke_url=f"{base}/connect/revocation",
                       scope="offline_access accounting.contacts", revoke_style="form_basic"),
        ClientCredentials("blueclerk-local", "local-secret", "http://127.0.0.1/cb"))
    tokens = ConnectionTokens(MemoryTokenStore(TokenSet.from_response(grant.json())), tenant,
                              flow.refresh)
    # max_wait_s=0: every wait goes through the driver's scaled sleep, as the engine defers.
    limiter = RateLimiter(limits, clock=clock, max_wait_s=0.0, name=f"xero/{tenant}")
    http = ProviderHttp(_client(seed, outbound_s), tokens, limiter, classify_xero_error,
                        {"xero-tenant-id": tenant, "Accept": "application/json"}, "xero")
    return http, limiter, f"{base}/api.xro/2.0/Organisation"


def test_xero_tenant_at_its_minute_quota_gets_no_429(xero: str,
                                                      xero_clock: ScaledClock) -> None:
    windows = 6
    # Up to 1.2 s (40 ms wall) between admission and arrival, varying per request.
    http, limiter, url = xero_http(xero, RateLimits(per_minute=60, concurrent=5, per_day=5000),
                                   xero_clock, seed=12, outbound_s=(0.0, 0.04))
    tally = drive(lambda: http.request("GET", url), xero_clock, threads=8,
                  simulated_s=60.0 * windows)
    assert tally.errors == []
    assert tally.provider_429 == []
    # The tenant really was at its quota: our limiter turned calls away for the minute
    # limit, and the provider answered at least the quota of all but the first and last
    # (partial) windows.
    assert tally.local.get("minute", 0) > 0
    assert tally.ok >= 60 * (windows - 2)
    assert tally.ok <= 60 * (windows + 1)  # never more than the quota per window
    assert limiter.usage()["in_flight"] == 0


def test_xero_tenant_at_its_day_quota_gets_no_429() -> None:
    """The rolling 24 h window, with a day passing in a few seconds (minutes are then
    milliseconds, so the minute limit is lifted on both sides to isolate the day)."""
    clock = ScaledClock(86400 / 3)
    limits = XeroLimits(per_minute=1_000_000, app_per_minute=1_000_000, per_day=40,
                        access_token_ttl_s=1e9, refresh_idle_s=1e12)
    with serve_in_thread(create_xero(limits=limits, clock=clock)) as base:
        # Up to ~35 simulated minutes between admission and arrival.
        http, limiter, url = xero_http(base, RateLimits(per_minute=1_000_000, concurrent=5,
                                                        per_day=40),
                                       clock, seed=24, outbound_s=(0.0, 0.015))
        days = 4
        tally = drive(lambda: http.request("GET", url), clock, threads=8,
                      simulated_s=86400.0 * days)
    assert tally.errors == []
    assert tally.provider_429 == []
    assert tally.local.get("day", 0) > 0
    assert 40 * (days - 1) <= tally.ok <= 40 * (days + 1)
    assert limiter.usage()["in_flight"] == 0


# -- QuickBooks: 500 per minute, 10 concurrent per realm --------------------------------

QBO_SCALE = 10.0  # a minute in 6 s: 500 calls a minute is then ~83 a second


def test_quickbooks_realm_at_its_minute_quota_gets_no_429() -> None:
    clock = ScaledClock(QBO_SCALE)
    with serve_in_thread(create_quickbooks(limits=QuickBooksLimits(), clock=clock)) as base:
        realm = f"9341{uuid.uuid4().int % 10**12:012d}"
        with httpx.Client(base_url=base, timeout=10) as sim:
            grant = sim.post("/_sandbox/grants", json={"tenant": realm})
            assert grant.status_code == 200, grant.text
        flow = OAuthFlow(
            OAuthEndpoints(authorize_url=f"{base}/connect/oauth2",
                           token_url=f"{base}/oauth2/v1/tokens/bearer",
                           revoke_url=f"{base}/v2/oauth2/tokens/revoke",
                           scope="com.intuit.quickbooks.accounting",
                           revoke_style="json_basic"),
            ClientCredentials("blueclerk-local", "local-secret", "http://localhost/callback"))
        tokens = ConnectionTokens(MemoryTokenStore(TokenSet.from_response(grant.json())),
                                  realm, flow.refresh)
        limiter = RateLimiter(RateLimits(per_minute=500, concurrent=10), clock=clock,
                              max_wait_s=0.0, name=f"quickbooks/{realm}")
        # Up to 0.5 s (50 ms wall) between admission and arrival.
        http = ProviderHttp(_client(500, (0.0, 0.05)), tokens, limiter,
                            classify_quickbooks_error, {"Accept": "application/json"},
                            "quickbooks")
        url = f"{base}/v3/company/{realm}/companyinfo/{realm}"
        windows = 3
        tally = drive(lambda: http.request("GET", url, params={"minorversion": "75"}),
                      clock, threads=16, simulated_s=60.0 * windows)
    assert tally.errors == []
    assert tally.provider_429 == []
    assert tally.local.get("minute", 0) > 0
    assert 500 * (windows - 1) <= tally.ok <= 500 * (windows + 1)
    assert limiter.usage()["in_flight"] == 0
