"""The syncing device's one-time key counts and unused fallback key types
(`device_one_time_keys_count`, `device_unused_fallback_key_types`): in every
response, initial and incremental, as Synapse sends them, so a client tops up its
keys when they run low. Not a stream: they have no position and are never news by
themselves (a response carrying only them does not end a long poll).
"""

from __future__ import annotations

from typing import Any, Protocol

from homeserver.sync.streams.base import SyncRequest


class KeyCounts(Protocol):
    """`KeysService` (homeserver/e2ee/keys.py)."""

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]: ...

    async def unused_fallback_algorithms(self, user_id: str, device_id: str) -> list[str]: ...


class E2eeKeyCounts:
    keys: tuple[str, ...] = ("device_one_time_keys_count", "device_unused_fallback_key_types")

    def __init__(self, keys: KeyCounts) -> None:
        self.key_counts = keys

    async def part(self, req: SyncRequest) -> dict[str, Any]:
        user_id, device_id = req.requester.user_id, req.requester.device_id
        return {
            "device_one_time_keys_count": await self.key_counts.one_time_key_counts(user_id, device_id),
            "device_unused_fallback_key_types": await self.key_counts.unused_fallback_algorithms(user_id, device_id),
        }
