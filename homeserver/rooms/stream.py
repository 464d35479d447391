"""The global event stream position.

Positions are handed out before a write and may commit out of order (several
rooms persist concurrently); readers must only be told about a position once
every lower one is settled, or a /sync could skip an event forever.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class StreamTracker:
    def __init__(self, current: int) -> None:
        self._next = current + 1
        self._current = current
        self._pending: list[int] = []
        self._done: set[int] = set()
        # (position, tie-break, callback) to run once every position up to it is settled
        self._on_settled: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = itertools.count()

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
        while self._on_settled and self._on_settled[0][0] <= self._current:
            heapq.heappop(self._on_settled)[2]()

    def waits_below(self, pos: int) -> bool:
        """Whether a position below `pos` is still unsettled: readers told of `pos`
        now cannot see it yet (`current` stops below it)."""
        return self._current < pos - 1

    def when_settled(self, pos: int, callback: Callable[[], None]) -> None:
        """Run `callback` once every position up to `pos` is settled (at once if so).
        Who was told of an event whose position committed ahead of a lower one looked
        and found nothing new; this tells them again when it becomes visible."""
        if pos <= self._current:
            callback()
        else:
            heapq.heappush(self._on_settled, (pos, next(self._seq), callback))
