"""The analytics' active users per day: each local user who sent a message that day,
counted once, whether their row was written by this run or an earlier one, and never
left out because a transaction that wrote it failed (on both engines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.analytics.service import DAY_MS
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.storage.database import Txn
from tests.conftest import FakeClock, running_api
from tests.homeserver.api.reading_helpers import create, send, user


class _FailOn:
    """An index that makes the write of one message fail, after the analytics' own
    rows were written in its transaction."""

    def __init__(self, body: str) -> None:
        self.body = body

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None:
        if stored.event.get("content", {}).get("body") == self.body:
            raise RuntimeError("this write fails")

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None:
        return None


async def _active(api: Any, days: int) -> list[int]:
    return (await api.hs.analytics.report(days))["active_users"]  # type: ignore[no-any-return]


async def test_active_users_per_day(
    db_overrides: dict[str, Any], tmp_path: Path, aiohttp_client: Any
) -> None:
    clock = FakeClock()
    async with running_api(tmp_path / "hs", aiohttp_client, clock=clock, **db_overrides) as api:
        alice = await user(api, "alice")
        bob = await user(api, "bob")
        room = await create(api, alice, preset="public_chat")
        await api.post(f"rooms/{room}/join", {}, token=bob)
        for i in range(3):
            await send(api, room, alice, f"hello {i}")
        assert await _active(api, 1) == [1]

        # The next day: alice is active again; bob's first message fails to be written,
        # taking its row with it, and his next one counts him.
        clock.advance(DAY_MS)
        await send(api, room, alice, "a new day")
        api.hs.event_persister.indexes.append(_FailOn("lost"))
        status, _ = await api.request(
            "PUT", f"rooms/{room}/send/m.room.message/lost", {"msgtype": "m.text", "body": "lost"},
            token=bob, expect=None,
        )
        assert status == 500
        assert await _active(api, 2) == [1, 1]
        await send(api, room, bob, "kept")
        await send(api, room, bob, "kept again")
        assert await _active(api, 2) == [1, 2]

    # After a restart, nothing is remembered: messages write their rows again, which
    # changes no count, and a new day still counts each user once.
    async with running_api(tmp_path / "hs", aiohttp_client, clock=clock, **db_overrides) as api:
        alice = (await api.login("alice"))["access_token"]
        await send(api, room, alice, "after the restart")
        assert await _active(api, 2) == [1, 2]
        clock.advance(DAY_MS)
        await send(api, room, alice, "the third day")
        await send(api, room, alice, "the third day again")
        assert await _active(api, 3) == [1, 2, 1]


async def test_messages_without_federation_read_no_member_list(
    tmp_path: Path, aiohttp_client: Any, monkeypatch: Any
) -> None:
    """With federation off, a message counts as internal without its write reading the
    room's members (the room servers' cache, which the sender fills, stays empty)."""
    from homeserver.storage.analytics import AnalyticsStore

    reads: list[int] = []
    real = AnalyticsStore.joined_users_in_txn

    async def counted(txn: Txn, room_nid: int) -> list[str]:
        reads.append(room_nid)
        return await real(txn, room_nid)

    monkeypatch.setattr(AnalyticsStore, "joined_users_in_txn", staticmethod(counted))
    async with running_api(tmp_path / "hs", aiohttp_client, federation={"enabled": False}) as api:
        alice = await user(api, "alice")
        room = await create(api, alice, preset="public_chat")
        for i in range(3):
            await send(api, room, alice, f"m{i}")
        await api.hs.analytics.flush()
        report = await api.hs.analytics.report(1)
        assert report["messages"] == {"internal": [3], "federated": [0]}
        assert reads == []
