"""The device-list stream: which users' devices or device keys changed.

A client tracking another user's devices (to encrypt for them) learns that it
must refetch their keys from /sync's `device_lists.changed` or from
`GET /keys/changes`. `DeviceLists.mark_changed` is the one way a change enters
the stream: a device created (login) or deleted, device keys or cross-signing
keys uploaded; it wakes the /sync of every local user who shares a room with
the user, and of the user themself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

ChangeListener = Callable[[str], Awaitable[None]]


class DeviceLists:
    def __init__(self) -> None:
        # Told of each change after it is recorded (the sync stream wakes readers).
        self.on_change: list[ChangeListener] = []

    async def mark_changed(self, user_id: str) -> None:
        """Record that `user_id`'s devices or their keys changed (a device added,
        removed or renamed keys, new device keys or cross-signing keys), and wake
        the /sync of every local user who shares a room with them, and their own.
        Call it after the change is committed; it may be called for local users
        only (remote users' changes arrive over federation)."""
        for listener in self.on_change:
            await listener(user_id)
