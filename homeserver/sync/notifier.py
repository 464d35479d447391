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
from collections.abc import Set as AbstractSet


class Waiter:
    """One waiting request; `wait` returns True when woken, False on timeout.

    A bare future and one timer per wait (not an `asyncio.Event` under
    `asyncio.timeout`): a busy room wakes hundreds of these per event, and every
    woken request waits again right after its response."""

    __slots__ = ("_future", "_woken", "user_id")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self._woken = False
        self._future: asyncio.Future[bool] | None = None

    def wake(self) -> None:
        self._woken = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(True)

    @property
    def woken(self) -> bool:
        return self._woken

    def rearm(self) -> None:
        """Wait again (a request that looked and found nothing for it): what lands from
        now on wakes it, as a fresh registration would, without one."""
        self._woken = False

    async def wait(self, timeout_s: float) -> bool:
        if self._woken:
            return True
        loop = asyncio.get_running_loop()
        future = self._future = loop.create_future()
        timer = loop.call_later(timeout_s, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()
            self._future = None


def _time_out(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


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
        # Every waiting reader of a busy room, per event, before any of them can answer:
        # `Waiter.wake` inlined (a method call and a property less per reader).
        waiting = self._waiters
        woken = 0
        if isinstance(user_ids, AbstractSet) and len(user_ids) > len(waiting):
            # A big room's members told of its event: walk the (fewer) users waiting
            # instead, so a send into a room of 10,000 costs what its readers cost.
            user_ids = [user_id for user_id in waiting if user_id in user_ids]
        for user_id in user_ids:
            waiters = waiting.get(user_id)
            if waiters is None:
                continue
            for waiter in waiters:
                if not waiter._woken:
                    waiter._woken = True
                    future = waiter._future
                    if future is not None and not future.done():
                        future.set_result(True)
                    woken += 1
        self.wakeups += woken
