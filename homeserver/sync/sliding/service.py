"""Simplified sliding sync (MSC4186, as Synapse 1.163 speaks it): the client asks
for windows (`ranges`) of room lists and for subscribed rooms, and gets only
those rooms, and of them only what changed since its `pos` on this connection.

One computation:

1. The stream positions are read first (`SyncService.current_token`), and every
   read stops at them, exactly as for /sync: what lands meanwhile is the next
   response's.
2. The user's rooms (memberships up to the token; rooms left before the token
   only if left since it, or kicked; invites from ignored users dropped) are
   filtered per list and sorted by the stream position of their latest event
   (joined rooms) or of the membership (others), newest first, as Synapse sorts;
   each range of a list is a `SYNC` op naming its room IDs.
3. Each room in a window or subscribed is sent if the connection has never sent
   it, was left behind on it, asks more of it than before, or it had an event
   since `pos`; its entry is built from the room events stream's room-scoped
   entry points (timeline with visibility and ignored users applied, formatting
   with bundled aggregations, stripped state) and the room's state.
4. Extensions are the /sync stream providers' parts, asked with a request scoped
   to the extension's rooms and positions (`SyncRequest`): to-device,
   device lists and key counts, account data, receipts, typing.
5. What was sent, and which rooms outside the windows had news, is recorded in
   the connection's state (connections.py); `pos` names that state and the
   stream positions.

An incremental request with nothing to send waits on the notifier (the same
wake-ups as /sync) up to `timeout`, registering before it looks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError
from homeserver.filters.sync_filter import SyncFilter
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord, UserMembership
from homeserver.rooms.tokens import room_token
from homeserver.sync.sliding.config import (
    LAZY,
    ME,
    WILDCARD,
    RoomConfig,
    ScopedExtension,
    SlidingRequest,
)
from homeserver.sync.sliding.config import ListFilters as Filters
from homeserver.sync.sliding.connections import Changes, Connections, ConnectionState
from homeserver.sync.streams.base import SyncRequest
from homeserver.sync.tokens import SyncToken

if TYPE_CHECKING:
    from homeserver.account_data import AccountDataService
    from homeserver.accounts.auth import Requester
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventPositions, EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.sync.notifier import Notifier
    from homeserver.sync.service import SyncService
    from homeserver.sync.streams.account_data import AccountDataStream
    from homeserver.sync.streams.device_lists import DeviceListsStream
    from homeserver.sync.streams.e2ee_key_counts import E2eeKeyCounts
    from homeserver.sync.streams.receipts import ReceiptsStream
    from homeserver.sync.streams.room_events import RoomEventsStream
    from homeserver.sync.streams.to_device import ToDeviceStream
    from homeserver.sync.streams.typing import TypingStream
    from homeserver.sync.unread import UnreadCounter

# The event types that count as activity for `bump_stamp` (the MSC's list, as Synapse's).
BUMP_EVENT_TYPES = (
    "m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite",
    "m.poll.start", "m.beacon_info",
)
# Bounds the rooms built at once (their work is mostly waiting on the database).
_ROOM_CONCURRENCY = 20

StateKey = tuple[str, str]


def parse_pos(pos: str) -> tuple[int, SyncToken]:
    """`<connection position>/<sync token>`, as Synapse writes it."""
    conn, sep, token = pos.partition("/")
    if not sep or not conn.isdigit() or len(conn) > 18:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid pos")
    return int(conn), SyncToken.parse(token)


def _clamp(since: SyncToken, now: SyncToken) -> SyncToken:
    """A token from the future (tampered with, or from before a restart of an
    in-memory stream such as typing) reads as the present."""
    return SyncToken(**{f.name: min(getattr(since, f.name), getattr(now, f.name)) for f in fields(SyncToken)})


@dataclass
class _Room:
    """One room the user may be sent: its membership and, for an invite or a
    leave, the membership event (its sender, and the state it carries)."""

    membership: UserMembership
    room: RoomRecord
    member_event: StoredEvent | None = None

    @property
    def room_id(self) -> str:
        return self.membership.room_id

    @property
    def kind(self) -> str:
        return self.membership.membership


@dataclass
class _Compute:
    """One computation's inputs and what it read once."""

    requester: Requester
    request: SlidingRequest
    since: SyncToken | None
    now: SyncToken
    prior: ConnectionState
    changes: Changes = field(default_factory=Changes)
    recency: dict[str, int] = field(default_factory=dict)
    facts: dict[str, dict[StateKey, dict[str, Any]]] = field(default_factory=dict)
    spaces: dict[tuple[str, ...], set[str]] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.requester.user_id

    def sync_request(self, since: SyncToken | None, memberships: list[UserMembership] | None = None) -> SyncRequest:
        """A /sync stream provider request for this computation's positions, with the
        caller's start (None: from the beginning) and no filter."""
        req = SyncRequest(self.requester, since, self.now, SyncFilter(), False)
        req.memberships = memberships or []
        return req


