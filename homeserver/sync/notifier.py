"""Wakes exactly the waiting /sync requests a change concerns.

A /sync request registers its waiter *before* it looks for news, so a change
landing between the look and the wait still wakes it; nothing in the server
polls. Changes name the users they concern: a room event concerns the room's
local joined members (and the target of a membership change), a typing or
receipt change the same, account data its owner, presence those who share a
room with the user.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Waiter:
    """One waiting request; `wait` returns True when woken, False on timeout."""

    __slots__ = ("_event", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    @property
    def woken(self) -> bool:
        return self._event.is_set()

    def rearm(self) -> None:
        """Wait again (a request that looked and found nothing for it): what lands from
        now on wakes it, as a fresh registration would, without one."""
        self._event.clear()

    async def wait(self, timeout_s: float) -> bool:
        if self._event.is_set():
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[Waiter]] = {}
        self.wakeups = 0  # how many waiters were woken in total (for tests and metrics)
        self.closed = False

    def close(self) -> None:
        """The server is stopping: wake every waiting request and let none wait again.
        The listeners' shutdown waits for requests in flight, so a long-polling /sync
        would otherwise hold the stop for its whole timeout (30 s from most clients),
        even when its client has gone."""
        self.closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.wake()

    def register(self, user_id: str) -> Waiter:
        waiter = Waiter(user_id)
        self._waiters.setdefault(user_id, set()).add(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        waiters = self._waiters.get(waiter.user_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[waiter.user_id]

    def waiting_users(self) -> int:
        return len(self._waiters)

    def notify_users(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            for waiter in self._waiters.get(user_id, ()):
                if not waiter.woken:
                    waiter.wake()
                    self.wakeups += 1
