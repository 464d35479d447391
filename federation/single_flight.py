"""One in-flight call per key, shared by everyone who asks meanwhile.

Outbound fetches are often caused by inbound traffic: ten requests signed by a
server whose keys we lack, or ten messages naming the same host, would each
start the same fetch. With :class:`SingleFlight` the first caller starts it and
the others wait for its result, so a burst costs one outbound request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Runs at most one call per key at a time; concurrent callers share it.

    The call runs as its own task: a caller that is cancelled stops waiting
    without cancelling the call for the others. Its result (or exception)
    goes to every caller who was waiting; the next call after it finishes
    starts afresh.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[V]] = {}

    def in_flight(self, key: K) -> bool:
        """Whether a call for ``key`` is running (a new caller would share it)."""
        return key in self._calls

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        task = self._calls.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._calls[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Future[V]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved, so no "never retrieved" warning if nobody waited

    def __len__(self) -> int:
        return len(self._calls)
