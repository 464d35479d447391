"""Server-side key backups: /room_keys/version[/{version}] and
/room_keys/keys[/{roomId}[/{sessionId}]] (GET, PUT, DELETE at each level).

Bounds on uploads (the body itself is capped by `limits.max_request_body_bytes`):
at most MAX_SESSIONS_PER_PUT session keys per request (413 M_TOO_LARGE beyond, so a
client splits its upload), room IDs as the spec bounds them, session IDs of 1 to 255
printable characters, the two counters non-negative signed 64-bit integers, `is_verified` a
boolean and `session_data` an object.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.client.account_data import is_valid_room_id
from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError
from homeserver.params import INT64_MAX, try_parse_int
from homeserver.records.key_backup import BackupVersion, SessionKey

MAX_SESSIONS_PER_PUT = 1000
MAX_SESSION_ID_CHARS = 255
MAX_ALGORITHM_CHARS = 255


def _invalid(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def _bad_json(message: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", message)


def _version_of(text: str | None) -> int | None:
    """A version string as its number; None when it names no version we could have."""
    return None if text is None else try_parse_int(text, minimum=1)


def _query_version(request: web.Request) -> int | None:
    raw = request.query.get("version")
    if raw is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required query parameter 'version'")
    return _version_of(raw)


def _room_id(room_id: str) -> str:
    if not isinstance(room_id, str) or not is_valid_room_id(room_id):
        raise _invalid(f"{room_id!r} is not a valid room ID")
    return room_id


def _session_id(session_id: str) -> str:
    if (
        not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID_CHARS
        or not session_id.isprintable()
    ):
        raise _invalid(f"A session ID must be 1 to {MAX_SESSION_ID_CHARS} printable characters")
    return session_id


def _counter(data: dict[str, Any], name: str) -> int:
    value = field(data, name, int, required=True)
    if not 0 <= value <= INT64_MAX:
        raise _bad_json(f"Field '{name}' must be an integer from 0 to {INT64_MAX}")
    return int(value)


def _session_key(data: Any) -> SessionKey:
    """One KeyBackupData object, with every field the spec requires, of its type."""
    if not isinstance(data, dict):
        raise _bad_json("Key backup data must be an object")
    return SessionKey(
        first_message_index=_counter(data, "first_message_index"),
        forwarded_count=_counter(data, "forwarded_count"),
        is_verified=field(data, "is_verified", bool, required=True),
        session_data=field(data, "session_data", dict, required=True),
    )


def _sessions(data: Any, budget: list[int]) -> dict[str, SessionKey]:
    """A RoomKeyBackup object ({"sessions": {id: data}}), counted against the request's budget."""
    if not isinstance(data, dict):
        raise _bad_json("Room key backup data must be an object")
    sessions = field(data, "sessions", dict, required=True)
    budget[0] -= len(sessions)
    if budget[0] < 0:
        raise MatrixError(
            413, "M_TOO_LARGE", f"At most {MAX_SESSIONS_PER_PUT} session keys may be uploaded at once"
        )
    return {_session_id(sid): _session_key(key) for sid, key in sessions.items()}


def _key_json(key: SessionKey) -> dict[str, Any]:
    return {
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": key.session_data,
    }


def _rooms_json(keys: dict[str, dict[str, SessionKey]]) -> dict[str, Any]:
    return {
        room_id: {"sessions": {sid: _key_json(k) for sid, k in sessions.items()}}
        for room_id, sessions in keys.items()
    }


def _version_json(v: BackupVersion) -> dict[str, Any]:
    return {
        "algorithm": v.algorithm, "auth_data": v.auth_data, "count": v.count,
        "etag": str(v.etag), "version": str(v.version),
    }


def _update_json(result: tuple[int, int]) -> web.Response:
    etag, count = result
    return json_response({"etag": str(etag), "count": count})


def _algorithm(body: dict[str, Any]) -> str:
    algorithm = field(body, "algorithm", str, required=True)
    if not 0 < len(algorithm) <= MAX_ALGORITHM_CHARS or not algorithm.isprintable():
        raise _invalid(f"'algorithm' must be 1 to {MAX_ALGORITHM_CHARS} printable characters")
    return str(algorithm)


# --- versions ---


