"""Reading some keys of a snapshot. With `look_up` (a membership change, whose target's
key is often new), a key this process has not seen is looked up, one that no snapshot
can hold (no nid at all) is simply absent, and the whole state (a member per key in a
big room) is never copied for either; without it, the whole state is read instead."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from homeserver.records.events import StoredEvent
from homeserver.rooms.state_reader import RoomStateReader
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore

KEY_NIDS = {("m.room.create", ""): 1, ("m.room.member", "@a:x"): 2, ("m.room.member", "@b:x"): 3}
SNAPSHOT = {1: 10, 2: 20, 3: 30}  # key nid -> event nid


class State:
    def __init__(self) -> None:
        self.lookups: list[tuple[str, str]] = []
        self.whole_reads = 0

    def known_key_nid(self, key: tuple[str, str]) -> int | None:
        return None  # a fresh process: nothing seen yet

    async def lookup_key_nid(self, key: tuple[str, str]) -> int | None:
        self.lookups.append(key)
        return KEY_NIDS.get(key)

    async def get_entries(self, snapshot: int, key_nids: Iterable[int]) -> dict[int, int]:
        return {k: SNAPSHOT[k] for k in key_nids if k in SNAPSHOT}

    async def get_state(self, snapshot: int) -> dict[int, int]:
        self.whole_reads += 1
        return dict(SNAPSHOT)

    async def keys_for(self, nids: set[int]) -> dict[int, tuple[str, str]]:
        return {n: k for k, n in KEY_NIDS.items() if n in nids}


class Events:
    async def get_events_by_nid(self, nids: Iterable[int]) -> dict[int, StoredEvent]:
        out = {}
        for n in nids:
            event: dict[str, Any] = {"type": "t", "content": {}}
            out[n] = StoredEvent(n, f"$e{n}", 1, None, None, None, False, None, None, None, None, event)
        return out


async def test_unseen_and_absent_keys() -> None:
    wanted = [("m.room.member", "@b:x"), ("m.room.member", "@new:x"), ("m.room.create", "")]
    for look_up in (True, False):
        state = State()
        reader = RoomStateReader(cast(EventStore, Events()), cast(StateStore, state))
        found = await reader.state_events_at_snapshot(5, wanted, look_up=look_up)
        assert list(found) == [("m.room.member", "@b:x"), ("m.room.create", "")]  # in the order asked
        assert found[("m.room.member", "@b:x")].nid == 30
        assert found[("m.room.create", "")].nid == 10
        assert state.lookups == (wanted if look_up else [])
        assert state.whole_reads == (0 if look_up else 1)
