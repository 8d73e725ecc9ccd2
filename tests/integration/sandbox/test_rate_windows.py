"""The simulators' rate windows slide and count a call when it arrives.

This is what the client's limiter is built against (providers/ratelimit.py, issue 12):
- Xero: "Minute Limit: 60 calls in a rolling 60 second window", "Daily Limit: 5000 calls
  in a rolling 24 hour window" (Xero's API limits page as quoted in xero-node issue
  #262; figures confirmed by Xero staff in xero-node #634; providers.md 2.4).
- QuickBooks: "500 requests per minute per realm ID" (developer.intuit.com
  .../learn/limits-and-throttles; providers.md 1.5). Intuit does not say whether the
  minute is fixed or rolling; the simulator uses a rolling one, the stricter reading: a
  client that never exceeds the limit in any 60 s span also never exceeds it in any
  fixed minute.

A fixed (calendar) minute would let a burst at the end of one minute and another at the
start of the next through; the checks below tell the two apart.

Neither provider says whether a refused call counts against its window; the simulators
count only admitted calls (ASSUMPTION, as before this test). The client's limiter does
not depend on it: it never sends a call it has no slot for.
"""

from __future__ import annotations

import uuid

import httpx

from sandbox.quickbooks.app import QuickBooksLimits
from sandbox.quickbooks.app import create_app as create_quickbooks
from sandbox.serve import serve_in_thread
from sandbox.xero.app import ManualClock
from sandbox.xero.app import create_app as create_xero
from sandbox.xero.limits import XeroLimits

START = 1_700_000_040.0  # on a calendar minute boundary (28,333,334 x 60 s)


def test_xero_minute_window_rolls_with_each_call() -> None:
    clock = ManualClock(START)
    limits = XeroLimits(per_minute=3, per_day=1000, app_per_minute=1000)
    with serve_in_thread(create_xero(limits=limits, clock=clock)) as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        tenant = str(uuid.uuid4())
        grant = http.post("/_sandbox/grants", json={"tenant": tenant}).json()
        headers = {"Authorization": f"Bearer {grant['access_token']}",
                   "xero-tenant-id": tenant}

        def call() -> httpx.Response:
            return http.get("/api.xro/2.0/Organisation", headers=headers)

        assert [call().status_code for _ in range(2)] == [200, 200]  # at t = 0
        clock.advance(40)
        assert call().status_code == 200  # t = 40: three in (-20, 40]
        clock.advance(19.5)
        refused = call()  # t = 59.5: still three in (-0.5, 59.5]
        assert refused.status_code == 429
        assert refused.headers["X-Rate-Limit-Problem"] == "minute"
        assert refused.headers["Retry-After"] == "1"  # the two from t = 0 leave at t = 60
        clock.advance(0.5)
        # t = 60: the calls from t = 0 have left (0, 60]; the refused one never counted.
        assert [call().status_code for _ in range(2)] == [200, 200]
        clock.advance(1)
        # t = 61: (1, 61] holds t = 40 and the two at t = 60. A calendar minute would
        # have let this through: the one that began at t = 60 holds only two.
        assert call().status_code == 429
        clock.advance(39)
        assert call().status_code == 200  # t = 100: the call from t = 40 has left


def test_xero_day_window_rolls_with_each_call() -> None:
    clock = ManualClock(START)
    limits = XeroLimits(per_minute=1000, per_day=2, app_per_minute=1000,
                        access_token_ttl_s=10 * 86400.0)
    with serve_in_thread(create_xero(limits=limits, clock=clock)) as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        tenant = str(uuid.uuid4())
        grant = http.post("/_sandbox/grants", json={"tenant": tenant}).json()
        headers = {"Authorization": f"Bearer {grant['access_token']}",
                   "xero-tenant-id": tenant}

        def call() -> httpx.Response:
            return http.get("/api.xro/2.0/Organisation", headers=headers)

        assert call().status_code == 200  # t = 0
        clock.advance(20 * 3600)
        assert call().status_code == 200  # t = 20 h
        clock.advance(4 * 3600 - 1)
        refused = call()  # t = 24 h - 1 s
        assert refused.status_code == 429 and refused.headers["X-Rate-Limit-Problem"] == "day"
        assert refused.headers["Retry-After"] == "1"
        clock.advance(1)
        assert call().status_code == 200  # t = 24 h: the first call has left
        assert call().status_code == 429  # t = 20 h and t = 24 h in the window


def test_quickbooks_minute_window_rolls_with_each_call() -> None:
    clock = ManualClock(START)
    limits = QuickBooksLimits(requests_per_minute=3)
    with serve_in_thread(create_quickbooks(limits=limits, clock=clock)) as base, \
            httpx.Client(base_url=base, timeout=10) as http:
        realm = f"9341{uuid.uuid4().int % 10**12:012d}"
        grant = http.post("/_sandbox/grants", json={"tenant": realm}).json()
        headers = {"Authorization": f"Bearer {grant['access_token']}",
                   "Accept": "application/json"}

        def call() -> int:
            return http.get(f"/v3/company/{realm}/companyinfo/{realm}", headers=headers,
                            params={"minorversion": "75"}).status_code

        assert [call(), call()] == [200, 200]  # t = 0
        clock.advance(40)
        assert call() == 200  # t = 40
        clock.advance(19.5)
        assert call() == 429  # t = 59.5
        clock.advance(0.5)
        assert [call(), call()] == [200, 200]  # t = 60: the refused call never counted
        clock.advance(1)
        assert call() == 429  # t = 61: (1, 61] holds three
        clock.advance(39)
        assert call() == 200  # t = 100
