"""GET /sync: initial and incremental, long-polling on the notifier.

The response is assembled from the stream providers (homeserver/sync/streams/),
asked generically: the token for the response is read from every provider
*before* anything else, and each stream is read only up to it, so whatever
lands during the computation is left for the next request rather than
half-sent or lost. When no stream has moved since the caller's token the
answer is the token again, without touching the database; otherwise only the
providers that moved are asked for their part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from homeserver.filters.sync_filter import SyncFilter
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord, UserMembership
from homeserver.sync.streams import StreamProvider, SyncRequest
from homeserver.sync.tokens import SyncToken

if TYPE_CHECKING:
    from homeserver.accounts.auth import Requester
    from homeserver.clock import Clock
    from homeserver.storage.rooms import MembershipQueries
    from homeserver.sync.notifier import Notifier

_MEMBERSHIP_CACHE_SIZE = 50_000


class EveryResponsePart(Protocol):
    """Top-level fields present in every response, initial or incremental, even one
    where no stream moved (the syncing device's one-time key counts): never news by
    themselves, so they do not end a long poll."""

    keys: tuple[str, ...]

    async def part(self, req: SyncRequest) -> dict[str, Any]: ...


class JoinedThroughout(Protocol):
    """Whether a user joined now (by membership event `event_nid`) was joined
    throughout since stream position `since` (RoomEventsStream.joined_throughout)."""

    async def __call__(self, user_id: str, event_nid: int, since: int) -> bool: ...


class SyncService:
    def __init__(
        self,
        *,
        streams: Sequence[StreamProvider],
        membership_queries: MembershipQueries,
        notifier: Notifier,
        clock: Clock,
        joined_throughout: JoinedThroughout,
        every_response: Sequence[EveryResponsePart] = (),
    ) -> None:
        self.joined_throughout = joined_throughout
        self.streams = list(streams)
        self.every_response = list(every_response)
        self._not_news = frozenset(k for p in self.every_response for k in p.keys) | {"next_batch"}
        self.membership_queries = membership_queries
        self.notifier = notifier
        self.clock = clock
        # user -> (version, memberships): every sync reads these, few events change them.
        self._memberships: dict[str, tuple[int, list[UserMembership]]] = {}
        self._membership_versions: dict[str, int] = {}
        self._stream_keys = [stream.key for stream in self.streams]
        # `current_token`'s last answer and the positions it was built from.
        self._last_positions: tuple[int | None, ...] = ()
        self._last_token = SyncToken()

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """Every persisted event: a membership change changes the target's rooms."""
        if event.type == "m.room.member" and event.state_key is not None:
            self.invalidate_memberships(event.state_key)

    def invalidate_memberships(self, user_id: str) -> None:
        self._membership_versions[user_id] = self._membership_versions.get(user_id, 0) + 1
        self._memberships.pop(user_id, None)

    async def memberships(self, user_id: str) -> list[UserMembership]:
        cached = self._memberships.get(user_id)
        version = self._membership_versions.get(user_id, 0)
        if cached is not None and cached[0] == version:
            return cached[1]
        loaded = await self.membership_queries.memberships_for_user(user_id)
        if self._membership_versions.get(user_id, 0) == version:  # no change landed meanwhile
            self._memberships[user_id] = (version, loaded)
            if len(self._memberships) > _MEMBERSHIP_CACHE_SIZE:
                self._memberships.pop(next(iter(self._memberships)))
        return loaded

    async def current_token(self) -> SyncToken:
        """Every stream's position now. Each woken long poll asks twice (before and after
        its wait), mostly with nothing moved in between: the token of the last call is
        handed back while the positions are the same (a token is immutable), instead of
        building the same frozen dataclass for every reader of a busy room."""
        positions = tuple([stream.position_now() for stream in self.streams])
        if positions == self._last_positions:
            return self._last_token
        if None in positions:  # a stream not loaded yet: its position is read (and not kept)
            return SyncToken(**{
                stream.key: pos if pos is not None else await stream.current_position()
                for stream, pos in zip(self.streams, positions, strict=True)
            })
        token = SyncToken(**{key: pos for key, pos in zip(self._stream_keys, positions, strict=True) if pos is not None})
        self._last_positions, self._last_token = positions, token
        return token

    async def sync(
        self,
        requester: Requester,
        since: SyncToken | None,
        timeout_ms: int,
        sync_filter: SyncFilter,
        full_state: bool,
        use_state_after: bool = False,
    ) -> dict[str, Any]:
        notifier = self.notifier
        if since is None or full_state or timeout_ms <= 0 or notifier.closed:
            return await self._compute(SyncRequest(
                requester, since, await self.current_token(), sync_filter, full_state, use_state_after=use_state_after
            ))
        waiter = notifier.register(requester.user_id)
        try:
            deadline = self.clock.monotonic() + timeout_ms / 1000
            while True:
                req = SyncRequest(
                    requester, since, await self.current_token(), sync_filter, full_state,
                    use_state_after=use_state_after,
                )
                if req.now == since and not notifier.closed:
                    # Nothing has moved (a long poll just renewed): nothing to compute
                    # until something does; the response of a timeout is computed then.
                    remaining = deadline - self.clock.monotonic()
                    if remaining > 0 and await waiter.wait(remaining):
                        waiter.rearm()  # before the next look: what lands after it wakes
                        continue
                    req = SyncRequest(
                        requester, since, await self.current_token(), sync_filter, full_state,
                        use_state_after=use_state_after,
                    )
                    return await self._compute(req)
                result = await self._compute(req)
                remaining = deadline - self.clock.monotonic()
                if _has_news(result, self._not_news) or remaining <= 0 or notifier.closed:
                    return result
                if not await waiter.wait(remaining):
                    # Timed out: nothing new; hand back a token at least as new as the caller's.
                    return result
                waiter.rearm()
        finally:
            notifier.unregister(waiter)

    async def _compute(self, req: SyncRequest) -> dict[str, Any]:
        if req.since is not None and not req.full_state and req.now == req.since:
            # No stream has moved: nothing can have changed for anyone. Idle clients'
            # syncs end here without touching the database (but for every_response).
            # A token ahead of a stream (one kept in memory, such as presence from
            # other servers, restarts lower) is not "nothing moved": that stream
            # answers it afresh (see PresenceStream.moved).
            return await self._every_response(req, {"next_batch": str(req.now)})
        req.memberships = await self.memberships(req.user_id)
        if req.since is not None and not req.full_state:
            since = req.since.events
            req.newly_joined = frozenset([
                m.room_nid for m in req.memberships
                # a membership event since the token: a join, or a joined member's new profile
                if m.membership == "join" and since < m.stream_ordering <= req.now.events
                and not await self.joined_throughout(req.user_id, m.event_nid, since)
            ])
        moved = [stream for stream in self.streams if stream.moved(req)]
        req.room_streams = [stream for stream in moved if stream.in_rooms]
        for stream in moved:
            await stream.prepare(req)
        out: dict[str, Any] = {"next_batch": str(req.now)}
        for stream in moved:
            out.update(await stream.top_level(req))
        return await self._every_response(req, out)

    async def _every_response(self, req: SyncRequest, out: dict[str, Any]) -> dict[str, Any]:
        for part in self.every_response:
            out.update(await part.part(req))
        return out


def _has_news(result: dict[str, Any], not_news: frozenset[str]) -> bool:
    return not result.keys() <= not_news
