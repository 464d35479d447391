"""The registration token admin API, and that its tokens really gate registration."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, Api, FakeClock
from tests.homeserver.api.admin.helpers import (
    V1,
    assert_refused_to_non_admins,
    make_admin,
    make_user,
)

PATH = V1 + "/registration_tokens"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", PATH), ("POST", PATH + "/new"), ("GET", PATH + "/abc"), ("PUT", PATH + "/abc"), ("DELETE", PATH + "/abc")],
)
async def test_non_admins_are_refused(api: Api, method: str, path: str) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, method, path, alice, {} if method in ("POST", "PUT") else None)


async def test_lifecycle_and_registration(make_api) -> None:  # noqa: ANN001
    clock = FakeClock()
    api = await make_api(clock=clock, registration={"policy": "token"})
    await api.hs.registration.create_account("@root:test.local", PASSWORD, admin=True, login=False)
    admin = (await api.login("root"))["access_token"]
    generated = await api.post(PATH + "/new", {}, token=admin)
    assert len(generated["token"]) == 16
    assert generated == {"token": generated["token"], "uses_allowed": None, "pending": 0, "completed": 0, "expiry_time": None}
    assert len((await api.post(PATH + "/new", {"length": 64}, token=admin))["token"]) == 64
    once = await api.post(PATH + "/new", {"token": "defg", "uses_allowed": 1}, token=admin)
    assert once == {"token": "defg", "uses_allowed": 1, "pending": 0, "completed": 0, "expiry_time": None}
    assert await api.get(PATH + "/defg", token=admin) == once
    # Register with it, through the spec's UIA stage
    body = {"username": "newbie", "password": PASSWORD}
    _, challenge = await api.request("POST", "register", body, expect=401)
    body["auth"] = {"type": "m.login.registration_token", "token": "defg", "session": challenge["session"]}
    await api.post("register", body)
    used = await api.get(PATH + "/defg", token=admin)
    assert used["completed"] == 1 and used["pending"] == 0
    listed = await api.get(PATH + "?valid=false", token=admin)
    assert [t["token"] for t in listed["registration_tokens"]] == ["defg"]
    assert "defg" not in [t["token"] for t in (await api.get(PATH + "?valid=true", token=admin))["registration_tokens"]]
    assert len((await api.get(PATH, token=admin))["registration_tokens"]) == 3
    later = clock.time_ms() + 3_600_000
    updated = await api.put(PATH + "/defg", {"uses_allowed": 5, "expiry_time": later}, token=admin)
    assert updated["uses_allowed"] == 5 and updated["expiry_time"] == later
    assert (await api.put(PATH + "/defg", {}, token=admin))["uses_allowed"] == 5  # omitted: unchanged
    assert (await api.put(PATH + "/defg", {"expiry_time": None}, token=admin))["expiry_time"] is None
    assert await api.request("DELETE", PATH + "/defg", token=admin) == (200, {})
    _, err = await api.request("GET", PATH + "/defg", token=admin, expect=404)
    assert err == {"errcode": "M_NOT_FOUND", "error": "No such registration token: defg"}
    await api.request("DELETE", PATH + "/defg", token=admin, expect=404)
    await api.request("PUT", PATH + "/defg", {"uses_allowed": 1}, token=admin, expect=404)
    # The audit log names tokens by fingerprint only: a token is a credential
    rows = await api.hs.db.fetchall("SELECT target, details FROM audit_log WHERE action LIKE 'admin.registration_token.%'")
    assert rows and all("defg" not in (r[0] or "") + r[1] for r in rows)


@pytest.mark.parametrize(
    "body",
    [
        {"token": 5}, {"token": ""}, {"token": "x" * 65}, {"token": "bad token!"}, {"length": 0},
        {"length": 65}, {"length": "16"}, {"uses_allowed": -1}, {"uses_allowed": 1.5},
        {"uses_allowed": True}, {"expiry_time": "tomorrow"}, {"expiry_time": 1000},
    ],
)
async def test_create_rejects(api: Api, body: dict) -> None:
    admin = await make_admin(api)
    _, err = await api.request("POST", PATH + "/new", body, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_duplicate_and_update_rejects(api: Api) -> None:
    admin = await make_admin(api)
    await api.post(PATH + "/new", {"token": "abc"}, token=admin)
    _, err = await api.request("POST", PATH + "/new", {"token": "abc"}, token=admin, expect=400)
    assert err == {"errcode": "M_INVALID_PARAM", "error": "Token already exists: abc"}
    for body in ({"uses_allowed": -2}, {"expiry_time": "x"}, {"expiry_time": 5}):
        _, err = await api.request("PUT", PATH + "/abc", body, token=admin, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("GET", PATH + "?valid=perhaps", token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
