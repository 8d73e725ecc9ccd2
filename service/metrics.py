"""Serving Prometheus metrics (prometheus-client, when METRICS_PORT is set).

Counters live beside the code that counts (consumers/engine.py, consumers/worker.py,
providers/http.py) in the default registry; this module adds the quota gauge and serves."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from providers.ratelimit import RateLimiter

__all__ = ["QuotaCollector", "serve_metrics"]


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
