"""`blueclerk-sync worker` with another partition assignment strategy (benchmarks only).

    python -m bench.worker_proc --assignor range

The same worker as `control/cli.py`'s `cmd_worker` (settings from the environment,
metrics and health on METRICS_PORT, SIGTERM drains), built with WorkerOptions'
consumer_overrides so bench/scaleout.py can compare the service's assignor with a
per-topic one on the same run. The service itself is not changed by this file.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--assignor", required=True,
                        help="librdkafka partition.assignment.strategy, e.g. range, roundrobin")
    args = parser.parse_args(argv)

    from consumers.worker import Worker, WorkerOptions
    from producers.dead_letters import KafkaDeadLetterSink
    from producers.kafka import make_producer
    from producers.outbox import OutboxPublisher
    from service.bootstrap import build_engine, build_services, settings_from_env

    settings = settings_from_env()
    services = build_services(settings)
    assert settings.kafka_bootstrap, "KAFKA_BOOTSTRAP_SERVERS is not set"
    producer = make_producer(settings.kafka_bootstrap)
    engine = build_engine(services, KafkaDeadLetterSink(producer, settings.topics.dead_letter))
    outbox = OutboxPublisher(services.db, producer, settings.topics)
    # Only the strategy differs from service.bootstrap.build_worker's options.
    options = WorkerOptions(
        bootstrap=settings.kafka_bootstrap, group_id=settings.consumer_group,
        topics=settings.topics.changes, max_in_flight=settings.max_in_flight,
        max_batch=settings.max_batch)
    options = dataclasses.replace(
        options, consumer_overrides={"partition.assignment.strategy": args.assignor})
    worker = Worker(engine, outbox, options)
    if settings.metrics_port:
        from prometheus_client.registry import REGISTRY

        from service.health import BrokerCheck, WorkerProbe, serve_worker_health
        from service.metrics import QuotaCollector

        REGISTRY.register(QuotaCollector(services.providers.limiters))
        serve_worker_health(settings.metrics_port,
                            WorkerProbe(worker, BrokerCheck(settings.kafka_bootstrap)))

    def stop(signum: int, _frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
