"""POST /createRoom's behaviour: presets, initial state and invites, in the order the
spec lists them, each event authorised like any other."""

from __future__ import annotations

import copy
import secrets
from typing import TYPE_CHECKING, Any

from federation.events import (
    DEFAULT_ROOM_VERSION,
    CanonicalJSONError,
    EventFormatError,
    UnsupportedRoomVersionError,
    build_event,
    get_room_version,
    room_id_from_create_event_id,
)
from homeserver.errors import MatrixError
from homeserver.identifiers import parse_user_id
from homeserver.storage.database import IntegrityError

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.rooms.aliases import AliasService
    from homeserver.rooms.membership import MembershipService
    from homeserver.rooms.service import RoomService
    from homeserver.server import HomeServer
    from homeserver.signing_key import SigningKey
    from homeserver.storage.rooms import RoomStore

_CREATE_ATTEMPTS = 8  # room IDs tried before giving up (they collide only within one ms)
MAX_KEY_BYTES = 255  # event types and state keys (the spec's size limits)

PRESETS = {
    "private_chat": {"join_rule": "invite", "history": "shared", "guest": "can_join", "trusted": False},
    "trusted_private_chat": {"join_rule": "invite", "history": "shared", "guest": "can_join", "trusted": True},
    "public_chat": {"join_rule": "public", "history": "shared", "guest": "forbidden", "trusted": False},
}


def default_power_levels(creator: str, creators_infinite: bool, invitees_full: list[str]) -> dict[str, Any]:
    users = {u: 100 for u in invitees_full}
    if not creators_infinite:
        users[creator] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50,
        "notifications": {"room": 50},
    }


def _str_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", f"Field '{key}' must be a string")
    return value


_LEVEL_KEYS = ("ban", "kick", "redact", "invite", "users_default", "events_default", "state_default")


def _is_level(value: Any) -> bool:
    return type(value) is int


def _check_power_level_override(override: dict[str, Any]) -> None:
    """Every supported room version (10+) wants integer levels. Checked before the room
    exists: the auth rules would refuse the power levels event only after the create
    event and the creator's join were stored, leaving a half-made room behind."""
    for key in _LEVEL_KEYS:
        if key in override and not _is_level(override[key]):
            raise MatrixError(400, "M_BAD_JSON", f"power_level_content_override.{key} must be an integer")
    for key in ("events", "users", "notifications"):
        if key not in override:
            continue
        value = override[key]
        if not isinstance(value, dict) or not all(_is_level(v) for v in value.values()):
            raise MatrixError(
                400, "M_BAD_JSON", f"power_level_content_override.{key} must map names to integers"
            )
    users = override.get("users", {})
    if not all(parse_user_id(u) for u in users):
        raise MatrixError(400, "M_BAD_JSON", "power_level_content_override.users keys must be user IDs")


