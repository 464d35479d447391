"""Profiles: GET /profile/{userId} and the per-field GET/PUT/DELETE of spec v1.16."""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError, not_found
from homeserver.identifiers import parse_user_id
from homeserver.media.ids import parse_mxc

_KEY = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")
MAX_PROFILE_BYTES = 64 * 1024
MAX_DISPLAYNAME_CHARS = 256
MAX_AVATAR_URL_CHARS = 1000


async def _profile_of(request: web.Request) -> tuple[str, dict[str, Any]]:
    hs = get_hs(request)
    user_id = request.match_info["user_id"]
    if parse_user_id(user_id) is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
    profile = await hs.profiles.get(user_id)
    if profile is None:
        raise not_found("Profile not found")
    return user_id, profile


def _remote_user(request: web.Request) -> str | None:
    """The user ID in the path when it names a user of another server (M_INVALID_PARAM
    when it is no user ID at all): their profile is theirs to tell, over federation."""
    user_id = request.match_info["user_id"]
    parsed = parse_user_id(user_id)
    if parsed is None:
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid user ID")
    return user_id if parsed[1] != get_hs(request).config.server_name else None


async def _check_lookup_allowed(request: web.Request) -> None:
    """The operator's limits on profile lookups (config `profiles`): a missing token is
    401 as usual; a user who shares no room with the target gets the spec's 403, which
    says nothing about whether the profile exists."""
    hs = get_hs(request)
    limits = hs.config.profiles
    if not (limits.require_auth or limits.limit_to_shared_rooms):
        return  # public, as the spec defines it: a token, good or bad, changes nothing
    req = await requester(request, allow_guest=True)
    target = request.match_info["user_id"]
    if not limits.limit_to_shared_rooms or req.user_id == target:
        return
    if not await hs.profiles.shares_room(req.user_id, target):
        raise MatrixError(403, "M_FORBIDDEN", "You do not share a room with this user")


async def get_profile(request: web.Request) -> web.Response:
    remote = _remote_user(request)
    await _check_lookup_allowed(request)
    if remote is not None:
        return json_response(await get_hs(request).remote_profiles.get(remote))
    _, profile = await _profile_of(request)
    return json_response(profile)


async def get_profile_field(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    remote = _remote_user(request)
    await _check_lookup_allowed(request)
    if remote is not None:
        if len(key.encode()) > 255 or not _KEY.fullmatch(key):
            raise not_found("Profile field not found")  # no profile can hold such a key
        return json_response(await get_hs(request).remote_profiles.get(remote, key))
    _, profile = await _profile_of(request)
    if key not in profile:
        raise not_found("Profile field not found")
    return json_response({key: profile[key]})


def _check_value(key: str, value: Any) -> None:
    if key == "displayname":
        if not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'displayname' must be a string")
        if len(value) > MAX_DISPLAYNAME_CHARS:
            raise MatrixError(400, "M_BAD_JSON", "Display name is too long")
    elif key == "avatar_url":
        if not isinstance(value, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'avatar_url' must be a string")
        if value and parse_mxc(value) is None:
            raise MatrixError(400, "M_BAD_JSON", "Field 'avatar_url' must be an mxc:// URI")
        if len(value) > MAX_AVATAR_URL_CHARS:
            raise MatrixError(400, "M_BAD_JSON", "Avatar URL is too long")
    elif key == "m.tz" and not isinstance(value, str):
        raise MatrixError(400, "M_BAD_JSON", "Field 'm.tz' must be a string")


async def _authorise_change(request: web.Request) -> tuple[str, str, dict[str, Any]]:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    key = request.match_info["key"]
    if len(key.encode()) > 255:
        raise MatrixError(400, "M_KEY_TOO_LARGE", "Profile key is longer than 255 bytes")
    if not _KEY.fullmatch(key):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid profile key")
    # Ownership first: whether someone else's profile exists is none of the caller's business.
    if request.match_info["user_id"] != req.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "You may only change your own profile")
    user_id, profile = await _profile_of(request)
    hs.ratelimiter.check("profile", req.user_id, exempt=hs.is_ratelimit_exempt(req.user_id))
    return user_id, key, profile


async def put_profile_field(request: web.Request) -> web.Response:
    user_id, key, profile = await _authorise_change(request)
    body = await read_json(request)
    if key not in body:
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing required field '{key}'")
    value = body[key]
    _check_value(key, value)
    profile[key] = value
    if len(orjson.dumps(profile)) > MAX_PROFILE_BYTES:
        raise MatrixError(400, "M_PROFILE_TOO_LARGE", "Profile would exceed 64 KiB")
    await get_hs(request).profiles.set_field(user_id, key, value)
    return json_response({})


async def delete_profile_field(request: web.Request) -> web.Response:
    user_id, key, _ = await _authorise_change(request)
    await get_hs(request).profiles.delete_field(user_id, key)
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/profile/{user_id}", get_profile)
    routes.add("GET", "/profile/{user_id}/{key}", get_profile_field)
    routes.add("PUT", "/profile/{user_id}/{key}", put_profile_field)
    routes.add("DELETE", "/profile/{user_id}/{key}", delete_profile_field)
