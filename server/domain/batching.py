"""Small frequent writes (heartbeats, session changes) go to the database in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def flush_in_batches(
    flush: Callable[[], Awaitable[int]], full: asyncio.Event, interval_s: float, what: str
) -> None:
    """Call `flush` every `interval_s`, or as soon as `full` is set, until cancelled; a failed
    flush is logged and its batch retried with the next one; a last flush on the way out."""
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(full.wait(), interval_s)
            try:
                await flush()
            except Exception:
                log.exception("could not store a batch of %s; will retry", what)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(flush())