async def create_version(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    algorithm = _algorithm(body)
    auth_data = field(body, "auth_data", dict, required=True)
    version = await get_hs(request).key_backup.create_version(req.user_id, algorithm, auth_data)
    return json_response({"version": str(version)})


async def get_current_version(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(_version_json(await get_hs(request).key_backup.get_version(req.user_id, None)))


async def get_version(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _version_of(request.match_info["version"])
    if version is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown backup version")
    return json_response(_version_json(await get_hs(request).key_backup.get_version(req.user_id, version)))


async def put_version(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await read_json(request)
    algorithm = _algorithm(body)
    auth_data = field(body, "auth_data", dict, required=True)
    named = field(body, "version", str)
    path_version = request.match_info["version"]
    if named is not None and named != path_version:
        raise _invalid("The version in the body does not match the version in the path")
    await get_hs(request).key_backup.update_version(
        req.user_id, _version_of(path_version), algorithm, auth_data
    )
    return json_response({})


async def delete_version(request: web.Request) -> web.Response:
    req = await requester(request)
    await get_hs(request).key_backup.delete_version(req.user_id, _version_of(request.match_info["version"]))
    return json_response({})


# --- keys ---


async def put_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    body = await read_json(request)
    budget = [MAX_SESSIONS_PER_PUT]
    rooms = field(body, "rooms", dict, required=True)
    keys = {_room_id(room_id): _sessions(data, budget) for room_id, data in rooms.items()}
    return _update_json(await get_hs(request).key_backup.put_keys(req.user_id, version, keys))


async def put_room_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    body = await read_json(request)
    keys = {room_id: _sessions(body, [MAX_SESSIONS_PER_PUT])}
    return _update_json(await get_hs(request).key_backup.put_keys(req.user_id, version, keys))


async def put_session_key(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    session_id = _session_id(request.match_info["session_id"])
    key = _session_key(await read_json(request))
    return _update_json(
        await get_hs(request).key_backup.put_keys(req.user_id, version, {room_id: {session_id: key}})
    )


async def get_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    keys = await get_hs(request).key_backup.get_keys(req.user_id, _query_version(request))
    return json_response({"rooms": _rooms_json(keys)})


async def get_room_keys(request: web.Request) -> web.Response:
    """A room without keys is `{"sessions": {}}`, as the spec says."""
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    keys = await get_hs(request).key_backup.get_keys(req.user_id, version, room_id)
    return json_response(_rooms_json(keys).get(room_id, {"sessions": {}}))


async def get_session_key(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    session_id = _session_id(request.match_info["session_id"])
    keys = await get_hs(request).key_backup.get_keys(req.user_id, version, room_id, session_id)
    key = keys.get(room_id, {}).get(session_id)
    if key is None:
        raise MatrixError(404, "M_NOT_FOUND", "No key found for this session")
    return json_response(_key_json(key))


async def delete_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    return _update_json(await get_hs(request).key_backup.delete_keys(req.user_id, version))


async def delete_room_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    return _update_json(await get_hs(request).key_backup.delete_keys(req.user_id, version, room_id))


async def delete_session_key(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    session_id = _session_id(request.match_info["session_id"])
    return _update_json(
        await get_hs(request).key_backup.delete_keys(req.user_id, version, room_id, session_id)
    )


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/room_keys/version", create_version)
    routes.add("GET", "/room_keys/version", get_current_version)
    routes.add("GET", "/room_keys/version/{version}", get_version)
    routes.add("PUT", "/room_keys/version/{version}", put_version)
    routes.add("DELETE", "/room_keys/version/{version}", delete_version)
    routes.add("PUT", "/room_keys/keys", put_keys)
    routes.add("GET", "/room_keys/keys", get_keys)
    routes.add("DELETE", "/room_keys/keys", delete_keys)
    routes.add("PUT", "/room_keys/keys/{room_id}", put_room_keys)
    routes.add("GET", "/room_keys/keys/{room_id}", get_room_keys)
    routes.add("DELETE", "/room_keys/keys/{room_id}", delete_room_keys)
    routes.add("PUT", "/room_keys/keys/{room_id}/{session_id}", put_session_key)
    routes.add("GET", "/room_keys/keys/{room_id}/{session_id}", get_session_key)
    routes.add("DELETE", "/room_keys/keys/{room_id}/{session_id}", delete_session_key)
