"""Spaces: walking a space's m.space.child tree (client-server "Spaces" module,
`GET /rooms/{roomId}/hierarchy`; server-server "Spaces", `GET /hierarchy/{roomId}`).

A room is summarised from our own current state when this server is joined to it;
otherwise from a `via` server's federation hierarchy answer, cached briefly. Which
rooms a user is shown follows the spec's list: rooms they are joined or invited to,
public or knockable rooms, world-readable rooms, and restricted rooms naming a room
they are joined to. Another server is shown, of a room it asks about and of that
room's children, what its users could peek or join, under the room's server ACL.

The walk is depth-first, in the spec's child order, each room once (loops are cut),
to `max_depth`. A page ends after `limit` rooms; what is left to walk is kept here
under a random `next_batch` token for a few minutes, usable only by the same user
for the same root, `suggested_only` and `max_depth`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from federation.client import FederationClient, FederationError, quote_path_segment
from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.federation.access import ServerGate
from homeserver.federation.queries import TtlCache
from homeserver.identifiers import domain_is
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.public_rooms import SUMMARY_KEYS, clean_room, plain_topic

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

SPACE_CHILD = "m.space.child"
SPACE_TYPE = "m.space"
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
DEFAULT_MAX_DEPTH = 20
MAX_DEPTH = 50
# Rooms one request may look at (shown or not), and remote servers it may ask: a
# deep or hostile tree costs a bounded amount of work per page.
MAX_ROOMS_EXAMINED = 500
MAX_REMOTE_FETCHES = 20
MAX_CHILDREN_PER_SPACE = 200
PAGINATION_TTL_S = 300.0
PAGINATION_SESSIONS = 1000
REMOTE_TTL_S = 60.0
REMOTE_CACHE_ENTRIES = 1000
REMOTE_TIMEOUT_S = 10.0
MAX_REMOTE_STRING = 4096
# Join rules under which anyone may ask to enter (public, or knock in a version that has it).
OPEN_JOIN_RULES = ("public", "knock", "knock_restricted")
RESTRICTED_JOIN_RULES = ("restricted", "knock_restricted")
_SUMMARY_KEYS = [*SUMMARY_KEYS, ("m.room.encryption", "")]
_EXTRA_STRINGS = ("room_type", "encryption", "room_version")


@dataclass(frozen=True)
class Child:
    """A valid m.space.child link: the child's room ID and the servers to ask."""

    room_id: str
    via: tuple[str, ...]
    suggested: bool
    order: str | None
    ts: int


@dataclass(frozen=True)
class Summary:
    """One room as the hierarchy shows it: the summary entry (without children_state),
    its m.space.child events stripped, and what deciding access needs."""

    entry: dict[str, Any]
    children_state: list[dict[str, Any]]

    @property
    def room_id(self) -> str:
        return str(self.entry["room_id"])

    @property
    def is_space(self) -> bool:
        return self.entry.get("room_type") == SPACE_TYPE

    @property
    def join_rule(self) -> str | None:
        rule = self.entry.get("join_rule")
        return rule if isinstance(rule, str) else None

    @property
    def allowed_room_ids(self) -> list[str]:
        ids = self.entry.get("allowed_room_ids")
        return [r for r in ids if isinstance(r, str)] if isinstance(ids, list) else []

    def with_children(self) -> dict[str, Any]:
        return {**self.entry, "children_state": list(self.children_state)}

    def children(self) -> list[Child]:
        return sorted_children(self.children_state)


