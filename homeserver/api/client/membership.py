"""Room membership: join, invite, leave, forget, kick, ban, unban and knock.

The handlers only parse requests; `MembershipService` decides. Unknown rooms
are 404 M_NOT_FOUND on every endpoint; whatever the room's rules refuse is
403 M_FORBIDDEN with the reason. Guests may join and leave (the spec's list of
guest endpoints) and nothing else here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError, invalid_param
from homeserver.identifiers import parse_user_id
from homeserver.records.rooms import RoomRecord


async def _body(request: web.Request) -> dict[str, Any]:
    # The spec marks these bodies required, but clients commonly send none for
    # /leave and /forget; an absent body means "no reason".
    return await read_json(request, allow_empty=True)


def _reason(body: dict[str, Any]) -> str | None:
    reason: str | None = field(body, "reason", str)
    return reason


def _target(body: dict[str, Any]) -> str:
    user_id: str = field(body, "user_id", str, required=True)
    if parse_user_id(user_id) is None:
        raise invalid_param(f"Invalid user ID {user_id!r}")
    return user_id


def _refuse_third_party(body: dict[str, Any]) -> None:
    if body.get("third_party_signed") is not None:
        raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server")


async def _room_in_path(request: web.Request) -> RoomRecord:
    room_id = request.match_info["room_id"]
    if not room_id.startswith("!"):
        raise invalid_param("Expected a room ID")
    return await get_hs(request).membership.resolve_room(room_id)


def _check_rate(request: web.Request, user_id: str, action: str | None = None) -> None:
    """Membership changes are room events: they share the message bucket. Joins
    (and knocks) and invites have their own buckets too, as each can make this
    server work hard (a remote join fetches a room's whole state; an invite to
    another server is a federation request) or spam other users."""
    limiter = get_hs(request).ratelimiter
    if action is not None:
        limiter.check_user(action, user_id)
    limiter.check_user("message", user_id)


#: Keys of a join body that are not membership content, or that only the server sets.
_NOT_JOIN_CONTENT = frozenset({
    "reason", "third_party_signed", "membership", "join_authorised_via_users_server", "third_party_invite",
})


def _join_content(body: dict[str, Any]) -> dict[str, Any]:
    """What else the client put in its join body goes into its membership event, as
    Synapse does and clients rely on (custom keys, a per-room displayname)."""
    return {k: v for k, v in body.items() if k not in _NOT_JOIN_CONTENT}


def _via(request: web.Request) -> list[str]:
    """Servers the client suggests for a room this server is not in (`via`, or the
    older `server_name`)."""
    return request.query.getall("via", []) + request.query.getall("server_name", [])


async def post_join(request: web.Request) -> web.Response:
    """POST /join/{roomIdOrAlias}; `via`/`server_name` name servers to join a
    remote room through."""
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    body = await _body(request)
    reason = _reason(body)
    _refuse_third_party(body)
    target = request.match_info["room_id_or_alias"]
    _check_rate(request, req.user_id, "join")
    try:
        room = await hs.membership.resolve_room(target)
    except MatrixError as e:
        if e.status != 404 or req.is_guest:
            raise
        return json_response({"room_id": await _join_remote(request, req.user_id, target, e, body)})
    room_id = await hs.membership.join(
        room, req.user_id, reason=reason, is_guest=req.is_guest, via=_via(request), extra=_join_content(body)
    )
    return json_response({"room_id": room_id})


async def _locate_remote(request: web.Request, target: str, not_here: MatrixError) -> tuple[str, list[str]]:
    """The room ID and servers to ask for a room this server has never seen: those
    the client named and those the ID or alias implies."""
    hs = get_hs(request)
    if not hs.config.federation.enabled:
        raise not_here  # nothing may leave this server, not even a directory query
    via = _via(request)
    try:
        room_id, servers = await hs.federated_joins.locate(target, via)
    except MatrixError:
        raise
    except Exception:
        raise not_here from None
    servers = [s for s in servers if s != hs.config.server_name]
    if not servers:  # our own room ID or alias: it simply does not exist
        raise not_here
    return room_id, servers


async def _join_remote(
    request: web.Request, user_id: str, target: str, not_here: MatrixError, body: dict[str, Any]
) -> str:
    room_id, servers = await _locate_remote(request, target, not_here)
    extra = _join_content(body)
    reason = _reason(body)
    if reason is not None:
        extra["reason"] = reason
    return await get_hs(request).federated_joins.join_remote(user_id, room_id, servers, extra)


async def post_room_join(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    body = await _body(request)
    reason = _reason(body)
    _refuse_third_party(body)
    _check_rate(request, req.user_id, "join")
    try:
        room = await _room_in_path(request)
    except MatrixError as e:
        if e.status != 404 or req.is_guest:
            raise
        return json_response(
            {"room_id": await _join_remote(request, req.user_id, request.match_info["room_id"], e, body)}
        )
    room_id = await hs.membership.join(
        room, req.user_id, reason=reason, is_guest=req.is_guest, via=_via(request), extra=_join_content(body)
    )
    return json_response({"room_id": room_id})


async def post_invite(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await _body(request)
    if "user_id" not in body and {"id_server", "medium", "address"} & set(body):
        raise MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server")
    target, reason = _target(body), _reason(body)
    room = await _room_in_path(request)
    _check_rate(request, req.user_id, "invite")
    await hs.membership.invite(room, req.user_id, target, reason=reason)
    return json_response({})


async def post_leave(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    reason = _reason(await _body(request))
    room = await _room_in_path(request)
    _check_rate(request, req.user_id)
    await hs.membership.leave(room, req.user_id, reason=reason)
    return json_response({})


async def post_forget(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    await _body(request)
    room = await _room_in_path(request)
    await hs.membership.forget(room, req.user_id)
    return json_response({})


def _moderation(action: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """kick, ban and unban share one request shape: a target user and an optional reason."""

    async def handler(request: web.Request) -> web.Response:
        hs = get_hs(request)
        req = await requester(request)
        body = await _body(request)
        target, reason = _target(body), _reason(body)
        room = await _room_in_path(request)
        _check_rate(request, req.user_id)
        await getattr(hs.membership, action)(room, req.user_id, target, reason=reason)
        return json_response({})

    return handler


post_kick = _moderation("kick")
post_ban = _moderation("ban")
post_unban = _moderation("unban")


async def post_knock(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    reason = _reason(await _body(request))
    target = request.match_info["room_id_or_alias"]
    _check_rate(request, req.user_id, "join")
    try:
        room = await hs.membership.resolve_room(target)
    except MatrixError as e:
        if e.status != 404:
            raise
        room_id, servers = await _locate_remote(request, target, e)
        return json_response({"room_id": await hs.federated_joins.knock_remote(req.user_id, room_id, servers, reason)})
    if not await hs.membership.is_resident(room):
        servers = await hs.membership.servers_to_ask(room.room_id, req.user_id, _via(request))
        if servers:
            room_id = await hs.federated_joins.knock_remote(req.user_id, room.room_id, servers, reason)
            return json_response({"room_id": room_id})
    await hs.membership.knock(room, req.user_id, reason=reason)
    return json_response({"room_id": room.room_id})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/join/{room_id_or_alias}", post_join)
    routes.add("POST", "/knock/{room_id_or_alias}", post_knock)
    routes.add("POST", "/rooms/{room_id}/join", post_room_join)
    routes.add("POST", "/rooms/{room_id}/invite", post_invite)
    routes.add("POST", "/rooms/{room_id}/leave", post_leave)
    routes.add("POST", "/rooms/{room_id}/forget", post_forget)
    routes.add("POST", "/rooms/{room_id}/kick", post_kick)
    routes.add("POST", "/rooms/{room_id}/ban", post_ban)
    routes.add("POST", "/rooms/{room_id}/unban", post_unban)
