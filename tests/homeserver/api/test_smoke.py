"""The first request a client makes, and the error shapes every endpoint shares."""

from __future__ import annotations

from tests.conftest import Api


async def test_versions(api: Api) -> None:
    body = await api.get("/_matrix/client/versions")
    assert "v1.1" in body["versions"]


async def test_register_login_whoami(api: Api) -> None:
    reg = await api.register("alice")
    assert reg["user_id"] == "@alice:test.local"
    who = await api.get("account/whoami", token=reg["access_token"])
    assert who == {"user_id": "@alice:test.local", "device_id": reg["device_id"], "is_guest": False}
    login = await api.login("alice")
    assert login["device_id"] != reg["device_id"]
