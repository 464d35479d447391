"""Which membership events a lazy-loading /sync client already holds.

With `lazy_load_members` (and `include_redundant_members` false) the spec lets
the server assume a client remembers the membership events it was sent, and
asks it to keep such redundant members out of later responses. This remembers,
per (user, device, state filter), which member event was sent for each room
member and in which response (the response's events position). A member is
redundant for a request only if the same event went out in a response the
request's `since` token is at or after, so a retried sync (the same token
again, its answer lost) gets the members again.

In memory and bounded: forgetting (a restart, eviction) only means a member is
sent once more, which the spec allows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

_MAX_CLIENTS = 10_000
_MAX_MEMBERS_PER_CLIENT = 100_000

_ClientKey = tuple[str, str, str]  # (user_id, device_id, state filter)


class LazyMembersSent:
    def __init__(self) -> None:
        # client -> (room_id, member) -> (member event nid, events position of the response)
        self._sent: OrderedDict[_ClientKey, dict[tuple[str, str], tuple[int, int]]] = OrderedDict()

    def known(self, client: _ClientKey, room_id: str, member: str, event_nid: int, since_pos: int) -> bool:
        """Whether the client holds this member event from a response at or before `since_pos`."""
        sent = self._sent.get(client)
        if sent is None:
            return False
        entry = sent.get((room_id, member))
        return entry is not None and entry[0] == event_nid and entry[1] <= since_pos

    def record(self, client: _ClientKey, room_id: str, members: Iterable[tuple[str, int]], pos: int) -> None:
        """Members ((user ID, event nid)) sent in the response whose events position is `pos`."""
        members = list(members)
        if not members:
            return
        sent = self._sent.get(client)
        if sent is None:
            sent = self._sent[client] = {}
            if len(self._sent) > _MAX_CLIENTS:
                self._sent.popitem(last=False)
        else:
            self._sent.move_to_end(client)
        for member, nid in members:
            key = (room_id, member)
            old = sent.get(key)
            # A retried request must not make an earlier send look later than it was.
            if old is None or old[0] != nid or old[1] > pos:
                sent[key] = (nid, pos)
        if len(sent) > _MAX_MEMBERS_PER_CLIENT:
            sent.clear()
