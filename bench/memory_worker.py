"""The worker bench/memory.py measures: the service's Worker (settings from the
environment, as `blueclerk-sync worker` builds it) plus a probe that reports, as JSON
lines on stdout, how many events it finished and, at each checkpoint, its RSS and the
retained size of the rate limiters, the dispatcher and the offset tracker.

    python -m bench.memory_worker --checkpoints 10000,100000,1000000

Not a service entry point; it runs only under bench/memory.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import enum
import gc
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from bench.procs import rss_mb

# Retained size follows containers and objects of these modules only: the limiter's and
# the dispatcher's own structures and the events they hold; never threads, locks,
# functions or the engine behind a bound method (that is the rest of the process).
_FOLLOW_MODULES = ("providers.ratelimit", "consumers.", "schemas.")
_CONTAINERS = (dict, list, tuple, set, frozenset, deque)
_LEAVES = (str, bytes, bytearray, int, float, bool, dt.datetime, dt.date, dt.timedelta,
           decimal.Decimal, uuid.UUID)


def retained_bytes(roots: Iterable[Any]) -> int:
    """sys.getsizeof summed over everything reachable from `roots` through containers
    and instances of _FOLLOW_MODULES' classes, each object once."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, enum.Enum)) or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, _LEAVES):
            total += sys.getsizeof(obj)
            continue
        module = type(obj).__module__ or ""
        if not isinstance(obj, _CONTAINERS) and not module.startswith(_FOLLOW_MODULES):
            continue
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _limiters(providers: Any) -> list[Any]:
    """Every RateLimiter the service's ProviderDirectory holds (per connection, the
    QuickBooks batch limiters, the app-wide ones)."""
    found: list[Any] = list(providers.limiters().values())
    for name in ("_batch_limiters", "_app_limiters"):
        found += list(getattr(providers, name, {}).values())
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoints", required=True,
                        help="comma-separated event counts at which to report memory")
    args = parser.parse_args(argv)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(",") if c)

    from service.bootstrap import build_services, build_worker, settings_from_env

    services = build_services(settings_from_env())
    worker = build_worker(services)
    stop = threading.Event()
    now = threading.Event()  # SIGUSR1: report a checkpoint at once (the parent's last)

    def emit(kind: str, **fields: Any) -> None:
        print(json.dumps({"kind": kind, "t": time.monotonic(), **fields}), flush=True)

    def measure(kind: str) -> None:
        gc.collect()
        emit(kind, processed=worker.processed, rss_mb=rss_mb_self(),
             limiter_kb=retained_bytes(_limiters(services.providers)) / 1024,
             limiters=len(_limiters(services.providers)),
             dispatcher_kb=retained_bytes(
                 [getattr(worker, "_dispatcher", None), getattr(worker, "_overflow", None)])
             / 1024,
             offsets_kb=retained_bytes([getattr(worker, "_tracker", None)]) / 1024,
             gc_objects=len(gc.get_objects()))

    def probe() -> None:
        pending = list(checkpoints)
        last_progress = 0.0
        while not stop.wait(0.2):
            if now.is_set():
                now.clear()
                measure("checkpoint")
            if pending and worker.processed >= pending[0]:
                while pending and worker.processed >= pending[0]:
                    pending.pop(0)
                measure("checkpoint")
            if time.monotonic() - last_progress >= 2:
                emit("progress", processed=worker.processed, rss_mb=rss_mb_self())
                last_progress = time.monotonic()

    def on_signal(signum: int, _frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGUSR1, lambda *_: now.set())
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=probe, name="bench-memory-probe", daemon=True)
    thread.start()
    measure("start")
    try:
        worker.run()
    finally:
        stop.set()
        thread.join(timeout=10)
        measure("end")
        services.close()
    return 0


def rss_mb_self() -> float:
    return rss_mb(os.getpid())


if __name__ == "__main__":
    sys.exit(main())
