"""`blueclerk-sync`: the operator's command line over the same service functions as the API."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.config import Settings

__all__ = ["main"]


def _settings() -> Settings:
    from service.bootstrap import settings_from_env

    return settings_from_env()


def cmd_worker(args: argparse.Namespace) -> int:
    from service.bootstrap import build_services, build_worker

    settings = _settings()
    services = build_services(settings)
    worker = build_worker(services)
    if settings.metrics_port:
        from service.metrics import serve_metrics

        serve_metrics(settings.metrics_port, services.providers.limiters)

    def stop(signum: int, _frame: object) -> None:
        worker.stop()  # SIGTERM drains in-flight work and commits before exit

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    finally:
        services.close()
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from sandbox.app import create_sandbox

    uvicorn.run(create_sandbox(fast_limits=args.fast_limits), host=args.host, port=args.port,
                log_level="warning")
    return 0


def cmd_kafka(args: argparse.Namespace) -> int:
    from sandbox.kafka_broker import KafkaBroker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with KafkaBroker(port=args.port) as broker:
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
        stop.wait()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from state.db import migrate

    settings = _settings()
    migrate(settings.database_url)
    print("migrated", settings.database_url.split("@")[-1])
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from control.demo import run_demo

    return run_demo(events=args.customers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blueclerk-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="consume change events and sync them").set_defaults(
        func=cmd_worker)
    p = sub.add_parser("sandbox", help="serve the three provider simulators")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8780")))
    p.add_argument("--fast-limits", action="store_true",
                   help="raise rate limits far above the providers' (load tests)")
    p.set_defaults(func=cmd_sandbox)
    p = sub.add_parser("kafka", help="run a local Apache Kafka broker (KRaft) until stopped")
    p.add_argument("--port", type=int, default=0)
    p.set_defaults(func=cmd_kafka)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    p = sub.add_parser("demo", help="run the whole path end to end on local defaults")
    p.add_argument("--customers", type=int, default=24)
    p.set_defaults(func=cmd_demo)
    from control import operator_cli, report

    operator_cli.register(sub)
    report.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