class SlidingSyncService:
    def __init__(
        self,
        *,
        sync: SyncService,
        room_events: RoomEventsStream,
        typing: TypingStream,
        receipts: ReceiptsStream,
        account_data_stream: AccountDataStream,
        to_device: ToDeviceStream,
        device_lists: DeviceListsStream,
        key_counts: E2eeKeyCounts,
        room_service: RoomService,
        room_store: RoomStore,
        event_store: EventStore,
        event_positions: EventPositions,
        account_data: AccountDataService,
        receipts_changed: Callable[[Collection[str], int], Awaitable[list[str]]],
        unread: UnreadCounter,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self.sync = sync
        self.room_events = room_events
        self.typing = typing
        self.receipts = receipts
        self.account_data_stream = account_data_stream
        self.to_device = to_device
        self.device_lists = device_lists
        self.key_counts = key_counts
        self.room_service = room_service
        self.room_store = room_store
        self.event_store = event_store
        self.event_positions = event_positions
        self.account_data = account_data
        self.receipts_changed = receipts_changed
        self.unread = unread
        self.notifier = notifier
        self.clock = clock
        self.connections = Connections()

    async def sync_for(
        self, requester: Requester, request: SlidingRequest, pos: str | None, timeout_ms: int
    ) -> dict[str, Any]:
        since_conn, since = parse_pos(pos) if pos else (0, None)
        key = (requester.user_id, requester.device_id or "", request.conn_id)
        prior = self.connections.get(key, since_conn, self.clock.time_ms())
        if since is not None:
            since = _clamp(since, await self.sync.current_token())
        waiter = self.notifier.register(requester.user_id) if since is not None and timeout_ms > 0 else None
        try:
            deadline = self.clock.monotonic() + timeout_ms / 1000
            while True:
                c = _Compute(requester, request, since, await self.sync.current_token(), prior)
                out, news = await self._compute(c)
                remaining = deadline - self.clock.monotonic()
                if news or waiter is None or remaining <= 0:
                    break
                if not await waiter.wait(remaining):
                    break
                self.notifier.unregister(waiter)
                waiter = self.notifier.register(requester.user_id)
        finally:
            if waiter is not None:
                self.notifier.unregister(waiter)
        conn_pos = self.connections.record(key, since_conn, prior, c.changes, self.clock.time_ms())
        return {"pos": f"{conn_pos}/{c.now}", **out}

    # --- the computation ---

    async def _compute(self, c: _Compute) -> tuple[dict[str, Any], bool]:
        rooms = await self._rooms_of_user(c)
        dm_rooms = await self._dm_rooms(c.user_id)
        lists: dict[str, Any] = {}
        relevant: dict[str, RoomConfig] = {}
        list_rooms: dict[str, list[str]] = {}
        everything: set[str] = set()  # every room in any list, in a window or not
        for name, conf in c.request.lists.items():
            candidates = [r for r in rooms.values() if await self._passes(c, r, conf.filters, dm_rooms)]
            everything.update(r.room_id for r in candidates)
            ops = []
            in_window: list[str] = []
            if conf.ranges:
                ordered = await self._sorted(c, candidates)
                for start, end in conf.ranges:
                    ids = [r.room_id for r in ordered[start:end + 1]]
                    ops.append({"op": "SYNC", "range": [start, end], "room_ids": ids})
                    in_window.extend(ids)
                for room_id in in_window:
                    prev = relevant.get(room_id)
                    relevant[room_id] = prev.combine(conf.room) if prev else conf.room
            list_rooms[name] = in_window
            lists[name] = {"count": len(candidates), "ops": ops}
        if c.request.subscriptions:
            everyone = await self._subscribable(c, rooms, c.request.subscriptions.keys())
            for room_id, sub in c.request.subscriptions.items():
                if room_id in everyone:
                    rooms.setdefault(room_id, everyone[room_id])
                    everything.add(room_id)
                    prev = relevant.get(room_id)
                    relevant[room_id] = prev.combine(sub) if prev else sub

        to_send = await self._rooms_to_send(c, rooms, relevant)
        semaphore = asyncio.Semaphore(_ROOM_CONCURRENCY)

        async def one(room_id: str) -> tuple[str, dict[str, Any], bool]:
            async with semaphore:
                entry, news = await self._room_entry(c, rooms[room_id], relevant[room_id], room_id in dm_rooms)
                return room_id, entry, news

        results = await asyncio.gather(*(one(room_id) for room_id in to_send))
        out_rooms = {room_id: entry for room_id, entry, news in results if news or c.since is None}
        if c.since is not None:
            behind = [
                r for r in everything - relevant.keys()
                if await self._last_position(rooms[r]) > c.since.events
            ]
            c.changes.unsent(c.changes.rooms, c.prior.rooms, behind, c.since.events)
        c.changes.sent(c.changes.rooms, c.prior.rooms, to_send)
        for room_id in to_send:
            if c.prior.configs.get(room_id) != relevant[room_id]:
                c.changes.configs[room_id] = relevant[room_id]

        scoped = _Scope(list_rooms, set(relevant))
        extensions, ext_news = await self._extensions(c, rooms, scoped, out_rooms)
        out: dict[str, Any] = {}
        if lists:
            out["lists"] = lists
        out["rooms"] = out_rooms
        out["extensions"] = extensions
        return out, bool(out_rooms) or ext_news

    async def _rooms_of_user(self, c: _Compute) -> dict[str, _Room]:
        """The rooms the user's lists are made of, as of the token."""
        memberships = [m for m in await self.sync.memberships(c.user_id) if m.stream_ordering <= c.now.events]
        need_event = [m.event_nid for m in memberships if m.membership in ("invite", "leave", "knock", "ban")]
        events = await self.event_store.get_events_by_nid(need_event) if need_event else {}
        ignored = await self.room_events.ignored(c.sync_request(None))
        out: dict[str, _Room] = {}
        for m in memberships:
            ev = events.get(m.event_nid)
            if m.membership == "leave":
                newly_left = c.since is not None and m.stream_ordering > c.since.events
                kicked = ev is not None and ev.sender != c.user_id
                if not (newly_left or kicked):
                    continue
            if m.membership == "invite" and ev is not None and ev.sender in ignored:
                continue
            room = await self.room_store.get_room_by_nid(m.room_nid)
            if room is not None:
                out[m.room_id] = _Room(m, room, ev)
        return out

    async def _subscribable(
        self, c: _Compute, rooms: dict[str, _Room], room_ids: Iterable[str]
    ) -> dict[str, _Room]:
        """Subscribed rooms: any room the user has a membership in (a room left long
        ago shows what the user saw up to leaving); others are ignored, as Synapse does."""
        missing = [r for r in room_ids if r not in rooms]
        out = {r: rooms[r] for r in room_ids if r in rooms}
        if missing:
            for m in await self.sync.memberships(c.user_id):
                if m.room_id in missing and m.stream_ordering <= c.now.events:
                    room = await self.room_store.get_room_by_nid(m.room_nid)
                    ev = (await self.event_store.get_events_by_nid([m.event_nid])).get(m.event_nid)
                    if room is not None:
                        out[m.room_id] = _Room(m, room, ev)
        return out

    async def _dm_rooms(self, user_id: str) -> set[str]:
        direct = await self.account_data.get_global(user_id, "m.direct") or {}
        out: set[str] = set()
        for room_ids in direct.values():
            if isinstance(room_ids, list):
                out.update(r for r in room_ids if isinstance(r, str))
        return out

    async def _last_position(self, r: _Room) -> int:
        return await self.room_service.last_position(r.membership.room_nid)

    async def _recency(self, c: _Compute, r: _Room) -> int:
        """Stream position of the last event the user sees in the room, up to the token."""
        pos = c.recency.get(r.room_id)
        if pos is None:
            if r.kind != "join":
                pos = r.membership.stream_ordering
            else:
                pos = await self._last_position(r)
                if pos > c.now.events:
                    found = await self.event_positions.last_event_at_or_before(r.membership.room_nid, c.now.events)
                    pos = found[0] if found else r.membership.stream_ordering
            c.recency[r.room_id] = pos
        return pos

    async def _sorted(self, c: _Compute, rooms: list[_Room]) -> list[_Room]:
        keys = {r.room_id: await self._recency(c, r) for r in rooms}
        return sorted(rooms, key=lambda r: keys[r.room_id], reverse=True)

    # --- filters ---

    async def _facts(self, c: _Compute, r: _Room) -> dict[StateKey, dict[str, Any]]:
        """The content of the room's create and encryption events: from the stripped
        state for an invite or knock (all the user may know), else the current state."""
        cached = c.facts.get(r.room_id)
        if cached is not None:
            return cached
        keys = [("m.room.create", ""), ("m.room.encryption", "")]
        facts: dict[StateKey, dict[str, Any]] = {}
        if r.kind in ("invite", "knock"):
            for e in await self.room_events.stripped_state(r.room, r.membership) or []:
                k = (e.get("type"), e.get("state_key"))
                if k in keys and isinstance(e.get("content"), dict):
                    facts[(k[0], "")] = e["content"]
        else:
            for k, ev in (await self.room_service.current_state_events(r.room, keys)).items():
                facts[k] = ev.event.get("content", {})
        c.facts[r.room_id] = facts
        return facts

    async def _passes(self, c: _Compute, r: _Room, f: Filters | None, dm_rooms: set[str]) -> bool:
        if f is None:
            return True
        if f.is_dm is not None and (r.room_id in dm_rooms) != f.is_dm:
            return False
        if f.is_invite is not None and (r.kind == "invite") != f.is_invite:
            return False
        if f.is_encrypted is not None:
            encrypted = (await self._facts(c, r)).get(("m.room.encryption", ""), {}).get("algorithm") is not None
            if encrypted != f.is_encrypted:
                return False
        if f.room_types is not None or f.not_room_types is not None:
            room_type = (await self._facts(c, r)).get(("m.room.create", ""), {}).get("type")
            if not isinstance(room_type, str):
                room_type = None
            if f.not_room_types is not None and room_type in f.not_room_types:
                return False
            if f.room_types is not None and room_type not in f.room_types:
                return False
        if f.spaces is not None and r.room_id not in await self._space_children(c, f.spaces):
            return False
        if f.tags is not None or f.not_tags is not None:
            tags = await self.account_data.get_room(c.user_id, r.room_id, "m.tag") or {}
            names = set(tags.get("tags", {})) if isinstance(tags.get("tags"), dict) else set()
            if f.not_tags is not None and names & set(f.not_tags):
                return False
            if f.tags is not None and not names & set(f.tags):
                return False
        return True

    async def _space_children(self, c: _Compute, spaces: list[str]) -> set[str]:
        """Rooms named by an `m.space.child` (with `via`) in the given spaces the user
        is joined to; subspaces are not walked (the client lists them)."""
        cached = c.spaces.get(tuple(spaces))
        if cached is not None:
            return cached
        joined = {m.room_id: m for m in await self.sync.memberships(c.user_id) if m.membership == "join"}
        children: set[str] = set()
        for space_id in spaces:
            m = joined.get(space_id)
            room = await self.room_store.get_room_by_nid(m.room_nid) if m else None
            if room is None:
                continue
            ids = await self.room_service.current_state_ids(room)
            wanted = {k: v for k, v in ids.items() if k[0] == "m.space.child"}
            for k, e in (await self.room_service.state_events(wanted)).items():
                via = e.event.get("content", {}).get("via")
                if isinstance(via, list) and via:
                    children.add(k[1])
        c.spaces[tuple(spaces)] = children
        return children

    # --- rooms ---

    async def _rooms_to_send(self, c: _Compute, rooms: dict[str, _Room], relevant: dict[str, RoomConfig]) -> list[str]:
        if c.since is None:
            return list(relevant)
        out = []
        for room_id, conf in relevant.items():
            prev = c.prior.configs.get(room_id)
            if (
                c.prior.rooms.get(room_id) is None
                or c.prior.sent_from(c.prior.rooms, room_id, c.since.events) != c.since.events
                or (prev is not None and prev.combine(conf) != prev)
                or await self._last_position(rooms[room_id]) > c.since.events
            ):
                out.append(room_id)
        return out

    async def _room_entry(
        self, c: _Compute, r: _Room, conf: RoomConfig, is_dm: bool
    ) -> tuple[dict[str, Any], bool]:
        """One room's entry in Synapse's shape, and whether it carries news."""
        m, room = r.membership, r.room
        since = c.since
        newly_joined = since is not None and m.membership == "join" and m.stream_ordering > since.events
        from_bound = None
        if since is not None and not newly_joined:
            from_bound = c.prior.sent_from(c.prior.rooms, r.room_id, since.events)
        initial = from_bound is None
        prev_conf = c.prior.configs.get(r.room_id)
        expanded = not initial and prev_conf is not None and prev_conf.timeline_limit < conf.timeline_limit
        req = c.sync_request(since)
        stripped = r.kind in ("invite", "knock")

        timeline: list[StoredEvent] = []
        limited: bool | None = None
        num_live: int | None = None
        prev_batch: str | None = None
        if conf.timeline_limit > 0 and not stripped:
            upto = c.now.events if r.kind == "join" else m.stream_ordering
            after = None if (initial or expanded) else from_bound
            timeline, limited = await self.room_events.timeline(req, room, after, upto, conf.timeline_limit)
            num_live = 0
            if since is not None:
                for e in reversed(timeline):
                    if (e.stream_ordering or 0) <= since.events:
                        break
                    num_live += 1
            prev_batch = room_token((timeline[0].stream_ordering or 1) - 1) if timeline else room_token(upto)

        # The room's state now (at the membership, for a room left) and, on an
        # update, what changed in it since the connection last had it.
        if stripped:
            state_now: dict[StateKey, int] = {}
        elif r.kind == "join" or r.member_event is None:
            state_now = await self.room_service.current_state_ids(room)
        else:
            state_now = await self.room_service.state_ids_after(r.member_event)
        delta: dict[StateKey, int] = {}
        if not initial and not stripped:
            assert from_bound is not None
            before_event = await self.event_positions.last_event_at_or_before(m.room_nid, from_bound)
            before = await self.room_service.state_ids_at_snapshot(before_event[1]) if before_event else {}
            delta = {k: v for k, v in state_now.items() if before.get(k) != v}
        member_changed = any(k[0] == "m.room.member" for k in delta)
        name_changed = ("m.room.name", "") in delta
        avatar_changed = ("m.room.avatar", "") in delta

        # required_state
        lazy = conf.lazy_members() and not conf.wants_all()
        timeline_users = {e.sender for e in timeline} | {
            e.state_key for e in timeline if e.type == "m.room.member" and e.state_key is not None
        }
        sent_lazy = frozenset() if initial else c.prior.lazy_members.get(r.room_id, frozenset())
        wanted: dict[StateKey, int] = {}
        if not stripped:
            if initial:
                candidates = state_now
            else:
                candidates = dict(delta)
                if prev_conf is not None and prev_conf.required != conf.required:
                    candidates.update({k: v for k, v in state_now.items() if not _matches(prev_conf, k, c.user_id, set())})
            wanted = {k: v for k, v in candidates.items() if _matches(conf, k, c.user_id, timeline_users)}
            if lazy and not initial:
                # Timeline senders the client has no member event of yet, and changes
                # to members it holds.
                for user in timeline_users - sent_lazy:
                    nid = state_now.get(("m.room.member", user))
                    if nid is not None:
                        wanted[("m.room.member", user)] = nid
                for k, v in delta.items():
                    if k[0] == "m.room.member" and k[1] in sent_lazy:
                        wanted[k] = v
        if lazy:
            sent = {k[1] for k in wanted if k[0] == "m.room.member"}
            if sent - sent_lazy or initial:
                c.changes.lazy_members[r.room_id] = sent_lazy | sent

        # name, avatar, heroes, counts (from the state; an invite's from its stripped state)
        stripped_state = await self.room_events.stripped_state(room, m) if stripped else None
        meta_keys = [("m.room.name", ""), ("m.room.avatar", "")]
        if stripped_state is not None:
            meta = {(e.get("type"), e.get("state_key")): e.get("content", {}) for e in stripped_state}
        else:
            meta_events = await self.room_service.state_events(state_now, meta_keys)
            meta = {k: e.event.get("content", {}) for k, e in meta_events.items()}
        name = _string(meta.get(("m.room.name", ""), {}).get("name")) if initial or name_changed else None
        avatar = _string(meta.get(("m.room.avatar", ""), {}).get("url")) if initial or avatar_changed else None
        heroes: list[dict[str, Any]] = []
        joined_count = invited_count = None
        if (initial or member_changed) and r.kind == "join":
            members = sorted(await self.room_store.members(m.room_nid), key=lambda x: x[2])
            joined = [u for u, ms, _ in members if ms == "join"]
            invited = [u for u, ms, _ in members if ms == "invite"]
            joined_count, invited_count = len(joined), len(invited)
            if not name:
                hero_ids = [u for u in joined + invited if u != c.user_id][:5]
                if not hero_ids:
                    hero_ids = [u for u, ms, _ in members if ms in ("leave", "ban") and u != c.user_id][:5]
                hero_events = await self.room_service.state_events(state_now, [("m.room.member", u) for u in hero_ids])
                for u in hero_ids:
                    ev = hero_events.get(("m.room.member", u))
                    if ev is None:
                        continue
                    hero: dict[str, Any] = {"user_id": u}
                    content = ev.event.get("content", {})
                    if isinstance(content.get("displayname"), str):
                        hero["displayname"] = content["displayname"]
                    if isinstance(content.get("avatar_url"), str):
                        hero["avatar_url"] = content["avatar_url"]
                    heroes.append(hero)

        # bump_stamp, as Synapse: the last bump event in the timeline, else (when the
        # client may not know it: initial, gappy, not joined) the room's, else the membership's.
        always_stamp = r.kind != "join" or limited is None or limited or initial
        bump: int | None = None
        if r.kind == "join":
            bump = next((e.stream_ordering for e in reversed(timeline) if e.type in BUMP_EVENT_TYPES and (e.stream_ordering or 0) > 0), None)
            if bump is None and always_stamp:
                bump = await self.event_positions.last_of_types_at_or_before(m.room_nid, c.now.events, BUMP_EVENT_TYPES)
        if bump is None and always_stamp:
            bump = max(0, m.stream_ordering)

        state_events = await self.room_service.state_events(wanted) if wanted else {}
        if r.kind == "join":
            counts = await self.unread.counts(c.user_id, room, m.stream_ordering, c.now.events)
        else:
            counts = {"notification_count": 0, "highlight_count": 0}
        entry: dict[str, Any] = {
            "notification_count": counts.get("notification_count", 0),
            "highlight_count": counts.get("highlight_count", 0),
        }
        # Synapse's encoding: a field is left out when it has nothing to say.
        optional: dict[str, Any] = {
            "bump_stamp": bump, "joined_count": joined_count, "invited_count": invited_count,
            "name": name or None, "avatar": avatar or None, "heroes": heroes or None,
            "initial": True if initial else None, "unstable_expanded_timeline": True if expanded else None,
            "limited": limited, "prev_batch": prev_batch, "num_live": num_live,
            "is_dm": True if is_dm else None, "invite_state": stripped_state or None,
        }
        entry.update({k: v for k, v in optional.items() if v is not None})
        if state_events:
            entry["required_state"] = _without_room_id(
                await self.room_events.format_events(req, room, list(state_events.values()))
            )
        if timeline:
            entry["timeline"] = _without_room_id(await self.room_events.format_events(req, room, timeline, bundle=True))
        news = bool(
            initial or name is not None or avatar is not None or heroes or joined_count is not None
            or state_events or timeline or stripped_state
        )
        return entry, news

    # --- extensions ---

    async def _extensions(
        self, c: _Compute, rooms: dict[str, _Room], scope: _Scope, out_rooms: Mapping[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        ext = c.request.extensions
        out: dict[str, Any] = {}
        news = False
        if ext.to_device:
            out["to_device"] = await self._to_device(c, ext.to_device_since, ext.to_device_limit)
            news = news or bool(out["to_device"]["events"])
        if ext.e2ee:
            e2ee: dict[str, Any] = {"device_one_time_keys_count": {}, "device_unused_fallback_key_types": []}
            if c.requester.device_id is not None:
                e2ee.update(await self.key_counts.part(c.sync_request(c.since)))
            if c.since is not None:
                lists = (await self.device_lists.top_level(c.sync_request(c.since))).get("device_lists") or {}
                e2ee["device_lists"] = {"changed": lists.get("changed", []), "left": lists.get("left", [])}
                news = news or bool(lists.get("changed") or lists.get("left"))
            out["e2ee"] = e2ee
        if ext.account_data is not None:
            out["account_data"] = await self._account_data(c, rooms, scope.rooms(ext.account_data))
            news = news or bool(out["account_data"]["global"] or any(out["account_data"]["rooms"].values()))
        if ext.receipts is not None:
            out["receipts"] = {"rooms": await self._receipts(c, rooms, scope.rooms(ext.receipts), out_rooms)}
            news = news or bool(out["receipts"]["rooms"])
        if ext.typing is not None:
            typing: dict[str, Any] = {}
            req = c.sync_request(c.since)
            for room_id in scope.rooms(ext.typing):
                r = rooms.get(room_id)
                if r is not None and r.kind == "join":
                    for event in (await self.typing.room_part(req, r.room, "join")).get("ephemeral", []):
                        typing[room_id] = event
            out["typing"] = {"rooms": typing}
            news = news or bool(typing)
        return out, news

    async def _to_device(self, c: _Compute, since: int | None, limit: int) -> dict[str, Any]:
        """At most `limit` of the device's messages after the extension's own `since`
        (which acknowledges those up to it); `next_batch` is the position read up to."""
        if since is not None and since > c.now.to_device:
            return {"next_batch": str(since), "events": []}
        req = c.sync_request(SyncToken(to_device=since) if since else None)
        events, reached = await self.to_device.batch(req, limit)
        return {"next_batch": str(reached), "events": events}

    async def _account_data(self, c: _Compute, rooms: dict[str, _Room], room_ids: set[str]) -> dict[str, Any]:
        # Global: everything on a new connection, else what changed since pos.
        top = await self.account_data_stream.top_level(c.sync_request(c.since))
        global_events = top.get("account_data", {}).get("events", [])
        per_room: dict[str, list[dict[str, Any]]] = {}
        prior = c.prior.account_data
        since = c.since.account_data if c.since is not None else None
        for room_id in room_ids:
            start = c.prior.sent_from(prior, room_id, since)
            req = c.sync_request(SyncToken(account_data=start) if start is not None else None)
            events = (await self.account_data_stream.room_part(req, rooms[room_id].room, "join")).get("account_data", [])
            if events or start is None:  # a room sent from scratch is listed, empty or not (as Synapse)
                per_room[room_id] = events
        c.changes.sent(c.changes.account_data, prior, room_ids)
        if since is not None:
            changed = {e.room_id for e in await self.account_data.changes(c.user_id, since, c.now.account_data) if e.room_id}
            c.changes.unsent(c.changes.account_data, prior, changed - room_ids, since)
        return {"global": global_events, "rooms": per_room}

    async def _receipts(
        self, c: _Compute, rooms: dict[str, _Room], room_ids: set[str], out_rooms: Mapping[str, dict[str, Any]]
    ) -> dict[str, Any]:
        """Receipts that moved since the room was last sent on this connection (for a
        room sent from scratch, those on its timeline and the user's own, as Synapse
        sends), through the receipts stream."""
        prior = c.prior.receipts
        since = c.since.receipts if c.since is not None else None
        by_start: dict[int | None, list[UserMembership]] = {}
        for room_id in room_ids:
            r = rooms.get(room_id)
            if r is None or r.kind != "join":
                continue
            start = None if out_rooms.get(room_id, {}).get("initial") else c.prior.sent_from(prior, room_id, since)
            by_start.setdefault(start, []).append(r.membership)
        out: dict[str, Any] = {}
        for start, memberships in by_start.items():
            req = c.sync_request(SyncToken(receipts=start) if start is not None else None, memberships)
            if start is not None:
                await self.receipts.prepare(req)
            for m in memberships:
                r = rooms[m.room_id]
                if start is None:  # shown for the first time: receipts on what it is sent
                    timeline = out_rooms.get(m.room_id, {}).get("timeline", [])
                    part = await self.receipts.shown_room_part(req, r.room, [e["event_id"] for e in timeline])
                else:
                    part = await self.receipts.room_part(req, r.room, "join")
                for event in part.get("ephemeral", []):
                    out[m.room_id] = event
        c.changes.sent(c.changes.receipts, prior, room_ids)
        if since is not None:
            live_elsewhere = [room_id for room_id, status in prior.items() if room_id not in room_ids]
            changed = await self.receipts_changed(live_elsewhere, since)
            c.changes.unsent(c.changes.receipts, prior, changed, since)
        return out


@dataclass
class _Scope:
    """Which rooms an extension with `lists` / `rooms` applies to: the rooms in the
    named lists' windows, and the named rooms among those in the response's reach."""

    list_rooms: dict[str, list[str]]
    relevant: set[str]

    def rooms(self, ext: ScopedExtension) -> set[str]:
        out: set[str] = set()
        for room_id in ext.rooms or []:
            if room_id == WILDCARD:
                out |= self.relevant
                break
            if room_id in self.relevant:
                out.add(room_id)
        for name in ext.lists or []:
            if name == WILDCARD:
                for ids in self.list_rooms.values():
                    out.update(ids)
                break
            out.update(self.list_rooms.get(name, []))
        return out


def _matches(conf: RoomConfig, key: StateKey, user_id: str, lazy_users: set[str]) -> bool:
    """Whether a state event is asked for by a room's `required_state`. As Synapse
    does, any `*` event type asks for all state."""
    if WILDCARD in conf.required:
        return True
    keys = conf.required.get(key[0])
    if keys is None:
        return False
    if WILDCARD in keys or key[1] in keys:
        return True
    if ME in keys and key[1] == user_id:
        return True
    return key[0] == "m.room.member" and LAZY in keys and key[1] in lazy_users


def _string(value: Any) -> str | None:
    """A string field of event content; anything else there is no value (content is untrusted)."""
    return value if isinstance(value, str) else None


def _without_room_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sliding sync's events are in the client format without `room_id` (the room is the key)."""
    for e in events:
        e.pop("room_id", None)
    return events
