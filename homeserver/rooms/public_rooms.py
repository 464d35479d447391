"""The published room directory: the rooms this server lists on /publicRooms, and
other servers' directories fetched over federation for our clients.

Publishing is changed only by the room's moderators (power to send
m.room.canonical_alias, see `DirectoryRights`) or server admins, because a
listing speaks for the room to everyone on the server.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from federation.client import FederationClient, FederationError, RemoteError
from homeserver import base64url
from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.federation.queries import RemoteAnswerError, TtlCache, remote_failure
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.aliases import DirectoryRights

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

# Join rules under which a published room is actually listed (besides world-readable
# rooms): a room nobody can enter without an invite would only be an advert for a
# closed door. The spec's published-directory warning allows this filter.
LISTABLE_JOIN_RULES = ("public", "knock", "knock_restricted")
SUMMARY_KEYS = [
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.topic", ""),
    ("m.room.avatar", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.join_rules", ""),
    ("m.room.history_visibility", ""),
    ("m.room.guest_access", ""),
]
# Other servers' directories: what one page may hold, how long a page is reused,
# and the longest string (name, topic, token, ...) passed on from one.
MAX_REMOTE_ROOMS = 500
REMOTE_ROOMS_TTL_S = 60.0
REMOTE_ROOMS_CACHE_ENTRIES = 1000
REMOTE_QUERY_TIMEOUT_S = 15.0
MAX_REMOTE_STRING = 4096
# Optional fields of a remote entry, each kept when it is a string with this prefix.
_OPTIONAL_ROOM_FIELDS = {
    "name": "", "topic": "", "canonical_alias": "#", "avatar_url": "mxc://", "join_rule": "", "room_type": "",
}



@dataclass
class _Listed:
    """One published room as /publicRooms shows it, with its sort key."""

    members: int
    room_id: str
    entry: dict[str, Any]
    search_text: str
    room_type: str | None

    @property
    def key(self) -> tuple[int, str]:
        # Ascending order of this key is the listing order: most members first,
        # then room ID, so pages are stable while membership counts are.
        return (-self.members, self.room_id)


def _encode_token(direction: str, key: tuple[int, str]) -> str:
    raw = orjson.dumps([direction, -key[0], key[1]])
    return base64url.encode(raw)


def _decode_token(token: str) -> tuple[bool, tuple[int, str]]:
    """(forwards, sort key) of a since token; M_INVALID_PARAM for anything we did not issue."""
    try:
        raw = base64url.decode(token)
        direction, members, room_id = orjson.loads(raw)
        if direction not in ("n", "p") or type(members) is not int or not isinstance(room_id, str):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise invalid_param("Invalid 'since' pagination token") from None
    return direction == "n", (-members, room_id)


def _str(content: dict[str, Any], key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) else None


def plain_topic(content: dict[str, Any]) -> str | None:
    """The text/plain topic: the m.topic representation if there is one, else `topic`."""
    reps = content.get("m.topic")
    if isinstance(reps, list):
        for rep in reps:
            if (
                isinstance(rep, dict)
                and rep.get("mimetype", "text/plain") == "text/plain"
                and isinstance(rep.get("body"), str)
            ):
                return str(rep["body"])
    return _str(content, "topic")


class PublicRoomsService:
    def __init__(
        self,
        *,
        rights: DirectoryRights,
        room_store: RoomStore,
        room_service: RoomService,
        federation_client: FederationClient | None,
        clock: Clock,
    ) -> None:
        self.rights = rights
        self._room_store = room_store
        self._room_service = room_service
        self._federation_client = federation_client
        self._remote_rooms: TtlCache[tuple[Any, ...], dict[str, Any]] = TtlCache(
            REMOTE_ROOMS_CACHE_ENTRIES, REMOTE_ROOMS_TTL_S, clock.monotonic
        )

    async def get_visibility(self, room_id: str) -> str:
        room = await self._room_store.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        return "public" if room.published else "private"

    async def set_visibility(self, user_id: str, room_id: str, visibility: str) -> None:
        """Publish or unpublish a room: its moderators or a server admin may."""
        if visibility not in ("public", "private"):
            raise invalid_param("'visibility' must be 'public' or 'private'")
        room = await self._room_store.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        if not await self.rights.may_edit(room, user_id) and not await self.rights.is_admin(user_id):
            raise forbidden("You may not change this room's visibility in the directory")
        if room.published != (visibility == "public"):
            await self._room_store.set_published(room_id, visibility == "public")

    async def _listed(self, room: RoomRecord) -> _Listed | None:
        """The directory entry of a published room, or None when it is not listable
        (no one joined, or neither enterable without invite nor world readable)."""
        members = len(await self._room_store.members(room.room_nid, "join"))
        if members == 0:
            return None
        state = await self._room_service.current_state_events(room, SUMMARY_KEYS)

        def content(event_type: str) -> dict[str, Any]:
            ev = state.get((event_type, ""))
            c = ev.event.get("content") if ev is not None else None
            return c if isinstance(c, dict) else {}

        join_rule = _str(content("m.room.join_rules"), "join_rule")
        world_readable = content("m.room.history_visibility").get("history_visibility") == "world_readable"
        if join_rule not in LISTABLE_JOIN_RULES and not world_readable:
            return None
        entry: dict[str, Any] = {
            "room_id": room.room_id,
            "num_joined_members": members,
            "world_readable": world_readable,
            "guest_can_join": content("m.room.guest_access").get("guest_access") == "can_join",
        }
        optional = {
            "name": _str(content("m.room.name"), "name"),
            "topic": plain_topic(content("m.room.topic")),
            "canonical_alias": _str(content("m.room.canonical_alias"), "alias"),
            "avatar_url": _str(content("m.room.avatar"), "url"),
            "join_rule": join_rule,
            "room_type": _str(content("m.room.create"), "type"),
        }
        entry.update({k: v for k, v in optional.items() if v})
        alt = content("m.room.canonical_alias").get("alt_aliases")
        searchable = [entry.get("name"), entry.get("topic"), entry.get("canonical_alias")]
        if isinstance(alt, list):
            searchable.extend(a for a in alt if isinstance(a, str))
        text = "\n".join(s for s in searchable if s).casefold()
        return _Listed(members, room.room_id, entry, text, optional["room_type"])

    async def public_rooms(
        self,
        *,
        limit: int | None,
        since: str | None,
        search_term: str | None = None,
        room_types: list[str | None] | None = None,
        third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of the published directory, most joined members first.

        Tokens name the last (next_batch) or first (prev_batch) room shown, so a page
        boundary stays put when rooms are published or unpublished in between.
        """
        forwards, bound = _decode_token(since) if since else (True, None)
        if third_party_instance_id is not None:
            # No application service publishes networks here, so any named network is empty.
            return {"chunk": [], "total_room_count_estimate": 0}
        listed = [entry for room in await self._room_store.published_rooms() if (entry := await self._listed(room))]
        if room_types:
            wanted = set(room_types)
            listed = [r for r in listed if r.room_type in wanted]
        total = len(listed)
        if search_term:
            term = search_term.casefold()
            listed = [r for r in listed if term in r.search_text]
        listed.sort(key=lambda r: r.key)
        keys = [r.key for r in listed]
        size = limit if limit else len(listed)
        if bound is None:
            start = 0
            end = min(size, len(listed))
        elif forwards:
            start = bisect.bisect_right(keys, bound)
            end = min(start + size, len(listed))
        else:
            end = bisect.bisect_left(keys, bound)
            start = max(0, end - size)
        chunk = listed[start:end]
        out: dict[str, Any] = {"chunk": [r.entry for r in chunk], "total_room_count_estimate": total}
        if chunk and end < len(listed):
            out["next_batch"] = _encode_token("n", chunk[-1].key)
        if chunk and start > 0:
            out["prev_batch"] = _encode_token("p", chunk[0].key)
        return out

    async def remote_public_rooms(
        self,
        server: str,
        *,
        limit: int | None,
        since: str | None,
        search_term: str | None = None,
        room_types: list[str | None] | None = None,
        include_all_networks: bool = False,
        third_party_instance_id: str | None = None,
    ) -> dict[str, Any]:
        """One page of ``server``'s published directory, fetched over federation
        (briefly cached), with every entry checked before a client sees it.

        A filter goes out as POST; without one, as GET, which every server
        implements. A server that does not know the POST form gets the GET one
        and the search term is applied here, to the page it returned.
        """
        client = self._federation_client
        if client is None:
            raise not_found(f"Cannot list the room directory of {server}: this server does not federate")
        limit = min(limit or MAX_REMOTE_ROOMS, MAX_REMOTE_ROOMS)
        filtered = bool(search_term) or bool(room_types)
        key = (server, limit, since, search_term, tuple(room_types or ()), include_all_networks,
               third_party_instance_id)

        async def fetch() -> dict[str, Any]:
            try:
                page = await self._fetch_remote_rooms(
                    client, server, limit=limit, since=since, search_term=search_term,
                    room_types=room_types, include_all_networks=include_all_networks,
                    third_party_instance_id=third_party_instance_id, filtered=filtered,
                )
            except (FederationError, RemoteAnswerError) as exc:
                logger.info("public rooms of %s: %s", server, exc)
                raise remote_failure(exc, server, "room directory") from None
            self._remote_rooms.put(key, page)
            return page

        return await self._remote_rooms.get_or_compute(key, fetch)

    async def _fetch_remote_rooms(
        self,
        client: FederationClient,
        server: str,
        *,
        limit: int,
        since: str | None,
        search_term: str | None,
        room_types: list[str | None] | None,
        include_all_networks: bool,
        third_party_instance_id: str | None,
        filtered: bool,
    ) -> dict[str, Any]:
        path = "/_matrix/federation/v1/publicRooms"
        if filtered:
            body: dict[str, Any] = {"limit": limit, "include_all_networks": include_all_networks}
            flt: dict[str, Any] = {}
            if search_term:
                flt["generic_search_term"] = search_term
            if room_types:
                flt["room_types"] = room_types
            body["filter"] = flt
            if since is not None:
                body["since"] = since
            if third_party_instance_id is not None:
                body["third_party_instance_id"] = third_party_instance_id
            try:
                answer = await client.post_json(server, path, body, timeout_s=REMOTE_QUERY_TIMEOUT_S)
                return clean_public_rooms(answer, limit)
            except RemoteError as exc:
                if not (exc.status in (404, 405) or exc.errcode == "M_UNRECOGNIZED"):
                    raise
        query: dict[str, str] = {"limit": str(limit)}
        if since is not None:
            query["since"] = since
        if include_all_networks:
            query["include_all_networks"] = "true"
        if third_party_instance_id is not None:
            query["third_party_instance_id"] = third_party_instance_id
        answer = await client.get_json(server, path, query=query, timeout_s=REMOTE_QUERY_TIMEOUT_S)
        page = clean_public_rooms(answer, limit)
        if filtered:
            page["chunk"] = [e for e in page["chunk"] if _matches(e, search_term, room_types)]
        return page


