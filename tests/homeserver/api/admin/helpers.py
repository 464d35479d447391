"""Shared steps of the admin API tests: an admin, ordinary users, a room with history."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


async def make_admin(api: Api, name: str = "root") -> str:
    """A registered server admin's access token."""
    token = (await api.register(name))["access_token"]
    await api.hs.users.set_admin(f"@{name}:test.local", True)
    return token


async def make_user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def make_room(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


async def send_text(api: Api, token: str, room_id: str, text: str, txn: str) -> str:
    body = {"msgtype": "m.text", "body": text}
    return (await api.put(f"rooms/{room_id}/send/m.room.message/{txn}", body, token=token))["event_id"]


async def assert_refused_to_non_admins(
    api: Api, method: str, path: str, user_token: str, body: Any = None
) -> None:
    """Missing token: 401 M_MISSING_TOKEN; bad token: 401 M_UNKNOWN_TOKEN; non-admin: 403."""
    _, err = await api.request(method, path, body, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    _, err = await api.request(method, path, body, token="not-a-token", expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    _, err = await api.request(method, path, body, token=user_token, expect=403)
    assert err == {"errcode": "M_FORBIDDEN", "error": "You are not a server admin"}
