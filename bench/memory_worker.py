"""The worker bench/memory.py measures: the service's Worker (settings from the
environment, as `blueclerk-sync worker` builds it) plus a probe that reports, as JSON
lines on stdout, how many events it finished and, at each checkpoint, its RSS and the
retained size of the rate limiters, the dispatcher and the offset tracker.

    python -m bench.memory_worker --checkpoints 10000,100000,1000000

Each checkpoint also splits the RSS where it comes from, without changing the service:
anonymous against file-backed pages (/proc/self/status), the heap SQLite holds
(sqlite3_memory_used: page caches, schema, statements of every connection), glibc
malloc's heap (mallinfo2: in use and free, and its arena count from malloc_info), the
database connections opened so far, and with --tracemalloc the Python allocations
(tracemalloc) and which source lines grew since the previous checkpoint.

Experiments (bench/memory.py passes them on): --sqlite-cache-kib sets PRAGMA cache_size
on every SQLite connection the worker opens; the worker's environment (MALLOC_ARENA_MAX,
...) is the parent's --worker-env.

Not a service entry point; it runs only under bench/memory.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import decimal
import enum
import gc
import json
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.procs import rss_mb

# Retained size follows containers and objects of these modules only: the limiter's and
# the dispatcher's own structures and the events they hold; never threads, locks,
# functions or the engine behind a bound method (that is the rest of the process).
_FOLLOW_MODULES = ("providers.ratelimit", "consumers.", "schemas.")
_CONTAINERS = (dict, list, tuple, set, frozenset, deque)
_LEAVES = (str, bytes, bytearray, int, float, bool, dt.datetime, dt.date, dt.timedelta,
           decimal.Decimal, uuid.UUID, array)  # array: sys.getsizeof counts its buffer


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


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (glibc 2.33+): totals over every malloc arena."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _load(name: str) -> Any:
    """A shared library already mapped into this process (the same instance Python's
    modules use: dlopen returns the loaded one), or None where it cannot be found."""
    path = ctypes.util.find_library(name)
    with contextlib.suppress(OSError):
        return ctypes.CDLL(path or f"lib{name}.so")
    return None


_LIBC = _load("c")
_SQLITE = _load("sqlite3")
if _LIBC is not None and hasattr(_LIBC, "mallinfo2"):
    _LIBC.mallinfo2.restype = _MallInfo2
if _SQLITE is not None:
    _SQLITE.sqlite3_memory_used.restype = ctypes.c_int64
    _SQLITE.sqlite3_memory_highwater.restype = ctypes.c_int64
    _SQLITE.sqlite3_memory_highwater.argtypes = [ctypes.c_int]


def _status_kb(fields: Sequence[str]) -> dict[str, int]:
    """Fields of /proc/self/status in kB (Threads as a count)."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in fields:
                found[key] = int(value.split()[0])
    return found


