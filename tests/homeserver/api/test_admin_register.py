"""Synapse-compatible shared-secret registration: GET/POST /_synapse/admin/v1/register.

The MAC is computed here independently, exactly as Synapse's admin API documentation
describes it: HMAC-SHA1 keyed with the shared secret over
nonce NUL username NUL password NUL ("admin" | "notadmin") [NUL user_type], hex-encoded.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tests.conftest import PASSWORD, Api, FakeClock

PATH = "/_synapse/admin/v1/register"
SECRET = "test-shared-secret"  # what tests/conftest.py configures


def mac_for(
    nonce: str, username: str, password: str, admin: bool, user_type: str | None = None,
    secret: str = SECRET,
) -> str:
    message = b"\x00".join(
        [nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]
    )
    if user_type:
        message += b"\x00" + user_type.encode()
    return hmac.new(secret.encode(), message, hashlib.sha1).hexdigest()


async def nonce(api: Api) -> str:
    body = await api.get(PATH)
    assert set(body) == {"nonce"}
    return body["nonce"]


async def register(
    api: Api, username: str, *, admin: bool = False, user_type: str | None = None,
    password: str = PASSWORD, expect: int = 200, **extra: Any,
) -> Any:
    n = await nonce(api)
    body: dict[str, Any] = {
        "nonce": n, "username": username, "password": password, "admin": admin,
        "mac": mac_for(n, username, password, admin, user_type), **extra,
    }
    if user_type is not None:
        body["user_type"] = user_type
    return (await api.request("POST", PATH, body, expect=expect))[1]


async def test_nonce(api: Api) -> None:
    a, b = await nonce(api), await nonce(api)
    assert a != b
    assert len(a) >= 32


async def test_register_admin(api: Api) -> None:
    body = await register(api, "root", admin=True, displayname="The Operator")
    assert set(body) == {"access_token", "user_id", "home_server", "device_id"}
    assert body["user_id"] == "@root:test.local"
    assert body["home_server"] == "test.local"
    who = await api.get("account/whoami", token=body["access_token"])
    assert who == {"user_id": "@root:test.local", "device_id": body["device_id"], "is_guest": False}
    user = await api.hs.users.get_user("@root:test.local")
    assert user is not None and user.admin is True and user.user_type is None
    assert await api.get("profile/@root:test.local") == {"displayname": "The Operator"}
    await api.login("root")


async def test_register_non_admin(api: Api) -> None:
    await register(api, "alice")
    user = await api.hs.users.get_user("@alice:test.local")
    assert user is not None and user.admin is False
    assert await api.get("profile/@alice:test.local") == {"displayname": "alice"}


async def test_admin_flag_defaults_to_false(api: Api) -> None:
    n = await nonce(api)
    body = {"nonce": n, "username": "alice", "password": PASSWORD,
            "mac": mac_for(n, "alice", PASSWORD, False)}
    await api.post(PATH, body)
    user = await api.hs.users.get_user("@alice:test.local")
    assert user is not None and user.admin is False


async def test_register_with_user_type(api: Api) -> None:
    await register(api, "helper", user_type="bot")
    user = await api.hs.users.get_user("@helper:test.local")
    assert user is not None and user.user_type == "bot"


async def test_mac_must_cover_user_type(api: Api) -> None:
    n = await nonce(api)
    body = {"nonce": n, "username": "helper", "password": PASSWORD, "admin": False,
            "user_type": "bot", "mac": mac_for(n, "helper", PASSWORD, False)}
    _, err = await api.request("POST", PATH, body, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_mac_must_cover_admin_flag(api: Api) -> None:
    n = await nonce(api)
    body = {"nonce": n, "username": "eve", "password": PASSWORD, "admin": True,
            "mac": mac_for(n, "eve", PASSWORD, False)}
    _, err = await api.request("POST", PATH, body, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    assert await api.hs.users.get_user("@eve:test.local") is None


async def test_wrong_mac(api: Api) -> None:
    n = await nonce(api)
    for mac in (mac_for(n, "alice", PASSWORD, False, secret="wrong secret"), "00" * 20, ""):
        n = await nonce(api)
        body = {"nonce": n, "username": "alice", "password": PASSWORD, "admin": False, "mac": mac}
        _, err = await api.request("POST", PATH, body, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    assert await api.hs.users.get_user("@alice:test.local") is None


async def test_nonce_is_single_use(api: Api) -> None:
    n = await nonce(api)
    body = {"nonce": n, "username": "alice", "password": PASSWORD, "admin": False,
            "mac": mac_for(n, "alice", PASSWORD, False)}
    await api.post(PATH, body)
    body2 = {"nonce": n, "username": "bob", "password": PASSWORD, "admin": False,
             "mac": mac_for(n, "bob", PASSWORD, False)}
    _, err = await api.request("POST", PATH, body2, expect=400)
    assert err["errcode"] == "M_UNKNOWN"
    assert await api.hs.users.get_user("@bob:test.local") is None


async def test_failed_attempt_uses_up_the_nonce(api: Api) -> None:
    n = await nonce(api)
    bad = {"nonce": n, "username": "alice", "password": PASSWORD, "admin": False, "mac": "00"}
    await api.request("POST", PATH, bad, expect=403)
    good = {**bad, "mac": mac_for(n, "alice", PASSWORD, False)}
    _, err = await api.request("POST", PATH, good, expect=400)
    assert err["errcode"] == "M_UNKNOWN"


async def test_unknown_nonce(api: Api) -> None:
    body = {"nonce": "made-up", "username": "alice", "password": PASSWORD, "admin": False,
            "mac": mac_for("made-up", "alice", PASSWORD, False)}
    _, err = await api.request("POST", PATH, body, expect=400)
    assert err["errcode"] == "M_UNKNOWN"


async def test_nonce_expires(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    n = await nonce(api)
    clock.advance(60_001)
    body = {"nonce": n, "username": "alice", "password": PASSWORD, "admin": False,
            "mac": mac_for(n, "alice", PASSWORD, False)}
    _, err = await api.request("POST", PATH, body, expect=400)
    assert err["errcode"] == "M_UNKNOWN"


async def test_not_configured(make_api) -> None:
    api = await make_api(registration={"shared_secret": None})
    _, err = await api.request("GET", PATH, expect=400)
    assert err["errcode"] == "M_UNKNOWN"
    body = {"nonce": "x", "username": "alice", "password": PASSWORD, "admin": False,
            "mac": mac_for("x", "alice", PASSWORD, False)}
    _, err = await api.request("POST", PATH, body, expect=400)
    assert err["errcode"] == "M_UNKNOWN"


async def test_works_when_public_registration_is_closed(make_api) -> None:
    api = await make_api(registration={"policy": "closed"})
    body = await register(api, "root", admin=True)
    assert body["user_id"] == "@root:test.local"


async def test_username_taken(api: Api) -> None:
    await api.register("alice")
    err = await register(api, "alice", expect=400)
    assert err["errcode"] == "M_USER_IN_USE"


async def test_invalid_username(api: Api) -> None:
    for username in ("bad name", "al:ice", "", "123", "root\n"):
        err = await register(api, username, expect=400)
        assert err["errcode"] == "M_INVALID_USERNAME", username


async def test_weak_password(api: Api) -> None:
    err = await register(api, "alice", password="short", expect=400)
    assert err["errcode"] == "M_WEAK_PASSWORD"


async def test_bad_field_types(api: Api) -> None:
    for change in ({"admin": "yes"}, {"mac": None}, {"username": 5}, {"password": None},
                   {"user_type": 5}, {"displayname": 5}):
        n = await nonce(api)
        body = {"nonce": n, "username": "alice", "password": PASSWORD, "admin": False,
                "mac": mac_for(n, "alice", PASSWORD, False)}
        body.update(change)
        _, err = await api.request("POST", PATH, body, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", change
    assert await api.hs.users.get_user("@alice:test.local") is None


async def test_invalid_json(api: Api) -> None:
    _, err = await api.request("POST", PATH, data=b"nope", expect=400)
    assert err["errcode"] == "M_NOT_JSON"
