"""The software inventory cache: waits only the first time, refreshes stale lists behind."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sonde.agent.collectors import software
from sonde.v1 import diagnostics_pb2


class CountingInventory:
    """A package database whose listing can be held back, counting how often it is read."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self) -> diagnostics_pb2.SoftwareFacts:
        self.calls += 1
        self.gate.wait(10)
        facts = diagnostics_pb2.SoftwareFacts(source="test")
        facts.packages.extend(
            diagnostics_pb2.SoftwarePackage(name=n, version="1") for n in self.names
        )
        return facts


def _wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_first_listing_is_waited_for_and_stored_owner_only(tmp_path: Path) -> None:
    inventory = CountingInventory(["zoom", "Firefox", "adduser"])
    cache = software.SoftwareCache(tmp_path / software.CACHE_FILE)
    facts = cache.get(inventory, max_age_s=3600)
    assert [p.name for p in facts.packages] == ["adduser", "Firefox", "zoom"]
    assert (facts.total, facts.truncated, facts.source) == (3, False, "test")
    assert facts.refreshed_at.seconds > 0
    stored = tmp_path / software.CACHE_FILE
    assert diagnostics_pb2.SoftwareFacts.FromString(stored.read_bytes()) == facts
    assert stored.stat().st_mode & 0o077 == 0
    assert cache.get(inventory, max_age_s=3600) == facts
    assert inventory.calls == 1


def test_a_new_agent_process_reads_the_file_without_listing(tmp_path: Path) -> None:
    software.SoftwareCache(tmp_path / software.CACHE_FILE).get(CountingInventory(["a"]), 3600)
    later = CountingInventory(["a", "b"])
    facts = software.SoftwareCache(tmp_path / software.CACHE_FILE).get(later, 3600)
    assert [p.name for p in facts.packages] == ["a"]
    assert later.calls == 0


def test_a_stale_list_is_returned_at_once_and_refreshed_in_the_background(tmp_path: Path) -> None:
    cache = software.SoftwareCache(tmp_path / software.CACHE_FILE)
    cache.get(CountingInventory(["old"]), 3600)
    slow = CountingInventory(["old", "new"])
    slow.gate.clear()  # the refresh takes as long as we say: until the gate opens
    # The read returns while the gate is still closed, so it did not wait for the refresh (run
    # on a thread, so that a read that waited fails the test instead of hanging it).
    returned: list[diagnostics_pb2.SoftwareFacts] = []
    reader = threading.Thread(
        target=lambda: returned.append(cache.get(slow, max_age_s=0)), daemon=True
    )
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the stale read waited for the refresh"
    (facts,) = returned
    assert [p.name for p in facts.packages] == ["old"]
    cache.get(slow, max_age_s=0)  # a second stale read starts no second refresh
    slow.gate.set()
    _wait_for(lambda: [p.name for p in cache.get(slow, 3600).packages] == ["new", "old"])
    assert slow.calls == 1


def test_a_damaged_cache_file_is_listed_afresh(tmp_path: Path) -> None:
    (tmp_path / software.CACHE_FILE).write_bytes(b"\xff\xff not protobuf")
    facts = software.SoftwareCache(tmp_path / software.CACHE_FILE).get(CountingInventory(["a"]), 60)
    assert [p.name for p in facts.packages] == ["a"]


def test_long_lists_are_capped_with_the_real_total(tmp_path: Path) -> None:
    names = [f"pkg{i:05d}" for i in range(software.MAX_PACKAGES + 7)]
    facts = software.SoftwareCache(None).get(CountingInventory(names), 60)
    assert facts.truncated
    assert facts.total == software.MAX_PACKAGES + 7
    assert len(facts.packages) == software.MAX_PACKAGES
    assert not os.listdir(tmp_path)  # no state folder: memory only
