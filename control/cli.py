"""`blueclerk-sync`: the operator's command line over the same service functions as the API."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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
        # Metrics, liveness and readiness on one port (service/health.py).
        from prometheus_client.registry import REGISTRY

        from service.health import BrokerCheck, WorkerProbe, serve_worker_health
        from service.metrics import QuotaCollector

        REGISTRY.register(QuotaCollector(services.providers.limiters))
        assert settings.kafka_bootstrap  # build_worker refused to start without it
        serve_worker_health(settings.metrics_port,
                            WorkerProbe(worker, BrokerCheck(settings.kafka_bootstrap)))

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


def cmd_register_schemas(args: argparse.Namespace) -> int:
    from schemas.registry import register_schemas
    from service.config import Topics

    registry = args.registry or os.environ.get("SCHEMA_REGISTRY_URL")
    if not registry:
        print("error: say which registry: `blueclerk-sync register-schemas --registry URL` "
              "(or set SCHEMA_REGISTRY_URL)", file=sys.stderr)
        return 2
    prefix = args.topic_prefix or os.environ.get("TOPIC_PREFIX", "blueclerk.")
    try:
        done = register_schemas(registry, Topics(prefix), args.compatibility)
    except Exception as exc:
        print(f"error: {exc}; fix the schema (new fields need defaults) or the registry URL, "
              "then run `blueclerk-sync register-schemas` again", file=sys.stderr)
        return 2
    for s in done:
        print(f"{s.subject:<40} {s.schema:<22} id {s.schema_id:<4} versions {s.versions}  "
              f"{s.compatibility}")
    return 0


def cmd_local_stack(args: argparse.Namespace) -> int:
    from control.local_stack import run_local_stack

    return run_local_stack(args)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                     argparse.RawDescriptionHelpFormatter):
    """argparse's defaults formatter, without "(default: None)" on options that have none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action) or text


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every parser and sub-parser prints its options' defaults in --help."""
    parser.formatter_class = _HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _show_defaults(child)
        elif action.help is None and action.default not in (None, False, argparse.SUPPRESS):
            action.help = "(default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blueclerk-sync", description=__doc__,
                                     epilog="`blueclerk-sync local-stack` starts everything "
                                     "on this machine; `blueclerk-sync COMMAND --help` for "
                                     "each command. Configuration: environment variables "
                                     "(README, Configuration).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    p = sub.add_parser("register-schemas", help="register the Avro contracts with a Schema "
                       "Registry (subjects <topic>-value) and set their compatibility rule")
    p.add_argument("--registry", help="the registry's URL (default: SCHEMA_REGISTRY_URL)")
    p.add_argument("--topic-prefix", help="topic prefix (default: TOPIC_PREFIX or blueclerk.)")
    p.add_argument("--compatibility", default="BACKWARD",
                   choices=("BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"))
    p.set_defaults(func=cmd_register_schemas)
    from control import local_stack, operator_cli, report

    local_stack.register(sub, cmd_local_stack)
    operator_cli.register(sub)
    report.register(sub)
    _show_defaults(parser)
    return parser


# Commands that run until stopped (services) log at LOG_LEVEL (default info); every other
# command is a one-shot answer and logs warnings only unless LOG_LEVEL says otherwise.
_SERVICES = {"worker", "serve-api", "sandbox", "kafka", "poll-changes", "local-stack"}
# Commands whose work is counted on a terminal while it runs (events through the engine).
_PROGRESS = {"sync-now", "replay-dead-letters", "wizard", "demo"}


def _quiet() -> None:
    """No deprecation chatter from libraries on a user's terminal: authlib announces its
    httpx fallback as an always-shown warning at import; Alembic logs at info."""
    from service.logging import quiet_library_warnings

    quiet_library_warnings()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)


class _Progress:
    """Count and rate of events through the engine on stderr while a command runs, only
    when stderr is a terminal; the count again when done."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="progress")

    def _line(self, final: bool = False) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.count / elapsed
        state = "done: " if final else ""
        return f"\r{self.label}: {state}{self.count} events, {rate:.1f}/s, {elapsed:.1f}s"

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            sys.stderr.write(self._line())
            sys.stderr.flush()

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        sys.stderr.write(self._line(final=True) + "\n")
        sys.stderr.flush()


@contextmanager
def _progress(command: str) -> Iterator[None]:
    if command not in _PROGRESS or not sys.stderr.isatty():
        yield
        return
    from consumers.engine import SyncEngine

    progress = _Progress(command)
    original = SyncEngine.process

    def counted(self: SyncEngine, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            progress.count += 1

    SyncEngine.process = counted  # type: ignore[method-assign]
    progress.start()
    try:
        yield
    finally:
        SyncEngine.process = original  # type: ignore[method-assign]
        progress.finish()


def main(argv: Sequence[str] | None = None) -> int:
    _quiet()
    args = build_parser().parse_args(argv)
    one_shot = args.command not in _SERVICES or (
        args.command == "poll-changes" and not getattr(args, "loop", None))
    quiet = one_shot and "LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["LOG_LEVEL"] = "warning"
    try:
        with _progress(args.command):
            result: int = args.func(args)
    finally:
        if quiet:
            os.environ.pop("LOG_LEVEL", None)
    return result


if __name__ == "__main__":
    sys.exit(main())
