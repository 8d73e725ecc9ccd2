"""A client-side rate limiter per connection, sized from the provider's published limits.

The aim is that the provider's 429 is the exception: calls wait briefly for a slot, and
when the wait would be long the limiter raises `Throttled` so the engine defers the
tenant's work (freeing the worker thread) instead of blocking other tenants.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from providers.errors import Throttled

__all__ = ["Limiter", "LimiterChain", "RateLimiter", "RateLimits"]

log = structlog.get_logger("ratelimit")


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
        self._minute: deque[float] = deque()
        # Admission times of the last 24 h, kept only where a daily limit exists: a busy
        # connection without one would otherwise hold ~a million floats for nothing.
        self._day: deque[float] = deque()
        # Without a daily limit, the day's use is still reported (usage()), from counts
        # per minute: at most 1,441 small entries whatever the traffic.
        self._day_buckets: deque[list[int]] = deque()  # [minute number, requests]
        self._day_count = 0
        self._in_flight = 0
        self.throttled_total = 0

    def _prune(self, now: float) -> None:
        while self._minute and self._minute[0] <= now - 60:
            self._minute.popleft()
        while self._day and self._day[0] <= now - 86400:
            self._day.popleft()
        while self._day_buckets and (self._day_buckets[0][0] + 1) * 60 <= now - 86400:
            self._day_count -= self._day_buckets.popleft()[1]

    def acquire(self) -> None:
        """Take one request slot, waiting at most `max_wait_s`; else raise Throttled."""
        deadline = self._clock() + self._max_wait
        with self._lock:
            while True:
                now = self._clock()
                self._prune(now)
                wait = 0.0
                scope = ""
                if self.limits.per_day is not None and len(self._day) >= self.limits.per_day:
                    wait, scope = self._day[0] + 86400 - now, "day"
                elif len(self._minute) >= self.limits.per_minute:
                    wait, scope = self._minute[0] + 60 - now, "minute"
                elif self._in_flight >= self.limits.concurrent:
                    wait, scope = 0.05, "concurrent"
                if not scope:
                    self._minute.append(now)
                    if self.limits.per_day is not None:
                        self._day.append(now)
                    else:
                        self._count_for_the_day(now)
                    self._in_flight += 1
                    self._warn_if_near(now)
                    return
                if now + wait > deadline:
                    self.throttled_total += 1
                    raise Throttled(f"local {scope} limit reached", retry_after=max(wait, 0.05),
                                    scope=scope, status=None)
                self._lock.wait(timeout=wait)

    def _count_for_the_day(self, now: float) -> None:
        minute = int(now // 60)
        if self._day_buckets and self._day_buckets[-1][0] == minute:
            self._day_buckets[-1][1] += 1
        else:
            self._day_buckets.append([minute, 1])
        self._day_count += 1

    def _day_used(self) -> int:
        return len(self._day) if self.limits.per_day is not None else self._day_count

    def _warn_if_near(self, now: float) -> None:
        """Log quota use once a minute when a window is over 80% used."""
        day = self.limits.per_day
        near = len(self._minute) >= 0.8 * self.limits.per_minute or (
            day is not None and len(self._day) >= 0.8 * day)
        if near and now - self._last_warning >= 60:
            self._last_warning = now
            log.warning("rate_limit_quota_high", name=self.name, minute_used=len(self._minute),
                        minute_limit=self.limits.per_minute, day_used=self._day_used(),
                        day_limit=day)

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify()

    def usage(self) -> dict[str, int]:
        with self._lock:
            self._prune(self._clock())
            return {"minute": len(self._minute), "day": self._day_used(),
                    "in_flight": self._in_flight, "throttled": self.throttled_total}


class Limiter(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None: ...


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
            for limiter in reversed(taken):
                limiter.release()
            raise

    def release(self) -> None:
        for limiter in reversed(self._limiters):
            limiter.release()
