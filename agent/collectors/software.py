"""Software inventory, cached on disk and refreshed on its own schedule.

Listing installed software costs from 100 ms (dpkg) to many seconds (system_profiler), so
only the first snapshot of an agent's life may wait for it; later snapshots get the cached
list at once and a stale list is refreshed in a background thread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf.message import DecodeError

from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.platform_parts import PlatformParts
from sonde.v1 import diagnostics_pb2

MAX_PACKAGES = 2000  # keeps a snapshot far below the 4 MiB message limit
CACHE_FILE = "software-inventory.pb"

Inventory = Callable[[], diagnostics_pb2.SoftwareFacts]


def capped(facts: diagnostics_pb2.SoftwareFacts) -> diagnostics_pb2.SoftwareFacts:
    """Sort by name, keep the first MAX_PACKAGES, keep the real total and say it was cut."""
    packages = sorted(facts.packages, key=lambda p: (p.name.lower(), p.version))
    result = diagnostics_pb2.SoftwareFacts(source=facts.source, total=len(packages))
    result.packages.extend(packages[:MAX_PACKAGES])
    result.truncated = len(packages) > MAX_PACKAGES
    result.refreshed_at.GetCurrentTime()
    return result


class SoftwareCache:
    """One cache per state folder: memory first, then the file, then a fresh listing."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._facts: diagnostics_pb2.SoftwareFacts | None = None
        self._refreshing: threading.Thread | None = None

    def _age_s(self, facts: diagnostics_pb2.SoftwareFacts) -> float:
        return time.time() - facts.refreshed_at.ToSeconds()

    def _load(self) -> diagnostics_pb2.SoftwareFacts | None:
        if self.path is None:
            return None
        try:
            data = self.path.read_bytes()
            return diagnostics_pb2.SoftwareFacts.FromString(data)
        except (OSError, DecodeError):
            return None  # no cache yet, or a damaged one: list afresh

    def _store(self, facts: diagnostics_pb2.SoftwareFacts) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".software-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(facts.SerializeToString())
            os.replace(temp, self.path)
        except OSError:
            Path(temp).unlink(missing_ok=True)  # a full disk: keep the list in memory only

    def refresh(self, inventory: Inventory) -> diagnostics_pb2.SoftwareFacts:
        facts = capped(inventory())
        with self._lock:
            self._facts = facts
        self._store(facts)
        return facts

    def _refresh_in_background(self, inventory: Inventory) -> None:
        with self._lock:
            if self._refreshing is not None and self._refreshing.is_alive():
                return
            thread = threading.Thread(
                target=self._refresh_quietly,
                args=(inventory,),
                daemon=True,
                name="software-refresh",
            )
            self._refreshing = thread
        thread.start()

    def _refresh_quietly(self, inventory: Inventory) -> None:
        # Whatever went wrong, the old list stays and the next stale snapshot retries.
        with contextlib.suppress(Exception):
            self.refresh(inventory)

    def get(self, inventory: Inventory, max_age_s: float) -> diagnostics_pb2.SoftwareFacts:
        with self._lock:
            facts = self._facts
        if facts is None:
            facts = self._load()
            if facts is not None:
                with self._lock:
                    self._facts = facts
        if facts is None:
            return self.refresh(inventory)  # the first time ever: wait for it
        if self._age_s(facts) > max_age_s:
            self._refresh_in_background(inventory)
        return facts


_caches: dict[Path | None, SoftwareCache] = {}
_caches_lock = threading.Lock()


def cache_for(state_dir: Path | None) -> SoftwareCache:
    with _caches_lock:
        if state_dir not in _caches:
            path = None if state_dir is None else state_dir / CACHE_FILE
            _caches[state_dir] = SoftwareCache(path)
        return _caches[state_dir]


def collect_software(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.SoftwareFacts:
    return cache_for(ctx.state_dir).get(parts.software_inventory, ctx.software_max_age_s)
