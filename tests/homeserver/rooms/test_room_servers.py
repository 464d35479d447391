"""The servers-in-room cache: a local user's own membership event keeps it (it moves no
other server's membership), anything else drops it, and what it answers is always
what the memberships say."""

from __future__ import annotations

from typing import Any, cast

from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.servers import RoomServers
from homeserver.storage.rooms import RoomStore

ROOM = RoomRecord(7, "!r:here", "10", "@a:here", True, 0, False)


class Memberships:
    """The room's joined members, counting the reads."""

    def __init__(self, joined: list[str]) -> None:
        self.joined = joined
        self.reads = 0

    async def members(self, room_nid: int, membership: str | None = None) -> list[tuple[str, str, int]]:
        self.reads += 1
        return [(u, "join", i) for i, u in enumerate(self.joined)]


def member(sender: str, target: str, membership: str, *, outlier: bool = False) -> StoredEvent:
    event: dict[str, Any] = {
        "type": "m.room.member", "sender": sender, "state_key": target, "content": {"membership": membership},
    }
    return StoredEvent(1, "$e", ROOM.room_nid, None if outlier else 5, None, None, outlier, None, None, None,
                       None, event)


async def test_local_memberships_keep_the_cache_and_others_drop_it() -> None:
    store = Memberships(["@a:here", "@b:there"])
    servers = RoomServers(server_name="here", rooms=cast(RoomStore, store))
    assert await servers.servers_in_room(ROOM) == {"there"}

    # Local users joining, leaving, kicked by a local admin: no read again.
    store.joined.append("@c:here")
    servers.on_event(member("@c:here", "@c:here", "join"), ROOM)
    servers.on_event(member("@a:here", "@c:here", "leave"), ROOM)
    assert await servers.servers_in_room(ROOM) == {"there"}
    assert store.reads == 1

    # A received membership (another server's user joining) is read again.
    store.joined.append("@d:elsewhere")
    servers.on_event(member("@d:elsewhere", "@d:elsewhere", "join"), ROOM)
    assert await servers.servers_in_room(ROOM) == {"there", "elsewhere"}
    assert store.reads == 2

    # A local kick of another server's user: that server may have no one left.
    store.joined.remove("@b:there")
    servers.on_event(member("@a:here", "@b:there", "leave"), ROOM)
    assert await servers.servers_in_room(ROOM) == {"elsewhere"}
    assert store.reads == 3

    # A local user's membership held only as an outlier (a remote invite's) is no
    # membership of the room's present: dropped, to be safe.
    servers.on_event(member("@c:here", "@c:here", "join", outlier=True), ROOM)
    assert await servers.servers_in_room(ROOM) == {"elsewhere"}
    assert store.reads == 4


async def test_a_read_under_way_is_not_kept_past_a_local_membership() -> None:
    store = Memberships(["@b:there"])
    servers = RoomServers(server_name="here", rooms=cast(RoomStore, store))
    version = servers.version(ROOM.room_nid)
    servers.on_event(member("@c:here", "@c:here", "join"), ROOM)
    assert servers.version(ROOM.room_nid) == version + 1
    assert servers.cached(ROOM.room_nid) is None  # nothing was cached to keep
    assert await servers.servers_in_room(ROOM) == {"there"}
    assert servers.cached(ROOM.room_nid) == frozenset({"there"})
