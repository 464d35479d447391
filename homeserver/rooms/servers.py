"""Which other servers take part in a room: the domains of its joined members.

Every outbound PDU and room EDU asks this, so the answer is cached per room and
dropped when a membership event of the room is persisted (the room activity's
listeners see every persisted event, local or received over federation), except a
local user's own, sent here: that moves no other server's membership (a local event
is built on the whole head, nothing resolved), so a big room's stream of local joins
and leaves costs no read of its members each.

A local PDU's destinations are worked out by the transaction that persists it
(`FederationSender.queue_event`), from the membership after that event, so a
server that joins later is not sent history it was never part of (it backfills
that if it wants it).
"""

from __future__ import annotations

from collections import OrderedDict

from federation.events.identifiers import domain_of
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.storage.rooms import RoomStore

_CACHE_SIZE = 20_000  # rooms; a miss costs one indexed read


class RoomServers:
    def __init__(self, *, server_name: str, rooms: RoomStore) -> None:
        self.rooms = rooms
        self.server_name = server_name
        self._cache: OrderedDict[int, frozenset[str]] = OrderedDict()  # room nid -> joined servers
        self._versions: dict[int, int] = {}  # bumped per membership change, guards lazy loads

    async def servers_in_room(self, room: RoomRecord) -> set[str]:
        """Domains of the room's joined members, ours excluded (a fresh set the
        caller may change)."""
        cached = self._cache.get(room.room_nid)
        if cached is not None:
            self._cache.move_to_end(room.room_nid)
        else:
            version = self._versions.get(room.room_nid, 0)
            members = await self.rooms.members(room.room_nid, "join")
            cached = frozenset(domain_of(user_id) for user_id, _, _ in members) - {self.server_name}
            # A membership change that landed during the read would make this stale: use, don't keep.
            if self._versions.get(room.room_nid, 0) == version:
                self._cache[room.room_nid] = cached
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
        return set(cached)

    def cached(self, room_nid: int) -> frozenset[str] | None:
        """The room's other servers if cached, without any read (for code running inside
        a write transaction, which may use nothing but its Txn)."""
        return self._cache.get(room_nid)

    def version(self, room_nid: int) -> int:
        """Bumped by every membership change of the room."""
        return self._versions.get(room_nid, 0)

    def invalidate(self, room_nid: int) -> None:
        """Forget a room's servers; for writers of memberships that bypass RoomService."""
        self._cache.pop(room_nid, None)
        self._versions[room_nid] = self._versions.get(room_nid, 0) + 1

    def on_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """A listener of every persisted event (see homeserver/rooms/activity.py), run
        before the room's lock is released, so the next event of the room sees it."""
        if event.type != "m.room.member" or event.state_key is None:
            return
        nid = room.room_nid
        try:
            ours = domain_of(event.state_key) == domain_of(event.sender) == self.server_name
        except ValueError:
            ours = False
        # A local event is the room's new present as it is (built on the whole head, no
        # resolution), unlike a received one, which may move others' memberships too.
        if ours and not event.outlier:
            self._versions[nid] = self._versions.get(nid, 0) + 1  # a read under way predates it
        else:
            self.invalidate(nid)
