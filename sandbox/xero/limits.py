"""Xero rate limits (providers.md §2.4) and OAuth/idempotency timings."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Admission", "RateLimiter", "XeroLimits"]


@dataclass(frozen=True, slots=True)
class XeroLimits:
    """Documented figures by default; tests may raise or shrink them."""

    concurrent: int = 5  # requests in progress per tenant
    per_minute: int = 60  # per tenant, rolling 60 s
    per_day: int = 5000  # per tenant, rolling 24 h
    app_per_minute: int = 10_000  # across tenants, rolling 60 s
    access_token_ttl_s: float = 1800.0
    refresh_idle_s: float = 60 * 86400.0  # refresh token expires after 60 days unused
    refresh_grace_s: float = 1800.0  # a rotated-out refresh token still works this long
    code_ttl_s: float = 300.0
    idempotency_ttl_s: float = 360.0
    idempotency_key_max: int = 128
    page_size: int = 100
    max_page_size: int = 1000


@dataclass(frozen=True, slots=True)
class Admission:
    ok: bool
    problem: str = ""  # minute | day | concurrent | appminute
    retry_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class _Window:
    def __init__(self, span: float) -> None:
        self.span = span
        self.hits: deque[float] = deque()

    def trim(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - self.span:
            self.hits.popleft()

    def retry_after(self, now: float) -> int:
        if not self.hits:
            return 1
        return max(1, math.ceil(self.hits[0] + self.span - now))


class RateLimiter:
    """Sliding windows per tenant plus the app-wide minute window.

    Only admitted calls count. Used from the event loop thread only.
    """

    def __init__(self, limits: XeroLimits) -> None:
        self.limits = limits
        self._minute: dict[str, _Window] = {}
        self._day: dict[str, _Window] = {}
        self._app = _Window(60.0)
        self._in_flight: dict[str, int] = {}

    def _windows(self, tenant: str, now: float) -> tuple[_Window, _Window]:
        m = self._minute.setdefault(tenant, _Window(60.0))
        d = self._day.setdefault(tenant, _Window(86400.0))
        m.trim(now)
        d.trim(now)
        self._app.trim(now)
        return m, d

    def headers(self, tenant: str | None, now: float) -> dict[str, str]:
        lim = self.limits
        self._app.trim(now)
        out = {"X-AppMinLimit-Remaining": str(max(0, lim.app_per_minute - len(self._app.hits)))}
        if tenant is not None:
            m, d = self._windows(tenant, now)
            out["X-MinLimit-Remaining"] = str(max(0, lim.per_minute - len(m.hits)))
            out["X-DayLimit-Remaining"] = str(max(0, lim.per_day - len(d.hits)))
        return out

    def admit(self, tenant: str, now: float) -> Admission:
        """Check every limit; on success count the call and take a concurrency slot."""
        lim = self.limits
        m, d = self._windows(tenant, now)
        problem, retry = "", 0
        if len(d.hits) >= lim.per_day:
            problem, retry = "day", d.retry_after(now)
        elif len(self._app.hits) >= lim.app_per_minute:
            problem, retry = "appminute", self._app.retry_after(now)
        elif len(m.hits) >= lim.per_minute:
            problem, retry = "minute", m.retry_after(now)
        elif self._in_flight.get(tenant, 0) >= lim.concurrent:
            problem, retry = "concurrent", 1
        if problem:
            return Admission(False, problem, retry, self.headers(tenant, now))
        m.hits.append(now)
        d.hits.append(now)
        self._app.hits.append(now)
        self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1
        return Admission(True, headers=self.headers(tenant, now))

    def release(self, tenant: str) -> None:
        self._in_flight[tenant] = max(0, self._in_flight.get(tenant, 0) - 1)
