"""Giving freed heap memory back to the operating system.

glibc's malloc keeps memory the process has freed resident, spread over its arenas, for
reuse; in a long-running worker that free memory grows slowly with the heap's
high-water mark and fragmentation (the 1M-event run in bench/README.md: +14 MB of the
+19 MB RSS between 10k and 1M events was malloc's free memory, none of it in use).
`malloc_trim(0)` returns the free pages of every arena, not only the heap's top (glibc
2.8+), so calling it now and then keeps the RSS at what is in use. It locks one arena at
a time for a few milliseconds; once a minute is noise against the worker's CPU.

Elsewhere (musl, macOS) there is no malloc_trim and `MemoryTrimmer.due` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

_Trim = Callable[[int], int]


def _load_malloc_trim() -> _Trim | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class MemoryTrimmer:
    """Calls malloc_trim(0) at most once every `interval_s` (0: never)."""

    def __init__(self, interval_s: float, *, trim: _Trim | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._trim = trim if trim is not None else (_load_malloc_trim() if interval_s > 0
                                                      else None)
        self._clock = clock
        self._last = clock()
        self.calls = 0
        self.seconds = 0.0  # time spent in malloc_trim (bench.memory prints it)

    @property
    def available(self) -> bool:
        return self._trim is not None and self._interval_s > 0

    def due(self) -> bool:
        """Trim if the interval has passed since the last one; whether it trimmed."""
        if not self.available or self._clock() - self._last < self._interval_s:
            return False
        assert self._trim is not None
        started = time.perf_counter()
        self._trim(0)
        self.seconds += time.perf_counter() - started
        self.calls += 1
        self._last = self._clock()
        return True
