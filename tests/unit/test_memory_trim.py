"""service/memory.py: malloc's free memory goes back to the OS at most once an interval."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from pathlib import Path

import pytest

from service.memory import MemoryTrimmer


def _recorder(calls: list[int]) -> Callable[[int], int]:
    def trim(pad: int) -> int:
        calls.append(pad)
        return 1
    return trim


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_once_per_interval() -> None:
    clock, calls = _Clock(), list[int]()
    trimmer = MemoryTrimmer(60.0, trim=_recorder(calls), clock=clock)
    assert not trimmer.due()  # the interval counts from construction
    clock.now += 59.9
    assert not trimmer.due()
    clock.now += 0.2
    assert trimmer.due()
    assert calls == [0]
    clock.now += 30
    assert not trimmer.due()
    clock.now += 30
    assert trimmer.due()
    assert calls == [0, 0] and trimmer.calls == 2


def test_zero_interval_never_trims() -> None:
    clock, calls = _Clock(), list[int]()
    trimmer = MemoryTrimmer(0.0, trim=_recorder(calls), clock=clock)
    clock.now += 10_000
    assert not trimmer.due() and calls == [] and not trimmer.available


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_real_malloc_trim_returns_fragmented_free_memory() -> None:
    """The glibc this runs on: 64 MB malloc'd in 16 KB blocks, every other one freed (free
    memory in the middle of the heap, which free() alone never returns), is given back by
    the trimmer's malloc_trim(0)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None or "musl" in libc_name:  # pragma: no cover - CI runs glibc
        pytest.fail("this test needs glibc; the service's images and CI run it")
    libc = ctypes.CDLL(libc_name)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    # Below the mmap threshold (128 KB) so the blocks live in the heap, not their own maps.
    blocks = []
    for _ in range(4096):
        ptr = libc.malloc(16384)
        libc.memset(ptr, 1, 16384)  # touch it: resident
        blocks.append(ptr)
    kept = blocks[1::2]
    for ptr in blocks[::2]:
        libc.free(ptr)
    clock = _Clock()
    trimmer = MemoryTrimmer(1.0, clock=clock)
    assert trimmer.available
    before = _rss_kb()
    clock.now += 1.0
    assert trimmer.due()
    after = _rss_kb()
    for ptr in kept:
        libc.free(ptr)
    # 2,048 freed 16 KB blocks = 32 MB free, each flanked by live ones; what can come back
    # is the whole 4 KB pages inside each freed block past malloc's header: 3 of its 4.
    assert before - after >= 16 * 1024, (before, after)
