"""The per-connection rate limiter, driven by a fake clock."""

from __future__ import annotations

import bisect
import heapq
import random
import threading
import time
import tracemalloc
from dataclasses import dataclass

import pytest

from providers.errors import Throttled
from providers.ratelimit import RateLimiter, RateLimits, give_back


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
    # The tenant's slot taken before the refusal was given back, and counts no call:
    # nothing was sent.
    assert tenant.usage() == {"minute": 2, "day": 2, "in_flight": 0, "throttled": 0}
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


# -- the window is measured where the provider measures it: at arrival -------------------
#
# A discrete-event model of clients, network and provider, all on one fake clock. Each
# call is admitted by the limiter at `t`, reaches the provider after a random outbound
# delay, is answered after a random service time, and its answer reaches us (release)
# after a random inbound delay. The provider's own counter below is written from the
# documented rule (Xero: calls in a rolling window, counted when received; providers.md
# 2.4), not from the limiter's code: every call it receives at `a` must find at most
# `limit - 1` earlier calls received in (a - window, a].


@dataclass
class Traffic:
    arrivals: list[float]  # when the provider received each call
    served: list[tuple[float, float]]  # (received, answered) per call
    refusals: dict[str, int]  # our limiter's refusals by scope


def run_at_quota(limiter: RateLimiter, clock: FakeClock, clients: int, until: float,
                 outbound: tuple[float, float], service: tuple[float, float],
                 inbound: tuple[float, float], seed: int) -> Traffic:
    """Each client calls again as soon as its last call is answered or, when our limiter
    refuses, as soon as `retry_after` has passed: the tenant is held at its quota."""
    rng = random.Random(seed)
    events: list[tuple[float, int, str]] = [(clock.now, n, "try") for n in range(clients)]
    heapq.heapify(events)
    traffic = Traffic([], [], {})
    while events:
        at, client, kind = heapq.heappop(events)
        clock.now = at
        if kind == "release":
            limiter.release()
            heapq.heappush(events, (at, client, "try"))
            continue
        if at >= until:
            continue
        try:
            limiter.acquire()
        except Throttled as refused:
            traffic.refusals[refused.scope] = traffic.refusals.get(refused.scope, 0) + 1
            heapq.heappush(events, (at + (refused.retry_after or 0.0), client, "try"))
            continue
        received = at + rng.uniform(*outbound)
        answered = received + rng.uniform(*service)
        traffic.arrivals.append(received)
        traffic.served.append((received, answered))
        heapq.heappush(events, (answered + rng.uniform(*inbound), client, "release"))
    traffic.arrivals.sort()
    return traffic


def most_in_any_window(arrivals: list[float], window: float) -> int:
    """The provider's view: the most calls received in any (a - window, a]."""
    worst = 0
    for i, a in enumerate(arrivals):
        first = bisect.bisect_right(arrivals, a - window)
        worst = max(worst, i + 1 - first)
    return worst


def most_in_progress(served: list[tuple[float, float]]) -> int:
    """The provider's view of concurrency: calls received and not yet answered."""
    edges = sorted([(start, 1) for start, _ in served] + [(end, -1) for _, end in served],
                   key=lambda e: (e[0], e[1]))  # an answer at t frees before a call at t
    worst = current = 0
    for _, step in edges:
        current += step
        worst = max(worst, current)
    return worst


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_minute_quota_holds_at_the_provider_whatever_the_network_delay(seed: int) -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=60, concurrent=5, per_day=5000), clock,
                          max_wait_s=0)
    traffic = run_at_quota(limiter, clock, clients=8, until=600.0, outbound=(0.0, 3.0),
                           service=(0.05, 0.5), inbound=(0.0, 1.0), seed=seed)
    assert most_in_any_window(traffic.arrivals, 60.0) == 60  # at the quota, never over
    assert most_in_progress(traffic.served) <= 5
    assert traffic.refusals.get("minute", 0) > 0
    # Ten minutes at the quota: each call holds its slot for a minute plus its round
    # trip (at most 4.5 s), so at least 60 calls per 64.5 s get through.
    assert len(traffic.arrivals) >= 60 * 600 // 64.5
    assert limiter.usage()["in_flight"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_day_quota_holds_at_the_provider_whatever_the_network_delay(seed: int) -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=10_000, concurrent=5, per_day=50), clock,
                          max_wait_s=0)
    # As many clients as concurrent slots: every refusal is then the day's.
    traffic = run_at_quota(limiter, clock, clients=5, until=4 * 86400.0,
                           outbound=(0.0, 3600.0), service=(1.0, 60.0),
                           inbound=(0.0, 600.0), seed=seed)
    assert most_in_any_window(traffic.arrivals, 86400.0) == 50
    assert most_in_progress(traffic.served) <= 5
    assert traffic.refusals.get("day", 0) > 0
    assert len(traffic.arrivals) >= 50 * 3
    assert len(limiter._day) <= 50  # bounded by the limit, not by the traffic


