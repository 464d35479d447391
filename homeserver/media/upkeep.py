"""The media repository's periodic upkeep: recorded accesses flushed about every
minute, and expired uploads, old local media and stale remote copies cleaned every
``media.cleanup_interval_s``.

It runs from start-up whether or not the repository has been built: the repository is
built at the first media request (`HomeServer.media`), and a server whose users never
touched media still has expired rows and old files to clean. Flushing asks only a
built repository (one never built recorded no accesses); cleaning builds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


async def run_upkeep(
    interval_s: int,
    flush: Callable[[], Awaitable[None]],
    cleanup: Callable[[], Awaitable[object]],
) -> None:
    """Until cancelled: `flush` about every minute, `cleanup` every `interval_s`."""
    interval = max(1, interval_s)
    flushes = max(1, interval // 60)
    while True:
        for _ in range(flushes):
            await asyncio.sleep(interval / flushes)
            try:
                await flush()
            except Exception:
                logger.exception("recording media accesses failed")
        try:
            await cleanup()
        except Exception:
            logger.exception("media cleanup failed")
