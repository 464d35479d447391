"""Room tags (the spec's "Room Tagging"): a user's labels on a room, kept as the
room's `m.tag` account data ({"tags": {name: {"order": 0..1}}}), so they reach
the user's devices in /sync's room `account_data` like any other entry.

Adding or removing one tag rewrites the whole m.tag content; a user's tag
changes are serialised so two concurrent changes never lose one another.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

from homeserver.account_data import AccountDataService
from homeserver.errors import MatrixError

TAG_TYPE = "m.tag"
MAX_TAG_BYTES = 255  # the spec: a tag's name MUST NOT exceed 255 bytes


def check_tag_name(tag: str) -> None:
    if not tag or len(tag.encode("utf-8")) > MAX_TAG_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", f"A tag's name must be 1 to {MAX_TAG_BYTES} bytes")


def check_tag_content(content: dict[str, Any]) -> dict[str, Any]:
    """The tag's object as stored: `order`, when given, is a number in [0, 1]."""
    if "order" in content:
        order = content["order"]
        if isinstance(order, bool) or not isinstance(order, (int, float)) or not math.isfinite(order):
            raise MatrixError(400, "M_INVALID_PARAM", "'order' must be a number")
        if not 0 <= order <= 1:
            raise MatrixError(400, "M_INVALID_PARAM", "'order' must be between 0 and 1")
    return content


class TagService:
    def __init__(self, account_data: AccountDataService) -> None:
        self.account_data = account_data
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, user_id: str) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[user_id] = lock
        return lock

    async def get_tags(self, user_id: str, room_id: str) -> dict[str, Any]:
        content = await self.account_data.get_room(user_id, room_id, TAG_TYPE)
        tags = content.get("tags") if isinstance(content, dict) else None
        return dict(tags) if isinstance(tags, dict) else {}

    async def add_tag(self, user_id: str, room_id: str, tag: str, content: dict[str, Any]) -> None:
        check_tag_name(tag)
        check_tag_content(content)
        async with self._lock(user_id):
            tags = await self.get_tags(user_id, room_id)
            tags[tag] = content
            await self.account_data.set_room(user_id, room_id, TAG_TYPE, {"tags": tags})

    async def remove_tag(self, user_id: str, room_id: str, tag: str) -> None:
        """Removing a tag the room does not have is not an error (the spec's 200)."""
        async with self._lock(user_id):
            tags = await self.get_tags(user_id, room_id)
            if tag not in tags:
                return
            del tags[tag]
            await self.account_data.set_room(user_id, room_id, TAG_TYPE, {"tags": tags})
