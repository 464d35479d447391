"""GET /sync: initial and incremental, long-polling on the notifier.

The token for the response is read *before* anything else, and every stream is
read only up to it, so whatever lands during the computation is left for the
next request rather than half-sent or lost. Rooms with nothing new since the
token are skipped from in-memory positions, which keeps an idle incremental
sync to a couple of cheap queries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.filters.sync_filter import SyncFilter
from homeserver.rooms.client_format import client_event
from homeserver.rooms.membership import STRIPPED_STATE_TYPES
from homeserver.rooms.tokens import room_token
from homeserver.storage.events import StoredEvent
from homeserver.storage.rooms import RoomRecord, UserMembership
from homeserver.sync.tokens import SyncToken
from homeserver.sync.unread import UnreadCounter

if TYPE_CHECKING:
    from homeserver.accounts.auth import Requester
    from homeserver.server import HomeServer

StateKey = tuple[str, str]
DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 500


@dataclass
class _Request:
    requester: Requester
    since: SyncToken | None
    now: SyncToken
    filter: SyncFilter
    full_state: bool
    receipts: dict[str, Any] = field(default_factory=dict)  # room ID -> m.receipt, read once

    def advanced(self, stream: str) -> bool:
        """Whether a stream moved since the token (always, on an initial sync)."""
        return self.since is None or getattr(self.now, stream) > getattr(self.since, stream)

    @property
    def user_id(self) -> str:
        return self.requester.user_id


class SyncService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        # user -> (version, memberships): every sync reads these, few events change them.
        self._memberships: dict[str, tuple[int, list[UserMembership]]] = {}
        self._membership_versions: dict[str, int] = {}
        hs.room_service.listeners.append(self._on_event)
        self.unread = UnreadCounter(hs)

    def _on_event(self, event: StoredEvent, room: RoomRecord) -> None:
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
        loaded = await self.hs.membership_queries.memberships_for_user(user_id)
        if self._membership_versions.get(user_id, 0) == version:  # no change landed meanwhile
            self._memberships[user_id] = (version, loaded)
            if len(self._memberships) > 50_000:
                self._memberships.pop(next(iter(self._memberships)))
        return loaded

    async def current_token(self) -> SyncToken:
        hs = self.hs
        return SyncToken(
            events=hs.room_service.stream.current,
            typing=hs.typing.current_position(),
            receipts=await hs.receipts.current_position(),
            presence=await hs.presence.current_position(),
            account_data=await hs.account_data.current_position(),
        )

    async def sync(
        self,
        requester: Requester,
        since: SyncToken | None,
        timeout_ms: int,
        sync_filter: SyncFilter,
        full_state: bool,
    ) -> dict[str, Any]:
        notifier = self.hs.notifier
        if since is None or full_state or timeout_ms <= 0:
            return await self._compute(_Request(requester, since, await self.current_token(), sync_filter, full_state))
        waiter = notifier.register(requester.user_id)
        try:
            deadline = self.hs.clock.monotonic() + timeout_ms / 1000
            while True:
                req = _Request(requester, since, await self.current_token(), sync_filter, full_state)
                result = await self._compute(req)
                remaining = deadline - self.hs.clock.monotonic()
                if _has_news(result) or remaining <= 0:
                    return result
                if not await waiter.wait(remaining):
                    # Timed out: nothing new; hand back a token at least as new as the caller's.
                    return result
                notifier.unregister(waiter)
                waiter = notifier.register(requester.user_id)
        finally:
            notifier.unregister(waiter)

    async def _compute(self, req: _Request) -> dict[str, Any]:
        hs = self.hs
        if req.since is not None and not req.full_state and not req.now.is_after(req.since):
            # No stream has moved: nothing can have changed for anyone. Idle clients'
            # syncs end here without touching the database.
            return {"next_batch": str(req.now)}
        memberships = await self.memberships(req.user_id)
        if req.advanced("receipts"):
            joined_ids = [m.room_id for m in memberships if m.membership == "join"]
            req.receipts = await hs.receipts.receipts_since(
                joined_ids, req.since.receipts if req.since else 0, req.user_id, upto=req.now.receipts
            )
        since_pos = req.since.events if req.since else 0
        sections: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "knock": {}, "leave": {}}

        async def one(m: UserMembership) -> tuple[str, str, dict[str, Any] | None]:
            changed_membership = req.since is None or m.stream_ordering > since_pos
            room = await hs.room_store.get_room_by_nid(m.room_nid)
            assert room is not None
            if m.membership == "join":
                return "join", room.room_id, await self._joined_room(req, room, m)
            if m.membership == "invite" and changed_membership:
                return "invite", room.room_id, {"invite_state": {"events": await self._stripped_state(room, m)}}
            if m.membership == "knock" and changed_membership:
                return "knock", room.room_id, {"knock_state": {"events": await self._stripped_state(room, m)}}
            if m.membership in ("leave", "ban") and changed_membership:
                if req.since is None and not req.filter.include_leave:
                    return "leave", room.room_id, None
                return "leave", room.room_id, await self._left_room(req, room, m)
            return "", room.room_id, None

        wanted = [
            m for m in memberships
            # filtered out, or a change the next sync will carry
            if req.filter.includes_room(m.room_id) and m.stream_ordering <= req.now.events
        ]
        # Rooms are independent and their work is mostly waiting on the database:
        # compute them concurrently (the reader pool bounds the parallelism).
        for section, room_id, entry in await asyncio.gather(*(one(m) for m in wanted)):
            if entry is not None:
                sections[section][room_id] = entry
        join, invite, knock, leave = (sections[k] for k in ("join", "invite", "knock", "leave"))
        out: dict[str, Any] = {"next_batch": str(req.now)}
        rooms: dict[str, Any] = {}
        for name, section in (("join", join), ("invite", invite), ("knock", knock), ("leave", leave)):
            if section:
                rooms[name] = section
        if rooms:
            out["rooms"] = rooms
        account_data = await self._global_account_data(req)
        if account_data:
            out["account_data"] = {"events": account_data}
        presence = await self._presence(req)
        if presence:
            out["presence"] = {"events": presence}
        return out

    # --- joined rooms ---

    async def _joined_room(self, req: _Request, room: RoomRecord, m: UserMembership) -> dict[str, Any] | None:
        hs = self.hs
        since_pos = req.since.events if req.since else 0
        newly_joined = req.since is None or m.stream_ordering > since_pos
        last = await hs.room_service.last_position(room.room_nid)
        has_events = newly_joined or req.full_state or last > since_pos
        ephemeral = await self._ephemeral(req, room)
        room_account_data = await self._room_account_data(req, room)
        if not has_events and not ephemeral and not room_account_data:
            return None
        limit = req.filter.timeline.limit if req.filter.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT
        limit = min(limit, MAX_TIMELINE_LIMIT)
        timeline: list[StoredEvent] = []
        limited = False
        if has_events:
            start = None if (newly_joined or req.full_state) else since_pos
            timeline, limited = await self._timeline(req, room, start, req.now.events, limit)
        state = await self._state(req, room, timeline, since_pos if not (newly_joined or req.full_state) else None, limited)
        # The summary only changes with membership: send it when that may have moved.
        summary_due = (
            req.since is None or newly_joined or req.full_state
            or any(e.type == "m.room.member" for e in timeline) or any(e.type == "m.room.member" for e in state)
        )
        entry: dict[str, Any] = {
            "timeline": {
                "events": await self._format(req, room, timeline),
                "limited": limited,
                "prev_batch": room_token((timeline[0].stream_ordering or 1) - 1) if timeline else room_token(req.now.events),
            },
            "state": {"events": await self._format(req, room, state)},
            "ephemeral": {"events": ephemeral},
            "account_data": {"events": room_account_data},
            "summary": await self._summary(req, room) if summary_due else {},
            "unread_notifications": await self._unread(req, room, m),
        }
        return entry

    async def _timeline(
        self, req: _Request, room: RoomRecord, after: int | None, upto: int, limit: int
    ) -> tuple[list[StoredEvent], bool]:
        """The newest `limit` visible events in (after, upto], oldest first; limited if more exist."""
        hs = self.hs
        out: list[StoredEvent] = []
        pos = upto
        limited = False
        page = max(limit, 20)
        ignored = await hs.room_service.ignored_users(req.user_id)
        while len(out) < limit or not limited:
            batch = await hs.event_store.room_stream(
                room.room_nid, from_pos=pos, to_pos=after, backwards=True, limit=page
            )
            if not batch:
                break
            pos = (batch[-1].stream_ordering or 1) - 1
            wanted = [
                e for e in batch
                if req.filter.timeline.matches(e.event, room.room_id) and e.sender not in ignored
            ]
            for ev in await hs.visibility.filter(req.user_id, room, wanted):
                if len(out) >= limit:
                    # More in the window than fits: the client paginates for the rest.
                    limited = True
                    break
                out.append(ev)
            if limited or len(batch) < page:
                break
        out.reverse()
        return out, limited

    async def _state(
        self, req: _Request, room: RoomRecord, timeline: list[StoredEvent], since_pos: int | None, limited: bool
    ) -> list[StoredEvent]:
        """State between the since token and the timeline's start (all of it on a full sync)."""
        rs = self.hs.room_service
        if timeline:
            at_start = await rs.state_ids_before(timeline[0])
        else:
            at_start = await rs.current_state_ids(room)
        if since_pos is None:
            wanted = at_start
        elif not limited:
            return []
        else:
            prior = await self.hs.event_positions.last_event_at_or_before(room.room_nid, since_pos)
            before = await rs.state_ids_at_snapshot(prior[1]) if prior else {}
            wanted = {k: v for k, v in at_start.items() if before.get(k) != v}
        timeline_ids = {e.nid for e in timeline}
        wanted = {k: v for k, v in wanted.items() if v not in timeline_ids}
        if req.filter.state.lazy_load_members:
            senders = {e.sender for e in timeline} | {req.user_id}
            wanted = {
                k: v for k, v in wanted.items() if k[0] != "m.room.member" or k[1] in senders
            }
            if since_pos is not None:
                # Members of this timeline's senders are sent even if unchanged.
                for sender in senders:
                    key = ("m.room.member", sender)
                    if key in at_start and at_start[key] not in timeline_ids:
                        wanted[key] = at_start[key]
        events = await rs.state_events(wanted)
        return [e for e in events.values() if req.filter.state.matches(e.event, room.room_id)]

    async def _summary(self, req: _Request, room: RoomRecord) -> dict[str, Any]:
        members = await self.hs.room_store.members(room.room_nid)
        joined = [u for u, m, _ in members if m == "join"]
        invited = [u for u, m, _ in members if m == "invite"]
        summary: dict[str, Any] = {
            "m.joined_member_count": len(joined),
            "m.invited_member_count": len(invited),
        }
        names = await self.hs.room_service.current_state_events(
            room, [("m.room.name", ""), ("m.room.canonical_alias", "")]
        )
        if not any(e.event["content"].get("name") or e.event["content"].get("alias") for e in names.values()):
            heroes = sorted(u for u in joined + invited if u != req.user_id)[:5]
            if not heroes:
                heroes = sorted(u for u, m, _ in members if m in ("leave", "ban") and u != req.user_id)[:5]
            summary["m.heroes"] = heroes
        return summary

    async def _unread(self, req: _Request, room: RoomRecord, m: UserMembership) -> dict[str, int]:
        return await self.unread.counts(req.user_id, room, m.stream_ordering, req.now.events)

    # --- other memberships ---

    async def _stripped_state(self, room: RoomRecord, m: UserMembership) -> list[dict[str, Any]]:
        rs = self.hs.room_service
        member = (await self.hs.event_store.get_events_by_nid([m.event_nid]))[m.event_nid]
        member_entry = {
            "type": member.type, "state_key": member.state_key, "content": member.event["content"],
            "sender": member.sender, "event_id": member.event_id,
            "origin_server_ts": member.event["origin_server_ts"],
        }
        if member.outlier:
            # A room this server is not in: what its server sent is all there is.
            remote = await self.hs.room_store.invite_state(member.nid) or []
            return [e for e in remote if (e.get("type"), e.get("state_key")) != ("m.room.member", member.state_key)] + [
                member_entry
            ]
        ids = await rs.state_ids_before(member)
        events = await rs.state_events(ids, [(t, "") for t in STRIPPED_STATE_TYPES])
        stripped = [
            {"type": e.type, "state_key": e.state_key, "content": e.event["content"], "sender": e.sender}
            for e in events.values()
        ]
        stripped.append(member_entry)
        return stripped

    async def _left_room(self, req: _Request, room: RoomRecord, m: UserMembership) -> dict[str, Any] | None:
        since_pos = req.since.events if req.since else None
        member = (await self.hs.event_store.get_events_by_nid([m.event_nid])).get(m.event_nid)
        if member is not None and member.outlier:
            # Rejecting a remote invite or retracting a knock on a room this server is
            # not in: the leave event is the room's whole known timeline.
            return {
                "timeline": {"events": await self._format(req, room, [member]), "limited": False,
                             "prev_batch": room_token(m.stream_ordering)},
                "state": {"events": []},
                "account_data": {"events": await self._room_account_data(req, room)},
            }
        limit = req.filter.timeline.limit if req.filter.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT
        timeline, limited = await self._timeline(req, room, since_pos, m.stream_ordering, min(limit, MAX_TIMELINE_LIMIT))
        state = await self._state(req, room, timeline, since_pos, limited or since_pos is None)
        return {
            "timeline": {
                "events": await self._format(req, room, timeline),
                "limited": limited,
                "prev_batch": room_token((timeline[0].stream_ordering or 1) - 1) if timeline else room_token(m.stream_ordering),
            },
            "state": {"events": await self._format(req, room, state)},
            "account_data": {"events": await self._room_account_data(req, room)},
        }

    # --- streams served by other services, when present ---

    async def _ephemeral(self, req: _Request, room: RoomRecord) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        ev = self.hs.typing.typing_events_since(room.room_id, req.since.typing if req.since else 0)
        if ev is not None:
            events.append(ev)
        if room.room_id in req.receipts:
            events.append(req.receipts[room.room_id])
        return [e for e in events if req.filter.ephemeral.matches(e, room.room_id)]

    async def _room_account_data(self, req: _Request, room: RoomRecord) -> list[dict[str, Any]]:
        if not req.advanced("account_data"):
            return []
        events = await self.hs.account_data.room_changes_since(req.user_id, room.room_id, req.since.account_data if req.since else 0)
        return [e for e in events if req.filter.room_account_data.matches(e, room.room_id)]

    async def _global_account_data(self, req: _Request) -> list[dict[str, Any]]:
        if not req.advanced("account_data"):
            return []
        events = await self.hs.account_data.global_changes_since(req.user_id, req.since.account_data if req.since else 0)
        return [e for e in events if req.filter.account_data.matches(e)]

    async def _presence(self, req: _Request) -> list[dict[str, Any]]:
        if not req.advanced("presence"):
            return []
        events = await self.hs.presence.presence_since(req.user_id, req.since.presence if req.since else 0)
        return [e for e in events if req.filter.presence.matches(e)]

    async def _format(self, req: _Request, room: RoomRecord, events: list[StoredEvent]) -> list[dict[str, Any]]:
        now = self.hs.clock.time_ms()
        redaction_ids = [e.redacted_by for e in events if e.redacted_by]
        redactions = await self.hs.event_store.get_events(redaction_ids) if redaction_ids else {}
        return [
            client_event(
                e, room.room_id, room.room_version, now, device_id=req.requester.device_id,
                redaction=redactions.get(e.redacted_by) if e.redacted_by else None,
            )
            for e in events
        ]


def _has_news(result: dict[str, Any]) -> bool:
    return any(k in result for k in ("rooms", "account_data", "presence", "to_device"))
