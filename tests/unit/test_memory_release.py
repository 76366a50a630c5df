"""The server gives freed memory back when glibc's heap holds enough free: the decision, the
fallback without mallinfo2, and glibc's calls."""

from __future__ import annotations

import ctypes
import sys

import pytest

from sonde.server.memory_release import (
    MemoryRelease,
    find_free_heap,
    find_malloc_trim,
    resident_bytes,
)

MIB = 1024 * 1024


class _Heap:
    """A resident set and a free count that a trim gives back, as glibc's do."""

    def __init__(self, rss: int, free: int = 0) -> None:
        self.rss, self.free, self.trims = rss, free, 0

    def resident(self) -> int:
        return self.rss

    def free_bytes(self) -> int:
        return self.free

    def trim(self, pad: int) -> int:
        assert pad == 0
        self.trims += 1
        self.rss -= self.free
        self.free = 0
        return 1


def test_it_trims_when_the_heap_holds_enough_free_whatever_the_rss_did() -> None:
    """After a flood the RSS stays where it was: what tells is the free memory in the heap
    (a trim during the flood had raised an RSS-based mark above it)."""
    heap = _Heap(rss=200 * MIB, free=10 * MIB)
    release = MemoryRelease(
        trim=heap.trim, free_heap=heap.free_bytes, resident=heap.resident, free_bytes=32 * MIB
    )
    assert release.once() is None, "10 MiB free: not worth a trim"
    heap.free = 100 * MIB  # the connections closed
    assert release.once() == 100 * MIB
    assert (heap.rss, heap.trims) == (100 * MIB, 1)
    assert release.once() is None, "nothing free any more"


def test_without_mallinfo2_it_trims_when_the_rss_grew_since_the_last_trim() -> None:
    heap = _Heap(rss=100 * MIB)
    release = MemoryRelease(
        trim=heap.trim, resident=heap.resident, free_bytes=32 * MIB, use_glibc=False
    )
    heap.rss += 20 * MIB
    assert release.once() is None
    heap.rss, heap.free = heap.rss + 90 * MIB, 90 * MIB
    assert release.once() == 90 * MIB
    assert release.once() is None, "measured from after the trim"
    assert heap.trims == 1


def test_nothing_is_done_where_there_is_no_malloc_trim() -> None:
    release = MemoryRelease(use_glibc=False, resident=lambda: None)
    assert not release.available
    assert release.once() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_glibcs_calls_are_found_and_see_memory_freed() -> None:
    trim, free_heap = find_malloc_trim(), find_free_heap()
    assert trim is not None
    assert free_heap is not None
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 * 1024 - 64) for _ in range(800)]  # under the mmap threshold
    before = free_heap()
    for block in blocks[:-1]:  # the last one keeps the others from being the heap's top
        libc.free(block)
    assert free_heap() >= before + 40 * MIB
    assert trim(0) in (0, 1)
    libc.free(blocks[-1])
    rss = resident_bytes()
    assert rss is not None
    assert rss > 10 * MIB
