"""The stream provider interface, and the request every provider answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from homeserver.accounts.auth import Requester
    from homeserver.filters.sync_filter import SyncFilter
    from homeserver.records.rooms import RoomRecord, UserMembership
    from homeserver.sync.tokens import SyncToken


@dataclass
class SyncRequest:
    """One computation of a /sync response. `now` is read before anything else and
    every stream is read only up to its position in it, so whatever lands during
    the computation is left for the next request rather than half-sent or lost."""

    requester: Requester
    since: SyncToken | None
    now: SyncToken
    filter: SyncFilter
    full_state: bool
    memberships: list[UserMembership] = field(default_factory=list)
    # On an incremental sync (not full_state): the rooms (by nid) the user joined since
    # the token. A joined member's later membership events (a new display name or
    # avatar) are no new join: the room continues from the token.
    newly_joined: frozenset[int] = frozenset()
    # The streams that moved since the token and have a part in rooms, in the
    # order they are registered; the room events stream asks them room by room.
    room_streams: list[StreamProvider] = field(default_factory=list)
    # What a stream read once for the whole request (in `prepare`), by stream key.
    loaded: dict[str, Any] = field(default_factory=dict)
    # v1.16 (MSC4222): rooms carry `state_after` (the state changes up to the timeline's
    # end, timeline events included) instead of `state` (up to its start).
    use_state_after: bool = False

    @property
    def user_id(self) -> str:
        return self.requester.user_id

    def since_pos(self, key: str) -> int:
        """The token's position in a stream (0 on an initial sync)."""
        return getattr(self.since, key) if self.since is not None else 0

    def advanced(self, key: str) -> bool:
        """Whether a stream moved since the token (always, on an initial sync)."""
        return self.since is None or getattr(self.now, key) > getattr(self.since, key)


class StreamProvider:
    """One stream of /sync. Subclasses set `key` and override what they serve;
    the defaults serve nothing. A provider also owns its wake-up keys: built
    with its service and the notifier, it hooks the service's changes and wakes
    the users each change concerns (`notifier.notify_users`)."""

    # The stream's field in the sync token (homeserver/sync/tokens.py).
    key: ClassVar[str]
    # Whether the stream has a part in rooms' entries (`room_part`).
    in_rooms: ClassVar[bool] = False

    async def current_position(self) -> int:
        """The position every change up to which is visible to readers."""
        raise NotImplementedError

    def position_now(self) -> int | None:
        """`current_position` when it is known without waiting (its service has
        loaded it), else None. Every woken long poll reads every stream's position,
        twice per response: a plain call, not a chain of coroutines."""
        return None

    def moved(self, req: SyncRequest) -> bool:
        """Whether the stream has anything for this request; a stream that has not
        moved is not asked anything else."""
        return req.advanced(self.key)

    async def prepare(self, req: SyncRequest) -> None:
        """Read, once for the whole request, what `room_part` answers from
        (into `req.loaded[self.key]`)."""

    def quiet_in(self, req: SyncRequest, room_id: str) -> bool:
        """True when `room_part` certainly has nothing for the room in this request (asked
        after `prepare`, without the room's record): an incremental sync then skips the
        user's rooms that have no new events and nothing from any stream, rather than
        computing an entry for each of them. False (the default) means "ask the room"."""
        return False

    async def room_part(self, req: SyncRequest, room: RoomRecord, membership: str) -> dict[str, list[dict[str, Any]]]:
        """The stream's events in one room's entry, by section ("ephemeral",
        "account_data"), filtered; `membership` is the section the room is in
        ("join" or "leave")."""
        return {}

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        """The stream's top-level sections of the response, filtered; {} when it
        has nothing to say."""
        return {}
