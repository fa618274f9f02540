"""One way to sleep that a stop request cuts short, for every loop that retries or polls.

Bridge reconnects, the lease's retries, stage start-up retries, the health writer and the
registry watcher all wait like this; a shutdown must not sit out a long back-off.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_or_stop(stop: asyncio.Event, delay: float) -> bool:
    """Sleep ``delay`` seconds unless ``stop`` is set first; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()
