"""The global event stream position.

Positions are handed out before a write and may commit out of order (several
rooms persist concurrently); readers must only be told about a position once
every lower one is settled, or a /sync could skip an event forever.
"""

from __future__ import annotations

import heapq


class StreamTracker:
    def __init__(self, current: int) -> None:
        self._next = current + 1
        self._current = current
        self._pending: list[int] = []
        self._done: set[int] = set()

    @property
    def current(self) -> int:
        """Every position up to here is committed (or abandoned)."""
        return self._current

    def allocate(self) -> int:
        pos = self._next
        self._next += 1
        heapq.heappush(self._pending, pos)
        return pos

    def finish(self, pos: int) -> None:
        """Mark a position settled, whether its write committed or failed."""
        self._done.add(pos)
        while self._pending and self._pending[0] in self._done:
            top = heapq.heappop(self._pending)
            self._done.discard(top)
            self._current = top