def _validate(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Every field is type-checked before it is used: an object where a string belongs
    # would otherwise reach a dict lookup or comparison and fail as a 500.
    visibility = body.get("visibility", "private")
    if not isinstance(visibility, str) or visibility not in ("public", "private"):
        raise MatrixError(400, "M_BAD_JSON", "Field 'visibility' must be 'public' or 'private'")
    out["visibility"] = visibility
    preset = body.get("preset")
    if preset is None:
        preset = "public_chat" if visibility == "public" else "private_chat"
    if not isinstance(preset, str) or preset not in PRESETS:
        raise MatrixError(400, "M_BAD_JSON", f"Field 'preset' must be one of {', '.join(PRESETS)}")
    out["preset"] = preset
    version = body.get("room_version", DEFAULT_ROOM_VERSION)
    if not isinstance(version, str):
        raise MatrixError(400, "M_BAD_JSON", "Field 'room_version' must be a string")
    try:
        out["rv"] = get_room_version(version)
    except UnsupportedRoomVersionError:
        raise MatrixError(
            400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version!r} is not supported"
        ) from None
    for key in ("name", "topic", "room_alias_name"):
        out[key] = _str_field(body, key)
    invite = body.get("invite", [])
    if not isinstance(invite, list) or not all(isinstance(u, str) and parse_user_id(u) for u in invite):
        raise MatrixError(400, "M_INVALID_PARAM", "Field 'invite' must be a list of user IDs")
    out["invite"] = list(dict.fromkeys(invite))
    invite_3pid = body.get("invite_3pid")
    if invite_3pid is not None and not isinstance(invite_3pid, list):
        raise MatrixError(400, "M_BAD_JSON", "Field 'invite_3pid' must be a list")
    if invite_3pid:
        raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server")
    for key in ("creation_content", "power_level_content_override"):
        value = body.get(key)
        if value is not None and not isinstance(value, dict):
            raise MatrixError(400, "M_BAD_JSON", f"Field '{key}' must be an object")
        out[key] = copy.deepcopy(value) if value else {}
    _check_power_level_override(out["power_level_content_override"])
    initial_state = body.get("initial_state", [])
    if not isinstance(initial_state, list):
        raise MatrixError(400, "M_BAD_JSON", "Field 'initial_state' must be a list")
    for ev in initial_state:
        if (
            not isinstance(ev, dict)
            or not isinstance(ev.get("type"), str)
            or not isinstance(ev.get("state_key", ""), str)
            or not isinstance(ev.get("content"), dict)
        ):
            raise MatrixError(
                400, "M_BAD_JSON", "Each initial_state entry needs type, content and a string state_key"
            )
        if not ev["type"] or len(ev["type"].encode()) > MAX_KEY_BYTES or len(ev.get("state_key", "").encode()) > MAX_KEY_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "initial_state types and state keys are 1 to 255 bytes")
    out["initial_state"] = initial_state
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise MatrixError(400, "M_BAD_JSON", "Field 'is_direct' must be a boolean")
    out["is_direct"] = is_direct
    return out