def _matches(entry: dict[str, Any], search_term: str | None, room_types: list[str | None] | None) -> bool:
    """The local stand-in for a filter the remote could not apply."""
    if room_types and entry.get("room_type") not in set(room_types):
        return False
    if search_term:
        text = "\n".join(str(entry.get(k) or "") for k in ("name", "topic", "canonical_alias"))
        return search_term.casefold() in text.casefold()
    return True


def clean_room(raw: Any) -> dict[str, Any] | None:
    """A remote directory entry (or space hierarchy summary) with its required fields well-typed, its optional
    ones kept only when valid, and nothing else; None when it cannot be shown."""
    if not isinstance(raw, dict):
        return None
    room_id = raw.get("room_id")
    members = raw.get("num_joined_members")
    if (
        not isinstance(room_id, str)
        or not room_id.startswith("!")
        or len(room_id) > MAX_REMOTE_STRING
        or type(members) is not int
        or members < 0
        or type(raw.get("world_readable")) is not bool
        or type(raw.get("guest_can_join")) is not bool
    ):
        return None
    entry: dict[str, Any] = {
        "room_id": room_id,
        "num_joined_members": members,
        "world_readable": raw["world_readable"],
        "guest_can_join": raw["guest_can_join"],
    }
    for name, prefix in _OPTIONAL_ROOM_FIELDS.items():
        value = raw.get(name)
        if isinstance(value, str) and value.startswith(prefix) and len(value) <= MAX_REMOTE_STRING:
            entry[name] = value
    return entry


def clean_public_rooms(answer: Any, limit: int) -> dict[str, Any]:
    """A remote /publicRooms answer as we pass it on: at most ``limit`` valid entries,
    the paging tokens only when they are sane strings."""
    if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
        raise RemoteAnswerError("public rooms answer has no 'chunk' list")
    chunk = [e for raw in answer["chunk"][: limit * 2] if (e := clean_room(raw)) is not None]
    out: dict[str, Any] = {"chunk": chunk[:limit]}
    for token in ("next_batch", "prev_batch"):
        value = answer.get(token)
        if isinstance(value, str) and 0 < len(value) <= MAX_REMOTE_STRING:
            out[token] = value
    estimate = answer.get("total_room_count_estimate")
    if type(estimate) is int and estimate >= 0:
        out["total_room_count_estimate"] = estimate
    return out