def test_concurrency_at_the_quota_never_exceeds_the_cap() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=100_000, concurrent=3), clock, max_wait_s=0)
    traffic = run_at_quota(limiter, clock, clients=12, until=300.0, outbound=(0.0, 0.2),
                           service=(0.01, 0.3), inbound=(0.0, 0.2), seed=7)
    assert most_in_progress(traffic.served) == 3
    assert traffic.refusals.get("concurrent", 0) > 0
    assert limiter.usage()["in_flight"] == 0


def test_a_call_in_flight_holds_its_slot_until_a_window_after_its_answer() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=2, concurrent=5), clock, max_wait_s=0)
    limiter.acquire()
    limiter.acquire()
    clock.now = 100.0  # no answer yet: the provider may not even have received them
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.scope == "minute"
    assert info.value.retry_after == pytest.approx(60.0)  # a release, then a full window
    limiter.release()  # answered at t=100: the provider received it at t <= 100
    clock.now = 130.0
    limiter.release()
    clock.now = 159.5
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(0.5)
    clock.now = 160.0  # the provider's window (100, 160] no longer holds the first call
    limiter.acquire()
    with pytest.raises(Throttled) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(30.0)  # the second, answered at 130
    # Held now: the one in flight and the one answered at 130; three calls today.
    assert limiter.usage() == {"minute": 2, "day": 3, "in_flight": 1, "throttled": 3}


def test_the_day_slot_also_runs_from_the_answer() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=100, concurrent=5, per_day=1), clock,
                          max_wait_s=0)
    limiter.acquire()
    clock.now = 3600.0
    limiter.release()
    clock.now = 86400.0 + 1800.0  # a day after admission, half an hour short of a day
    with pytest.raises(Throttled) as info:  # after the answer
        limiter.acquire()
    assert info.value.scope == "day"
    assert info.value.retry_after == pytest.approx(1800.0)
    clock.now = 86400.0 + 3600.0
    limiter.acquire()


def test_a_cancelled_slot_counts_nothing() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=1, concurrent=1, per_day=1), clock,
                          max_wait_s=0)
    limiter.acquire()
    limiter.cancel()  # the call never left: no window holds it
    assert limiter.usage() == {"minute": 0, "day": 0, "in_flight": 0, "throttled": 0}
    limiter.acquire()
    limiter.release()
    with pytest.raises(Throttled):
        limiter.acquire()


def test_give_back_releases_a_limiter_that_cannot_cancel() -> None:
    class Counting:
        def __init__(self) -> None:
            self.released = 0

        def acquire(self) -> None:
            pass

        def release(self) -> None:
            self.released += 1

    plain = Counting()
    give_back(plain)
    assert plain.released == 1


def test_memory_stays_bounded_at_the_quota_for_a_simulated_day() -> None:
    """Issue 12: whatever the traffic, the limiter holds at most one entry per slot of
    each limit (plus 1,441 minute counts where there is no daily limit)."""
    clock = FakeClock(now=0.0)
    no_day = RateLimiter(RateLimits(per_minute=500, concurrent=10), clock, max_wait_s=0)
    biggest = 0
    # 500 calls answered within 0.1 s, then the window: 60.1 s a round, 1,437 rounds
    # (86,363.7 s) stay inside one day.
    for _ in range(1437):
        for _ in range(500):
            no_day.acquire()
            clock.advance(0.1 / 500)
            no_day.release()
        clock.advance(60.0)
        biggest = max(biggest, len(no_day._minute) + len(no_day._day) + len(no_day._day_buckets))
    assert len(no_day._day) == 0
    assert biggest <= 500 + 1441
    assert no_day.usage()["day"] == 500 * 1437
    clock.advance(86400.0)
    assert no_day.usage() == {"minute": 0, "day": 0, "in_flight": 0, "throttled": 0}


def test_day_counts_without_a_daily_limit_take_the_same_memory_for_days() -> None:
    """Issue 12: a limiter busy every minute for two days holds no more than after its
    first call (a deque of [minute, count] lists grew by ~137 bytes a busy minute,
    ~190 KB a limiter after a day)."""
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(per_minute=500, concurrent=10), clock, max_wait_s=0)
    limiter.acquire()
    limiter.release()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2 * 1440):
            clock.advance(60.0)
            for _ in range(3):
                limiter.acquire()
                limiter.release()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, grown
    # The last 1,441 minutes (now's included) hold 3 calls each.
    assert limiter.usage()["day"] == 3 * 1441