def _malloc_arenas() -> int:
    """How many arenas glibc malloc has (malloc_info's <heap> elements); -1 if unknown."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_info"):
        return -1
    _LIBC.fopen.restype = ctypes.c_void_p
    _LIBC.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    _LIBC.fclose.argtypes = [ctypes.c_void_p]
    _LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(prefix="bench-malloc-", suffix=".xml") as tmp:
        stream = _LIBC.fopen(tmp.name.encode(), b"w")
        if not stream:
            return -1
        _LIBC.malloc_info(0, stream)
        _LIBC.fclose(stream)
        return Path(tmp.name).read_text().count("<heap nr=")


def native_mb() -> dict[str, float]:
    """Where the RSS is: anonymous and file-backed pages, SQLite's heap, glibc malloc's
    heap (in use, free) and arenas, threads, and tracemalloc's total when it traces.
    Each figure is NaN (or -1) where this platform cannot give it."""
    status = _status_kb(("RssAnon", "RssFile", "RssShmem", "Threads"))
    nan = float("nan")
    info = _LIBC.mallinfo2() if _LIBC is not None and hasattr(_LIBC, "mallinfo2") else None
    return {
        "anon_mb": status.get("RssAnon", nan) / 1024,
        "file_mb": (status.get("RssFile", nan) + status.get("RssShmem", 0)) / 1024,
        "threads": status.get("Threads", -1),
        "sqlite_mb": (_SQLITE.sqlite3_memory_used() / 2**20 if _SQLITE is not None else nan),
        # The most SQLite has held at once since the process started.
        "sqlite_peak_mb": (_SQLITE.sqlite3_memory_highwater(0) / 2**20
                           if _SQLITE is not None else nan),
        "malloc_used_mb": ((info.uordblks + info.hblkhd) / 2**20 if info else nan),
        "malloc_free_mb": (info.fordblks / 2**20 if info else nan),
        "malloc_arenas": _malloc_arenas(),
        "traced_mb": (tracemalloc.get_traced_memory()[0] / 2**20
                      if tracemalloc.is_tracing() else nan),
    }


class _Growth:
    """With tracemalloc on: the source lines whose live allocations grew the most since
    the previous checkpoint (tracemalloc's own frames filtered out)."""

    def __init__(self) -> None:
        self._previous: tracemalloc.Snapshot | None = None

    def top(self, limit: int = 8) -> list[list[Any]]:
        if not tracemalloc.is_tracing():
            return []
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__),
             tracemalloc.Filter(False, "<frozen importlib._bootstrap>")])
        previous, self._previous = self._previous, snapshot
        if previous is None:
            return []
        diff = snapshot.compare_to(previous, "lineno")
        return [[f"{Path(d.traceback[0].filename).name}:{d.traceback[0].lineno}",
                 round(d.size_diff / 1024, 1), d.count_diff]
                for d in sorted(diff, key=lambda d: d.size_diff, reverse=True)[:limit]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--checkpoints", required=True,
                        help="comma-separated event counts at which to report memory")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace Python allocations (slower) with this many frames")
    parser.add_argument("--sqlite-cache-kib", type=int, default=0,
                        help="experiment: PRAGMA cache_size=-N on every SQLite connection")
    parser.add_argument("--malloc-trim", action="store_true",
                        help="experiment: malloc_trim(0) at each checkpoint, after the RSS "
                             "is read, and report the RSS after it too")
    parser.add_argument("--trim-every", type=float, default=0.0, metavar="SECONDS",
                        help="experiment: malloc_trim(0) this often from the probe thread, "
                             "as a service could; the time the calls took is reported")
    args = parser.parse_args(argv)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(",") if c)
    if args.tracemalloc:
        tracemalloc.start(args.tracemalloc)

    from sqlalchemy import event

    from service.bootstrap import build_services, build_worker, settings_from_env
    from service.memory import MemoryTrimmer

    services = build_services(settings_from_env())
    connects = [0]
    cache_size = [""]  # PRAGMA cache_size as the last connection opened reads it back

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        connects[0] += 1
        if services.db.is_sqlite:
            if args.sqlite_cache_kib:
                dbapi_connection.execute(f"PRAGMA cache_size=-{args.sqlite_cache_kib:d}")
            cache_size[0] = str(dbapi_connection.execute("PRAGMA cache_size").fetchone()[0])

    # Added before the worker opens any pooled connection (build_services opens none).
    event.listen(services.db.engine, "connect", on_connect)
    growth = _Growth()
    worker = build_worker(services)
    stop = threading.Event()
    now = threading.Event()  # SIGUSR1: report a checkpoint at once (the parent's last)

    def emit(kind: str, **fields: Any) -> None:
        print(json.dumps({"kind": kind, "t": time.monotonic(), **fields}), flush=True)

    def trimmed_rss() -> float:
        """RSS after glibc returns the free pages of every arena (malloc_trim(0)): the
        part of the RSS that is free malloc memory shows as the difference."""
        if not args.malloc_trim or _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
            return float("nan")
        _LIBC.malloc_trim(0)
        return rss_mb_self()

    # The experiment's extra trims use the service's own trimmer (service/memory.py).
    trimmer = MemoryTrimmer(args.trim_every)

    def measure(kind: str) -> None:
        gc.collect()
        rss = rss_mb_self()
        fields = native_mb()
        emit(kind, processed=worker.processed, rss_mb=rss, trimmed_rss_mb=trimmed_rss(),
             limiter_kb=retained_bytes(_limiters(services.providers)) / 1024,
             limiters=len(_limiters(services.providers)),
             dispatcher_kb=retained_bytes(
                 [getattr(worker, "_dispatcher", None), getattr(worker, "_overflow", None)])
             / 1024,
             offsets_kb=retained_bytes([getattr(worker, "_tracker", None)]) / 1024,
             gc_objects=len(gc.get_objects()), db_connects=connects[0],
             sqlite_cache_size=cache_size[0],
             db_pool=services.db.engine.pool.status(), growth=growth.top(),
             trim_calls=trimmer.calls, trim_s=trimmer.seconds, **fields)

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
            trimmer.due()
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
