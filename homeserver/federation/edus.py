"""EDUs over federation: one registration per EDU type, for both directions.

Each EDU type has a handler class that lives with its service (m.typing in
homeserver/typing.py, m.receipt in homeserver/receipts.py, m.presence in
homeserver/presence.py) and is registered in homeserver/server.py:

* inbound, the transaction handler (homeserver/federation/inbound.py) hands the
  content of each received EDU to `receive` of the handler registered for its
  type; EDUs of a type nobody registered are ignored;
* outbound, the sender (homeserver/federation/sender.py) calls `watch` once as it
  starts: the handler hooks its service's changes and submits each one that
  should leave the server as a `PendingEdus`, a callable the sender's intake
  worker awaits, in submission order, for the EDUs to send and where.
  An `OutgoingEdu` without a `coalesce_key` is durable (queued in the database
  outbox, so it survives a restart); one with a key is kept in memory only, where
  a newer EDU with the same key for the same destination replaces the queued one.

A new EDU type (to-device messages, device list updates, signing key updates)
is one handler class next to its service and one line registering it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from homeserver.identifiers import domain_is

if TYPE_CHECKING:
    from homeserver.records.rooms import RoomRecord
    from homeserver.storage.rooms import RoomStore

EphemeralKey = tuple[str, ...]


@dataclass(frozen=True)
class OutgoingEdu:
    """One EDU for some destinations."""

    edu_type: str
    content: dict[str, Any]
    destinations: Collection[str]
    # None: durable; else kept in memory, replaced by a newer EDU with the same key.
    coalesce_key: EphemeralKey | None = None

    def body(self) -> dict[str, Any]:
        """The EDU as a transaction carries it."""
        return {"edu_type": self.edu_type, "content": self.content}


# What a handler submits for one change: awaited by the sender for the EDUs to queue.
PendingEdus = Callable[[], Awaitable[Iterable[OutgoingEdu]]]
Submit = Callable[[PendingEdus], None]


class EduHandler(Protocol):
    """What one EDU type does in each direction."""

    @property
    def edu_type(self) -> str: ...

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        """An EDU of this type from `origin` (authenticated), best effort."""
        ...

    def watch(self, submit: Submit) -> None:
        """Hook the service's changes; `submit` those other servers should hear of.
        Called once, synchronously on the hot path of each change: do no I/O."""
        ...


class EduRegistry:
    """The handlers, by EDU type."""

    def __init__(self, handlers: Iterable[EduHandler] = ()) -> None:
        self._handlers: dict[str, EduHandler] = {}
        for handler in handlers:
            self.register(handler)

    def register(self, handler: EduHandler) -> None:
        if handler.edu_type in self._handlers:
            raise ValueError(f"two handlers for {handler.edu_type}")
        self._handlers[handler.edu_type] = handler

    def handler(self, edu_type: str) -> EduHandler | None:
        return self._handlers.get(edu_type)

    def __iter__(self) -> Iterator[EduHandler]:
        return iter(self._handlers.values())


def sent_by(user_id: Any, origin: str) -> bool:
    """Whether `user_id` is a user of `origin`: a server speaks only for its own users."""
    return isinstance(user_id, str) and domain_is(user_id, origin)


async def servers_sharing_rooms(
    rooms: RoomStore, servers_in_room: Callable[[RoomRecord], Awaitable[Iterable[str]]], user_id: str
) -> set[str]:
    """Servers with a member in a federated room the user is joined to: where
    news of a user (presence, device lists) goes. Internal rooms (`m.federate`
    false) add none."""
    dests: set[str] = set()
    for room_id, _ in await rooms.rooms_for_user(user_id):
        room = await rooms.get_room(room_id)
        if room is not None and room.federate:
            dests |= set(await servers_in_room(room))
    return dests
