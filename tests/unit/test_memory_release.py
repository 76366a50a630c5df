"""The server gives freed memory back when its RSS grew: the decision, and glibc's call."""

from __future__ import annotations

import sys

import pytest

from sonde.server.memory_release import MemoryRelease, find_malloc_trim, resident_bytes

MIB = 1024 * 1024


class _Heap:
    """A resident set that grows and that a trim shrinks, as glibc's does."""

    def __init__(self, rss: int) -> None:
        self.rss = rss
        self.trims = 0

    def resident(self) -> int:
        return self.rss

    def trim(self, pad: int) -> int:
        assert pad == 0
        self.trims += 1
        self.rss -= 90 * MIB
        return 1


def test_a_grown_resident_set_is_trimmed_once_and_then_left_alone() -> None:
    heap = _Heap(100 * MIB)
    release = MemoryRelease(trim=heap.trim, resident=heap.resident, growth_bytes=32 * MIB)
    assert release.once() is None
    heap.rss += 20 * MIB  # under the allowance
    assert release.once() is None
    heap.rss += 90 * MIB  # a flood of connections came and went
    assert release.once() == 90 * MIB
    assert heap.rss == 120 * MIB
    assert release.once() is None, "the next rounds measure from after the trim"
    assert heap.trims == 1


def test_a_smaller_resident_set_lowers_the_mark() -> None:
    heap = _Heap(200 * MIB)
    release = MemoryRelease(trim=heap.trim, resident=heap.resident, growth_bytes=32 * MIB)
    heap.rss = 100 * MIB
    release.once()
    heap.rss = 140 * MIB  # 40 MiB over the new mark, under the old one
    assert release.once() == 90 * MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_glibcs_malloc_trim_and_the_resident_set_are_found_here() -> None:
    trim = find_malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
    rss = resident_bytes()
    assert rss is not None
    assert rss > 10 * MIB
