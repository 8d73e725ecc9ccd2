"""Shared by the benchmarks: the provider simulators in their own process, and CPU time
and RSS of the processes that take part in a run, read from /proc over one interval.

On a 2-core machine the simulators, the Kafka broker and PostgreSQL compete with the
worker for the same cores, so each benchmark reports their CPU apart from the worker's
instead of a wall-clock speed-up alone. Everything here reads /proc (Linux); where a
process cannot be read, its figure is NaN and the report prints it as "-".
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["CpuSampler", "PgBackends", "SandboxProcess", "cpu_s", "load", "machine_line",
           "rss_mb", "thread_cpu_s"]

ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_cpu(path: str) -> float:
    """utime + stime of /proc/<pid>[/task/<tid>]/stat in seconds; NaN when unreadable."""
    try:
        with open(path) as fh:
            raw = fh.read()
    except OSError:
        return float("nan")
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of stat(5)


def _non_negative(seconds: float) -> float:
    return seconds if math.isnan(seconds) else max(0.0, seconds)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far."""
    return _stat_cpu(f"/proc/{pid}/stat")


def thread_cpu_s(tid: int) -> float:
    """CPU seconds one thread of this process has used so far."""
    return _stat_cpu(f"/proc/self/task/{tid}/stat")


def threads_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds a process's threads have used so far, by thread kind: librdkafka's
    ("rdk:main", "rdk:broker…" -> "rdkafka") and the rest ("python": the interpreter's
    threads, which Python 3.11 leaves unnamed). Threads that ended are not counted."""
    used = {"rdkafka": 0.0, "python": 0.0}
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{pid}/task/{task}/comm").read_text().strip()
                used["rdkafka" if comm.startswith("rdk:") else "python"] += _stat_cpu(
                    f"/proc/{pid}/task/{task}/stat")
    return used


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of a process in MB; NaN when unreadable."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def machine_line(kafka: str = "") -> str:
    from confluent_kafka import libversion

    parts = [platform.platform(), platform.processor() or platform.machine(),
             f"{os.cpu_count()} CPUs", f"Python {platform.python_version()}"]
    if kafka:
        parts.append(kafka)
    parts += [f"librdkafka {libversion()[0]}", f"load avg {load()}"]
    return "; ".join(parts)


def fmt(value: float, spec: str = ".1f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


class SandboxProcess:
    """`blueclerk-sync sandbox --fast-limits` (the three simulators under uvicorn) as its
    own OS process, so its CPU is not the worker's and its GIL is not the worker's."""

    def __init__(self, log_path: Path | None = None) -> None:
        from sandbox.serve import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> SandboxProcess:
        out = self._log_path.open("ab") if self._log_path else subprocess.DEVNULL
        env = {**os.environ, "BLUECLERK_MODE": "local", "LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control.cli", "sandbox", "--port", str(self.port),
             "--fast-limits"], cwd=ROOT, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sandbox process exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the sandbox process did not answer /healthz")
            time.sleep(0.2)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PgBackends:
    """CPU of the PostgreSQL server processes that serve one database: the backends
    listed by pg_stat_activity for it (the sampler's own excluded), read from /proc.

    Backends come and go with the pool, so `sample` is called every half second while a
    run lasts; a backend first seen during the run counts from zero (it was started for
    the run), one seen before counts from its first sample. Needs the server on this
    host (its pids are then ours to read)."""

    def __init__(self, url: str, database: str, exclude: Callable[[], set[int]] = set) -> None:
        from sqlalchemy import create_engine, text

        self._engine = create_engine(url, pool_size=1, max_overflow=0)
        self._query = text("SELECT pid FROM pg_stat_activity WHERE datname = :db "
                           "AND pid <> pg_backend_pid()")
        self._database = database
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._started = False
        self._exclude = exclude  # pids of the benchmark's own connections

    def _pids(self) -> list[int]:
        with self._engine.connect() as conn:
            pids = [int(p) for p in conn.execute(self._query, {"db": self._database}).scalars()]
        excluded = self._exclude()
        return [p for p in pids if p not in excluded]

    def sample(self) -> None:
        for pid in self._pids():
            cpu = cpu_s(pid)
            if math.isnan(cpu):
                continue
            if pid not in self._first:
                self._first[pid] = cpu if not self._started else 0.0
            self._last[pid] = cpu

    def start(self) -> None:
        self._first.clear()
        self._last.clear()
        self._started = False
        self.sample()
        self._started = True

    def cpu_s(self) -> float:
        return sum(self._last[p] - self._first[p] for p in self._last)

    def close(self) -> None:
        self._engine.dispose()


@dataclass
class CpuSampler:
    """CPU seconds of named processes between `start` and `stop`. Each source returns
    cumulative CPU seconds; PostgreSQL's backends are sampled by `tick`, which the
    caller's waiting loop calls (no thread of ours adds to the process it measures)."""

    sources: Mapping[str, Callable[[], float]]
    pg: PgBackends | None = None
    interval_s: float = 0.5
    _begin: dict[str, float] = field(default_factory=dict)
    _next_tick: float = 0.0
    result: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._begin = {name: read() for name, read in self.sources.items()}
        if self.pg is not None:
            self.pg.start()
        self._next_tick = time.monotonic() + self.interval_s

    def tick(self) -> None:
        if self.pg is not None and time.monotonic() >= self._next_tick:
            with contextlib.suppress(Exception):  # a sample lost to a blip is not fatal
                self.pg.sample()
            self._next_tick = time.monotonic() + self.interval_s

    def stop(self) -> dict[str, float]:
        # Cumulative CPU never decreases; a source that subtracts one clock from another
        # (the worker: getrusage minus the main thread's /proc ticks) can come out a few
        # milliseconds below zero over a short run, which is rounding, not CPU.
        self.result = {name: _non_negative(read() - self._begin[name])
                       for name, read in self.sources.items()}
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.sample()
            self.result["postgres"] = self.pg.cpu_s()
        return self.result

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()