def _valid_order(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 50 and all(0x20 <= ord(c) <= 0x7E for c in value):
        return value
    return None


def sorted_children(children_state: list[dict[str, Any]]) -> list[Child]:
    """The valid children (a non-empty `via` of strings), in the spec's order: a valid
    `order` first (by code point), then by the event's timestamp, then by room ID."""
    out: list[Child] = []
    for ev in children_state:
        room_id = ev.get("state_key")
        content = ev.get("content")
        if not isinstance(room_id, str) or not room_id.startswith("!") or not isinstance(content, dict):
            continue
        via = content.get("via")
        if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
            continue
        ts = ev.get("origin_server_ts")
        out.append(Child(
            room_id, tuple(via), content.get("suggested") is True, _valid_order(content.get("order")),
            ts if type(ts) is int else 0,
        ))
    out.sort(key=lambda c: (c.order is None, c.order or "", c.ts, c.room_id))
    return out


def _stripped_child(ev: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": ev.get("type"), "state_key": ev.get("state_key"), "content": ev.get("content"),
        "sender": ev.get("sender"), "origin_server_ts": ev.get("origin_server_ts"),
    }


def _clean_stripped(raw: Any) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or raw.get("type") != SPACE_CHILD:
        return None
    state_key, content, sender, ts = (raw.get(k) for k in ("state_key", "content", "sender", "origin_server_ts"))
    if (
        not isinstance(state_key, str) or not state_key.startswith("!") or len(state_key) > MAX_REMOTE_STRING
        or not isinstance(content, dict) or not isinstance(sender, str) or len(sender) > MAX_REMOTE_STRING
        or type(ts) is not int
    ):
        return None
    return {"type": SPACE_CHILD, "state_key": state_key, "content": content, "sender": sender,
            "origin_server_ts": ts}


def clean_summary(raw: Any) -> Summary | None:
    """A summary from another server with the spec's fields well-typed and nothing
    else; None when it lacks what a client relies on."""
    if not isinstance(raw, dict):
        return None
    entry = clean_room(raw)
    if entry is None:
        return None
    for name in _EXTRA_STRINGS:
        value = raw.get(name)
        if isinstance(value, str) and len(value) <= MAX_REMOTE_STRING:
            entry[name] = value
    allowed = raw.get("allowed_room_ids")
    if isinstance(allowed, list):
        entry["allowed_room_ids"] = [
            r for r in allowed[:100] if isinstance(r, str) and r.startswith("!") and len(r) <= MAX_REMOTE_STRING
        ]
    state = raw.get("children_state")
    children = [c for raw_child in (state[:MAX_CHILDREN_PER_SPACE] if isinstance(state, list) else [])
                if (c := _clean_stripped(raw_child)) is not None]
    return Summary(entry, children)


@dataclass(frozen=True)
class _Remote:
    """What a via server told us of a room: its summary, its children's summaries,
    and the children it says are closed to us."""

    room: Summary
    children: dict[str, Summary]
    inaccessible: frozenset[str]


@dataclass
class _Walk:
    """A walk in progress: who asks, the fixed parameters, what is left."""

    user_id: str
    root: str
    suggested_only: bool
    max_depth: int
    stack: list[tuple[str, tuple[str, ...], int]]  # (room_id, via, depth), next on top
    seen: set[str] = field(default_factory=set)


def _is_open(summary: Summary) -> bool:
    return summary.join_rule in OPEN_JOIN_RULES or summary.entry.get("world_readable") is True


class SpaceHierarchy:
    def __init__(
        self,
        *,
        server_name: str,
        rooms: RoomStore,
        room_service: RoomService,
        gate: ServerGate,
        client: FederationClient | None,
        clock: Clock,
    ) -> None:
        self.server_name = server_name
        self._rooms = rooms
        self._room_service = room_service
        self._gate = gate
        self._client = client
        self._walks: TtlCache[str, _Walk] = TtlCache(PAGINATION_SESSIONS, PAGINATION_TTL_S, clock.monotonic)
        self._remote: TtlCache[tuple[str, bool], _Remote | None] = TtlCache(
            REMOTE_CACHE_ENTRIES, REMOTE_TTL_S, clock.monotonic
        )

    # -- local rooms -------------------------------------------------------------

    async def _local_room(self, room_id: str) -> RoomRecord | None:
        """The room when this server is joined to it (its state here is current)."""
        room = await self._rooms.get_room(room_id)
        if room is None or not await self._gate.server_in_room(room, self.server_name):
            return None
        return room

    async def local_summary(self, room: RoomRecord) -> Summary:
        ids = await self._room_service.current_state_ids(room)
        child_keys = [k for k in ids if k[0] == SPACE_CHILD]
        state = await self._room_service.state_events(ids, [*_SUMMARY_KEYS, *child_keys])

        def content(event_type: str) -> dict[str, Any]:
            ev = state.get((event_type, ""))
            c = ev.event.get("content") if ev is not None else None
            return c if isinstance(c, dict) else {}

        def string(event_type: str, key: str) -> str | None:
            value = content(event_type).get(key)
            return value if isinstance(value, str) else None

        join_rule = string("m.room.join_rules", "join_rule")
        entry: dict[str, Any] = {
            "room_id": room.room_id,
            "num_joined_members": len(await self._rooms.members(room.room_nid, "join")),
            "world_readable": string("m.room.history_visibility", "history_visibility") == "world_readable",
            "guest_can_join": string("m.room.guest_access", "guest_access") == "can_join",
            "room_version": room.room_version,
        }
        optional = {
            "name": string("m.room.name", "name"),
            "topic": plain_topic(content("m.room.topic")),
            "canonical_alias": string("m.room.canonical_alias", "alias"),
            "avatar_url": string("m.room.avatar", "url"),
            "join_rule": join_rule,
            "room_type": string("m.room.create", "type"),
            "encryption": string("m.room.encryption", "algorithm"),
        }
        entry.update({k: v for k, v in optional.items() if v})
        if join_rule in RESTRICTED_JOIN_RULES:
            allow = content("m.room.join_rules").get("allow")
            entry["allowed_room_ids"] = [
                a["room_id"] for a in (allow if isinstance(allow, list) else [])
                if isinstance(a, dict) and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)
            ]
        children: list[dict[str, Any]] = []
        if optional["room_type"] == SPACE_TYPE:
            events = [state[k] for k in child_keys if k in state]
            events.sort(key=lambda e: e.event.get("origin_server_ts", 0))
            children = [_stripped_child(e.event) for e in events if e.event.get("content")]
        return Summary(entry, children)

    # -- who may see what --------------------------------------------------------

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        room = await self._rooms.get_room(room_id)
        if room is None:
            return None
        current = await self._rooms.membership_of(room.room_nid, user_id)
        return current[0] if current is not None else None

    async def _user_may_see(self, summary: Summary, user_id: str) -> bool:
        membership = await self._membership(summary.room_id, user_id)
        if membership in ("join", "invite"):
            return True
        if membership == "ban":
            return False  # a banned user may neither join nor peek
        if _is_open(summary):
            return True
        if summary.join_rule in RESTRICTED_JOIN_RULES:
            for allowed in summary.allowed_room_ids:
                if await self._membership(allowed, user_id) == "join":
                    return True
        return False

    async def _server_may_see(self, room: RoomRecord, summary: Summary, origin: str) -> bool:
        """Whether `origin` could peek or join the room: it federates, the ACL admits
        the server, and the room is open to all, or one of its users is joined or
        invited, or (restricted) is joined to an allowed room we know of."""
        if not room.federate or not await self._gate.acl_allows(room, origin):
            return False
        if _is_open(summary):
            return True
        members = await self._rooms.members(room.room_nid)
        if any(m in ("join", "invite") and domain_is(u, origin) for u, m, _ in members):
            return True
        if summary.join_rule in RESTRICTED_JOIN_RULES:
            for allowed_id in summary.allowed_room_ids:
                allowed = await self._rooms.get_room(allowed_id)
                if allowed is not None and await self._gate.server_in_room(allowed, origin):
                    return True
        return False

    # -- remote rooms ------------------------------------------------------------

    async def _fetch_remote(self, room_id: str, via: tuple[str, ...], suggested_only: bool) -> _Remote | None:
        """A via server's answer for the room (cached, failures too), None when no
        via server gave one."""
        key = (room_id, suggested_only)
        hit, cached = self._remote.get(key)
        if hit:
            return cached
        client = self._client
        result: _Remote | None = None
        if client is not None:
            for server in dict.fromkeys(via):
                if server == self.server_name:
                    continue
                try:
                    answer = await client.get_json(
                        server, f"/_matrix/federation/v1/hierarchy/{quote_path_segment(room_id)}",
                        query={"suggested_only": "true" if suggested_only else "false"},
                        timeout_s=REMOTE_TIMEOUT_S,
                    )
                except FederationError as exc:
                    logger.info("hierarchy of %s from %s: %s", room_id, server, exc)
                    continue
                result = self._clean_remote(room_id, answer)
                if result is not None:
                    break
                logger.info("hierarchy of %s from %s: unusable answer", room_id, server)
        self._remote.put(key, result)
        return result

    @staticmethod
    def _clean_remote(room_id: str, answer: Any) -> _Remote | None:
        if not isinstance(answer, dict):
            return None
        room = clean_summary(answer.get("room"))
        if room is None or room.room_id != room_id:
            return None
        raw_children = answer.get("children")
        children: dict[str, Summary] = {}
        for raw in raw_children[:MAX_CHILDREN_PER_SPACE] if isinstance(raw_children, list) else []:
            child = clean_summary(raw)
            if child is not None:
                children.setdefault(child.room_id, child)
        raw_closed = answer.get("inaccessible_children")
        closed = frozenset(
            r for r in (raw_closed[:MAX_CHILDREN_PER_SPACE] if isinstance(raw_closed, list) else [])
            if isinstance(r, str)
        )
        return _Remote(room, children, closed)

    async def room_summary(self, room_id: str, via: tuple[str, ...]) -> Summary | None:
        """One room's summary (the room summary API): ours when this server is in the
        room, else a via server's hierarchy answer (cached); None when neither. Who
        may see it is the caller's decision."""
        room = await self._local_room(room_id)
        if room is not None:
            return await self.local_summary(room)
        if not via:
            return None  # nobody to ask (and no "nobody answered" to cache for later askers)
        remote = await self._fetch_remote(room_id, via, False)
        return remote.room if remote is not None else None

    # -- the client API ----------------------------------------------------------

    async def hierarchy(
        self,
        user_id: str,
        room_id: str,
        *,
        suggested_only: bool = False,
        max_depth: int | None = None,
        limit: int | None = None,
        from_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of the space tree under `room_id` as `user_id` may see it."""
        if limit is not None and limit < 1:
            raise invalid_param("'limit' must be greater than zero")
        if max_depth is not None and max_depth < 0:
            raise invalid_param("'max_depth' must not be negative")
        page_size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        depth = min(DEFAULT_MAX_DEPTH if max_depth is None else max_depth, MAX_DEPTH)
        root = await self._local_room(room_id)
        root_summary = await self.local_summary(root) if root is not None else None
        if root_summary is None or not await self._user_may_see(root_summary, user_id):
            raise forbidden("You are not allowed to view this room")
        if from_token is not None:
            walk = self._resume(from_token, user_id, room_id, suggested_only, depth)
        else:
            walk = _Walk(user_id, room_id, suggested_only, depth, [(room_id, (), 0)])
        rooms: list[dict[str, Any]] = []
        examined = 0
        fetches = 0
        while walk.stack and len(rooms) < page_size and examined < MAX_ROOMS_EXAMINED:
            current, via, at_depth = walk.stack[-1]
            if current in walk.seen:
                walk.stack.pop()
                continue
            room = await self._local_room(current)
            if room is None and not self._remote.get((current, walk.suggested_only))[0]:
                if fetches >= MAX_REMOTE_FETCHES:
                    break  # this page has asked enough servers: the next one starts here
                fetches += 1
            walk.stack.pop()
            walk.seen.add(current)
            examined += 1
            summary = await self._summary_for_user(room, current, via, walk)
            if summary is None:
                continue
            rooms.append(summary.with_children())
            if at_depth >= walk.max_depth or not summary.is_space:
                continue
            children = [c for c in summary.children() if not walk.suggested_only or c.suggested]
            for child in reversed(children[:MAX_CHILDREN_PER_SPACE]):
                if child.room_id not in walk.seen:
                    walk.stack.append((child.room_id, child.via, at_depth + 1))
        out: dict[str, Any] = {"rooms": rooms}
        if walk.stack:
            token = secrets.token_urlsafe(18)
            self._walks.put(token, _Walk(
                walk.user_id, walk.root, walk.suggested_only, walk.max_depth, list(walk.stack), set(walk.seen)
            ))
            out["next_batch"] = token
        return out

    def _resume(self, token: str, user_id: str, room_id: str, suggested_only: bool, depth: int) -> _Walk:
        hit, walk = self._walks.get(token)
        if not hit or walk is None or walk.user_id != user_id or walk.root != room_id:
            raise invalid_param("Unknown or expired 'from' token")
        if walk.suggested_only != suggested_only or walk.max_depth != depth:
            raise invalid_param("'suggested_only' and 'max_depth' cannot change on paginated requests")
        # A copy: the same token may be used again (a client retrying a page).
        return _Walk(walk.user_id, walk.root, walk.suggested_only, walk.max_depth, list(walk.stack), set(walk.seen))

    async def _summary_for_user(
        self, room: RoomRecord | None, room_id: str, via: tuple[str, ...], walk: _Walk
    ) -> Summary | None:
        """The room's summary if the user may see it: ours when we are in the room
        (`room`), else a via server's (its answer about the room, or a space's answer
        about its children seen earlier)."""
        summary: Summary | None = None
        if room is not None:
            summary = await self.local_summary(room)
        else:
            remote = await self._fetch_remote(room_id, via, walk.suggested_only)
            if remote is not None:
                summary = remote.room
                for child_id, child in remote.children.items():
                    # Non-space children need no fetch of their own when reached.
                    if not child.is_space and not self._remote.get((child_id, walk.suggested_only))[0]:
                        self._remote.put((child_id, walk.suggested_only), _Remote(child, {}, frozenset()))
                for closed in remote.inaccessible:
                    self._remote.put((closed, walk.suggested_only), None)
        if summary is None or not await self._user_may_see(summary, walk.user_id):
            return None
        return summary

    # -- the federation API ------------------------------------------------------

    async def federation_hierarchy(self, origin: str, room_id: str, *, suggested_only: bool) -> dict[str, Any]:
        """The room and its children as `origin` may see them; 404 when we are not
        in the room or the server could not peek or join it."""
        room = await self._local_room(room_id)
        if room is None:
            raise not_found("Room does not exist")
        summary = await self.local_summary(room)
        if not await self._server_may_see(room, summary, origin):
            raise not_found("Room does not exist")
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for child in summary.children()[:MAX_CHILDREN_PER_SPACE]:
            if suggested_only and not child.suggested:
                continue
            child_room = await self._local_room(child.room_id)
            if child_room is None:
                continue  # not ours to describe
            child_summary = await self.local_summary(child_room)
            if await self._server_may_see(child_room, child_summary, origin):
                children.append(child_summary.with_children())
            else:
                inaccessible.append(child.room_id)
        return {"room": summary.with_children(), "children": children, "inaccessible_children": inaccessible}

