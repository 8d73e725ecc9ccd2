"""A client-side rate limiter per connection, sized from the provider's published limits.

The aim is that the provider's 429 is the exception: calls wait briefly for a slot, and
when the wait would be long the limiter raises `Throttled` so the engine defers the
tenant's work (freeing the worker thread) instead of blocking other tenants.

When a window slot is free again: the provider counts a call when it receives it, in a
window that slides with its own clock (Xero: "60 calls in a rolling 60 second window",
"5000 calls in a rolling 24 hour window", developer.xero.com API limits page as quoted
in xero-node issue #634 and #262; Intuit: 500 requests per minute per realm,
developer.intuit.com .../learn/limits-and-throttles). We never know that moment, only
that it lies between our admission and the answer (`release`). So a call holds its slot
from `acquire` until `release` plus the window: at any instant T, every call the
provider counted in its window (T - w, T] was admitted by T and released after T - w,
hence is still held here, and we never hold more than the limit. Counting from
admission instead (the old rule) frees the slot while a slow call may not even have
arrived, and the provider sees more than its limit at window turnovers. The argument
assumes the provider has the request by the time we give up on it; a request still
queued in the network after our client timed out could arrive later (not handled).

The price is the round trip: at steady state a slot turns over every w + latency
instead of every w (0.5% of Xero's minute at 300 ms).
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from providers.errors import Throttled

__all__ = ["Cancellable", "Limiter", "LimiterChain", "RateLimiter", "RateLimits", "give_back"]

log = structlog.get_logger("ratelimit")

MINUTE_S = 60.0
DAY_S = 86400.0
# The minutes a day's window can touch: at minute M, counts of minutes M - 1440 .. M.
_DAY_MINUTES = int(DAY_S // MINUTE_S) + 1


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_minute: int
    concurrent: int
    per_day: int | None = None


class RateLimiter:
    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic,
                 max_wait_s: float = 2.0, name: str = "") -> None:
        self.limits = limits
        self.name = name
        self._last_warning = -1e18
        self._clock = clock
        self._max_wait = max_wait_s
        self._lock = threading.Condition()
        # Calls admitted and not yet answered: each holds a minute slot, a day slot (with
        # a daily limit) and a concurrency slot.
        self._in_flight = 0
        # Release times of answered calls still inside a window, oldest first (releases
        # are appended under the lock from a monotonic clock). A call stays counted until
        # its release + the window. Bounded by the limits: at most per_minute entries
        # here and per_day in `_day`, because a slot is only taken when one is free.
        self._minute: deque[float] = deque()
        # Kept only where a daily limit exists: a busy connection without one would
        # otherwise hold ~a million floats for nothing.
        self._day: deque[float] = deque()
        # Without a daily limit the day's use is still reported (usage()), from counts
        # per minute of release in a ring indexed by minute number % 1,441: 5.6 KB
        # whatever the traffic and however long the process runs. (A deque of [minute,
        # count] lists grew by ~137 bytes per busy minute, to ~190 KB per limiter after
        # a day: ~77 MB for 400 busy limiters, issue 12.) Empty with a daily limit.
        self._day_buckets = array("I", [0]) * (_DAY_MINUTES if limits.per_day is None else 0)
        self._day_minute = int(clock() // MINUTE_S)  # the newest minute the ring holds
        self._day_count = 0  # the ring's sum
        self.throttled_total = 0

    def _prune(self, now: float) -> None:
        # Written as `release + window <= now`, the same sum acquire() waits for, so
        # rounding can never leave a slot both unexpired and due.
        while self._minute and self._minute[0] + MINUTE_S <= now:
            self._minute.popleft()
        while self._day and self._day[0] + DAY_S <= now:
            self._day.popleft()
        self._advance_day(int(now // MINUTE_S))

    def _advance_day(self, minute: int) -> None:
        """Move the ring to `minute`: the slots it reuses held minutes more than a day
        old (minute - 1,441 and before), whose requests leave the day's count."""
        ring = self._day_buckets
        if not ring or minute <= self._day_minute:
            return
        if minute - self._day_minute >= _DAY_MINUTES:
            self._day_buckets = array("I", [0]) * _DAY_MINUTES
            self._day_count = 0
        else:
            for m in range(self._day_minute + 1, minute + 1):
                slot = m % _DAY_MINUTES
                self._day_count -= ring[slot]
                ring[slot] = 0
        self._day_minute = minute

    def _minute_held(self) -> int:
        return self._in_flight + len(self._minute)

    def _day_held(self) -> int:
        return self._in_flight + len(self._day)

    def acquire(self) -> None:
        """Take one request slot, waiting at most `max_wait_s`; else raise Throttled."""
        deadline = self._clock() + self._max_wait
        with self._lock:
            while True:
                now = self._clock()
                self._prune(now)
                ready = now  # when a slot may be free; calls in flight free nothing
                scope = ""  # before their release + the window
                day = self.limits.per_day
                if day is not None and self._day_held() >= day:
                    ready, scope = (self._day[0] if self._day else now) + DAY_S, "day"
                elif self._minute_held() >= self.limits.per_minute:
                    ready = (self._minute[0] if self._minute else now) + MINUTE_S
                    scope = "minute"
                elif self._in_flight >= self.limits.concurrent:
                    ready, scope = now + 0.05, "concurrent"
                if not scope:
                    self._in_flight += 1
                    self._warn_if_near(now)
                    return
                if ready > deadline:
                    self.throttled_total += 1
                    raise Throttled(f"local {scope} limit reached",
                                    retry_after=max(ready - now, 0.05), scope=scope,
                                    status=None)
                # A release wakes us early (concurrency); a window slot frees by time.
                self._lock.wait(timeout=ready - now)

    def release(self) -> None:
        """The call's answer came back (or it failed after it may have been sent): its
        window slots run for one window from now."""
        with self._lock:
            now = self._clock()
            self._in_flight -= 1
            self._minute.append(now)
            if self.limits.per_day is not None:
                self._day.append(now)
            else:
                self._count_for_the_day(now)
            self._lock.notify_all()

    def cancel(self) -> None:
        """Give back a slot whose call never left this process (e.g. another limiter in
        a chain refused it): nothing reached the provider, so no window counts it."""
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _count_for_the_day(self, now: float) -> None:
        minute = int(now // MINUTE_S)
        self._advance_day(minute)
        # A clock is monotonic here, so `minute` is never before the ring's newest.
        self._day_buckets[max(minute, self._day_minute) % _DAY_MINUTES] += 1
        self._day_count += 1

    def _day_used(self) -> int:
        if self.limits.per_day is not None:
            return self._day_held()
        return self._in_flight + self._day_count

    def _warn_if_near(self, now: float) -> None:
        """Log quota use once a minute when a window is over 80% used."""
        day = self.limits.per_day
        near = self._minute_held() >= 0.8 * self.limits.per_minute or (
            day is not None and self._day_held() >= 0.8 * day)
        if near and now - self._last_warning >= 60:
            self._last_warning = now
            log.warning("rate_limit_quota_high", name=self.name,
                        minute_used=self._minute_held(), minute_limit=self.limits.per_minute,
                        day_used=self._day_used(), day_limit=day)

    def usage(self) -> dict[str, int]:
        """Slots held now: calls in flight plus calls answered within the window."""
        with self._lock:
            self._prune(self._clock())
            return {"minute": self._minute_held(), "day": self._day_used(),
                    "in_flight": self._in_flight, "throttled": self.throttled_total}


class Limiter(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


@runtime_checkable
class Cancellable(Protocol):
    """A limiter that can give a slot back without counting a call (`RateLimiter`)."""

    def cancel(self) -> None: ...


def give_back(limiter: Limiter) -> None:
    """Return a slot whose call was never sent: `cancel` where the limiter has it, else
    `release` (which may count the call: safe, only wasteful)."""
    if isinstance(limiter, Cancellable):
        limiter.cancel()
    else:
        limiter.release()


class LimiterChain:
    """Several limits on one call (per connection, then per app): all or none are taken."""

    def __init__(self, limiters: Sequence[Limiter]) -> None:
        self._limiters = list(limiters)

    def acquire(self) -> None:
        taken: list[Limiter] = []
        try:
            for limiter in self._limiters:
                limiter.acquire()
                taken.append(limiter)
        except BaseException:
            # The call is not sent: the slots taken so far count nothing.
            for limiter in reversed(taken):
                give_back(limiter)
            raise

    def release(self) -> None:
        for limiter in reversed(self._limiters):
            limiter.release()

    def cancel(self) -> None:
        for limiter in reversed(self._limiters):
            give_back(limiter)
