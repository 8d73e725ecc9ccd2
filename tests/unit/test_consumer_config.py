"""The worker's Kafka consumer configuration: partitions are assigned per topic under
either group protocol (KIP-848's server-side range assignor, or classic eager range), so
every worker of a group gets a share of every change topic. The assignment itself is
checked on a real broker by tests/e2e/test_bench_smoke.py (the scale-out run)."""

from __future__ import annotations

import pytest

from consumers.worker import WorkerOptions, consumer_config
from service.config import Settings


def _options(**kw: object) -> WorkerOptions:
    return WorkerOptions(bootstrap="127.0.0.1:9092", group_id="g", topics=["t"], **kw)  # type: ignore[arg-type]


def test_default_is_kip848_with_the_brokers_range_assignor() -> None:
    config = consumer_config(_options())
    assert config["group.protocol"] == "consumer"
    assert config["group.remote.assignor"] == "range"
    # Under KIP-848 these belong to the broker; librdkafka refuses them from the client.
    for client_side_only_in_classic in ("partition.assignment.strategy", "session.timeout.ms",
                                        "heartbeat.interval.ms"):
        assert client_side_only_in_classic not in config
    assert config["enable.auto.commit"] is False  # offsets are committed by the worker


def test_classic_fallback_assigns_per_topic_too() -> None:
    config = consumer_config(_options(group_protocol="classic"))
    assert config["group.protocol"] == "classic"
    assert config["partition.assignment.strategy"] == "range"
    assert "group.remote.assignor" not in config


def test_unknown_protocol_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'cooperative'"):
        consumer_config(_options(group_protocol="cooperative"))


def test_setting_reaches_the_worker_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUECLERK_MODE", "local")
    monkeypatch.setenv("CONSUMER_GROUP_PROTOCOL", "Classic")
    assert Settings.from_env().consumer_group_protocol == "classic"
    monkeypatch.delenv("CONSUMER_GROUP_PROTOCOL")
    assert Settings.from_env().consumer_group_protocol == "consumer"
