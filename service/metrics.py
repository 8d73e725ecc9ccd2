"""Prometheus metrics: what SREs watch (prometheus-client, served when METRICS_PORT is set)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from providers.ratelimit import RateLimiter

__all__ = [
    "DISPATCH_PENDING",
    "EVENTS",
    "PROVIDER_REQUESTS",
    "SYNC_SECONDS",
    "QuotaCollector",
    "serve_metrics",
]

EVENTS = Counter("bc_sync_events_total", "Consumed events by final status",
                 ["entity_type", "status", "provider"])
SYNC_SECONDS = Histogram("bc_sync_event_seconds", "Time to process one event",
                         ["entity_type"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
PROVIDER_REQUESTS = Counter("bc_provider_requests_total", "HTTP calls to providers",
                            ["provider", "outcome"])
DISPATCH_PENDING = Gauge("bc_dispatch_pending", "Events queued, deferred or in flight")


class QuotaCollector(Collector):
    """Rate-limit quota use per provider: the busiest connection's share of each window."""

    def __init__(self, limiters: Callable[[], dict[tuple[str, str], RateLimiter]]) -> None:
        self._limiters = limiters

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("bc_provider_quota_used_ratio",
                                   "Highest share of a rate-limit window in use, per provider",
                                   labels=["provider", "window"])
        worst: dict[tuple[str, str], float] = {}
        for (_account, provider), limiter in self._limiters().items():
            usage = limiter.usage()
            ratios = {"minute": usage["minute"] / limiter.limits.per_minute}
            if limiter.limits.per_day:
                ratios["day"] = usage["day"] / limiter.limits.per_day
            for window, ratio in ratios.items():
                key = (provider, window)
                worst[key] = max(worst.get(key, 0.0), ratio)
        for (provider, window), ratio in sorted(worst.items()):
            family.add_metric([provider, window], ratio)
        yield family


def serve_metrics(port: int,
                  limiters: Callable[[], dict[tuple[str, str], RateLimiter]]) -> None:
    REGISTRY.register(QuotaCollector(limiters))
    start_http_server(port, addr="0.0.0.0")
