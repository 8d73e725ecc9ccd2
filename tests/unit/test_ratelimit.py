"""The per-connection rate limiter, driven by a fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from providers.errors import Throttled
from providers.ratelimit import RateLimiter, RateLimits


class FakeClock:
    """Time stands still unless moved; `step` advances it on every reading."""

    def __init__(self, now: float = 1000.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _take(limiter: RateLimiter, n: int) -> None:
    for _ in range(n):
        limiter.acquire()
        limiter.release()


def test_per_minute_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=3, concurrent=10), clock, max_wait_s=0)
    _take(limiter, 2)
    clock.advance(20)
    _take(limiter, 1)
    clock.advance(10)  # 30 s after the first call
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.scope == "minute"
    assert info.value.retry_after == pytest.approx(30.0)
    assert info.value.status is None  # local, not the provider's 429
    assert limiter.usage() == {"minute": 3, "day": 3, "in_flight": 0, "throttled": 1}
    clock.advance(30)  # the first two calls leave the window
    _take(limiter, 2)
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(20.0)  # the third call expires next


def test_refused_calls_do_not_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=1, concurrent=10), clock, max_wait_s=0)
    _take(limiter, 1)
    for _ in range(5):
        with pytest.raises(Throttled):
            limiter.acquire()
    assert limiter.usage()["minute"] == 1
    assert limiter.throttled_total == 5
    clock.advance(60)
    _take(limiter, 1)


def test_per_day_quota_with_retry_after_to_the_oldest_call() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=100, concurrent=5, per_day=5), clock,
                          max_wait_s=2.0)
    for _ in range(5):
        _take(limiter, 1)
        clock.advance(3600)  # one call an hour
    # 5 calls at t=0, 1h, 2h, 3h, 4h; now t=5h: the oldest expires at t=24h.
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.scope == "day"
    assert info.value.retry_after == pytest.approx(86400 - 5 * 3600)
    clock.now = 86400 - 10
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(10)
    clock.now = 86400.0
    _take(limiter, 1)  # the call from t=0 has left the day window
    assert limiter.usage()["day"] == 5


def test_day_scope_wins_over_minute_scope() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=2, concurrent=5, per_day=2), clock,
                          max_wait_s=0)
    _take(limiter, 2)
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.scope == "day"
    assert info.value.retry_after == pytest.approx(86400)


def test_a_short_wait_is_taken_instead_of_throttling() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=1, concurrent=5), clock, max_wait_s=2.0)
    _take(limiter, 1)
    clock.now = 59.8
    clock.step = 0.05  # time moves on while the caller waits
    started = time.monotonic()
    limiter.acquire()
    limiter.release()
    assert clock.now >= 60.0
    assert time.monotonic() - started < 2.0
    assert limiter.throttled_total == 0


def test_concurrency_cap_blocks_until_release() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=100, concurrent=2), clock, max_wait_s=5.0)
    limiter.acquire()
    limiter.acquire()
    got = threading.Event()

    def third() -> None:
        limiter.acquire()
        got.set()

    worker = threading.Thread(target=third, daemon=True)
    worker.start()
    assert not got.wait(0.3)  # two in flight: the third waits
    assert limiter.usage()["in_flight"] == 2
    limiter.release()
    assert got.wait(2.0)
    worker.join(2.0)
    assert limiter.usage()["in_flight"] == 2
    limiter.release()
    limiter.release()
    assert limiter.usage()["in_flight"] == 0


def test_concurrency_cap_throttles_when_the_wait_is_too_long() -> None:
    clock = FakeClock(step=0.01)
    limiter = RateLimiter(RateLimits(per_minute=100, concurrent=1), clock, max_wait_s=0.02)
    limiter.acquire()
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.scope == "concurrent"
    assert (info.value.retry_after or 0) >= 0.05
    limiter.release()
    _take(limiter, 1)


def test_many_threads_never_exceed_the_cap() -> None:
    limiter = RateLimiter(RateLimits(per_minute=10_000, concurrent=3), max_wait_s=10.0)
    peak = 0
    current = 0
    guard = threading.Lock()

    def call() -> None:
        nonlocal peak, current
        for _ in range(10):
            limiter.acquire()
            with guard:
                current += 1
                peak = max(peak, current)
            time.sleep(0.002)
            with guard:
                current -= 1
            limiter.release()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak <= 3
    assert limiter.usage()["minute"] == 80
    assert limiter.usage()["in_flight"] == 0


def test_limiter_chain_takes_all_limits_or_none() -> None:
    from providers.ratelimit import LimiterChain

    now = [0.0]
    tenant = RateLimiter(RateLimits(per_minute=100, concurrent=5), clock=lambda: now[0],
                         max_wait_s=0)
    app = RateLimiter(RateLimits(per_minute=2, concurrent=100), clock=lambda: now[0],
                      max_wait_s=0)
    chain = LimiterChain([tenant, app])
    chain.acquire()
    chain.release()
    chain.acquire()
    chain.release()
    with pytest.raises(Throttled) as refused:
        chain.acquire()  # the app-wide minute is used up
    assert refused.value.scope == "minute"
    # The tenant's slot taken before the refusal was given back.
    assert tenant.usage()["in_flight"] == 0
    assert app.usage()["in_flight"] == 0


def test_no_daily_limit_keeps_no_timestamp_per_request_for_a_day() -> None:
    """Issue 12: without a daily limit, a busy connection must not hold every request's
    time for 24 h; the day's use is still reported, from counts per minute."""
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=1000, concurrent=1000), clock)
    for _ in range(120):  # two hours at 500 requests a minute
        for _ in range(500):
            limiter.acquire()
            limiter.release()
        clock.advance(60)
    assert len(limiter._day) == 0
    assert len(limiter._day_buckets) <= 1441
    assert len(limiter._minute) <= 1000
    assert limiter.usage()["day"] == 60_000
    clock.advance(86400 - 60 * 60)  # the first hour's requests leave the day window
    assert limiter.usage()["day"] == 30_000
    clock.advance(3600)
    assert limiter.usage() == {"minute": 0, "day": 0, "in_flight": 0, "throttled": 0}


def test_a_daily_limit_still_counts_each_request_for_24_hours() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(per_minute=1000, concurrent=10, per_day=3000), clock)
    for _ in range(3):
        _take(limiter, 1000)
        clock.advance(60)
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.scope == "day" and limiter.usage()["day"] == 3000