class RoomCreator:
    """POST /createRoom: the create event, the initial state in the spec's order,
    aliases and invites."""

    def __init__(
        self, *, server_name: str, signing_key: SigningKey, clock: Clock, internal_by_default: bool,
        rooms: RoomStore, room_service: RoomService, membership: MembershipService, aliases: AliasService,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.clock = clock
        self.internal_by_default = internal_by_default
        self.rooms = rooms
        self.room_service = room_service
        self.membership = membership
        self.aliases = aliases

    async def create(self, creator: str, body: dict[str, Any]) -> str:
        """Create a room as the spec's createRoom describes; returns its room ID."""
        req = _validate(body)
        # The creator is joined already; inviting them would fail after the room exists.
        req["invite"] = [u for u in req["invite"] if u != creator]
        for invitee in req["invite"]:
            # Before the room exists: a refused invitee must not leave a half-made room.
            await self.membership.check_invitee(invitee)
        rv = req["rv"]
        preset = PRESETS[req["preset"]]
        alias = None
        if req["room_alias_name"] is not None:
            alias = self.aliases.check_new_alias_localpart(req["room_alias_name"])
            if await self.rooms.get_alias(alias) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

        creation_content = req["creation_content"]
        creation_content.pop("creator", None)
        creation_content["room_version"] = rv.identifier
        if rv.create_requires_creator_field:
            creation_content["creator"] = creator
        invitees_full: list[str] = []
        if preset["trusted"]:
            if rv.creators_have_infinite_power:
                extra = creation_content.get("additional_creators", [])
                if not isinstance(extra, list):
                    raise MatrixError(400, "M_BAD_JSON", "'additional_creators' must be a list")
                creation_content["additional_creators"] = list(dict.fromkeys([*extra, *req["invite"]]))
            else:
                invitees_full = req["invite"]
        if "additional_creators" in creation_content:
            extra = creation_content["additional_creators"]
            if not rv.creators_have_infinite_power:
                creation_content.pop("additional_creators")
            elif not isinstance(extra, list) or not all(isinstance(u, str) and parse_user_id(u) for u in extra):
                raise MatrixError(400, "M_BAD_JSON", "'additional_creators' must be a list of user IDs")
        if "m.federate" not in creation_content and self.internal_by_default:
            creation_content["m.federate"] = False  # an internal room unless the client asks otherwise
        federate = creation_content.get("m.federate", True)
        if not isinstance(federate, bool):
            raise MatrixError(400, "M_BAD_JSON", "'m.federate' must be a boolean")

        now = self.clock.time_ms()
        rooms = self.room_service
        for attempt in range(_CREATE_ATTEMPTS):
            room_id = None if rv.room_id_is_create_event_id else f"!{secrets.token_urlsafe(18)}:{self.server_name}"
            try:
                create_event = build_event(
                    rv, room_id=room_id, sender=creator, event_type="m.room.create",
                    content=creation_content, prev_events=[], auth_events=[], depth=1,
                    origin_server_ts=now + attempt, state_key="", signing_key=self.signing_key,
                    server_name=self.server_name,
                )
            except EventFormatError as e:
                raise MatrixError(
                    413 if e.too_large else 400, "M_TOO_LARGE" if e.too_large else "M_BAD_JSON", str(e)
                ) from None
            except CanonicalJSONError as e:
                raise MatrixError(400, "M_BAD_JSON", f"Content is not valid canonical JSON: {e}") from None
            if room_id is None:
                room_id = room_id_from_create_event_id(create_event["event_id"])
            try:
                room, _ = await rooms.create_room_event(room_id, rv, creator, federate, create_event)
                break
            except IntegrityError:
                # v12 room IDs are the create event's hash: the same creator asking twice for
                # the same room within one millisecond gets the same ID. A later timestamp
                # makes it a different room, as the client asked for two.
                if attempt + 1 == _CREATE_ATTEMPTS:
                    raise MatrixError(409, "M_UNKNOWN", "Could not allocate a room ID; try again") from None
        room_id = room.room_id

        async def state(event_type: str, content: dict[str, Any], state_key: str = "") -> None:
            await rooms.create_event(room, creator, event_type, content, state_key=state_key)

        await state("m.room.member", await self.membership.member_content(creator, "join"), creator)
        levels = default_power_levels(creator, rv.creators_have_infinite_power, invitees_full)
        if preset["join_rule"] == "invite":
            levels["invite"] = 0  # in a private room any member may invite
        levels.update(req["power_level_content_override"])
        await state("m.room.power_levels", levels)
        if alias is not None:
            await state("m.room.canonical_alias", {"alias": alias})
        initial_keys = {(e["type"], e.get("state_key", "")) for e in req["initial_state"]}
        for event_type, content in (
            ("m.room.join_rules", {"join_rule": preset["join_rule"]}),
            ("m.room.history_visibility", {"history_visibility": preset["history"]}),
            ("m.room.guest_access", {"guest_access": preset["guest"]}),
        ):
            if (event_type, "") not in initial_keys:
                await state(event_type, content)
        for ev in req["initial_state"]:
            if ev["type"] in ("m.room.create", "m.room.member", "m.room.power_levels"):
                continue
            await state(ev["type"], ev["content"], ev.get("state_key", ""))
        if req["name"] is not None:
            await state("m.room.name", {"name": req["name"]})
        if req["topic"] is not None:
            await state(
                "m.room.topic",
                {"topic": req["topic"], "m.topic": [{"mimetype": "text/plain", "body": req["topic"]}]},
            )
        if alias is not None:
            await self.rooms.create_alias(alias, room_id, creator, now)
        for invitee in req["invite"]:
            await self.membership.update(room, creator, invitee, "invite", is_direct=req["is_direct"])
        if req["visibility"] == "public":
            await self.rooms.set_published(room_id, True)
        return room_id


async def create_room(hs: HomeServer, creator: str, body: dict[str, Any]) -> str:
    """`hs.room_creator.create`, for tests and tools that hold a HomeServer."""
    return await hs.room_creator.create(creator, body)
