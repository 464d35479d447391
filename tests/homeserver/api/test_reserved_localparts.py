"""The server's own accounts (the server notices sender, ``@server:<name>``) are
reserved: no way of registering refuses to hand their IDs out, before or after the
server has created them, and server notices keep working."""

from __future__ import annotations

from tests.conftest import PASSWORD, Api
from tests.homeserver.api.admin.helpers import V2, make_admin
from tests.homeserver.api.test_admin_register import register as shared_secret_register

SYSTEM_USER = "@server:test.local"


async def _refused_everywhere(api: Api, admin: str) -> None:
    for username in ("server", "Server"):
        _, err = await api.request("POST", "register", {"username": username, "password": PASSWORD}, expect=400)
        assert err["errcode"] == "M_USER_IN_USE", username
        body = {"username": username, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        _, err = await api.request("POST", "register", body, expect=400)
        assert err["errcode"] == "M_USER_IN_USE", username
        _, err = await api.request("GET", f"register/available?username={username}", expect=400)
        assert err["errcode"] == "M_USER_IN_USE", username
        err = await shared_secret_register(api, username, expect=400)
        assert err["errcode"] == "M_USER_IN_USE", username


async def test_system_localpart_cannot_be_registered(api: Api) -> None:
    admin = await make_admin(api)
    await _refused_everywhere(api, admin)
    _, err = await api.request("PUT", f"{V2}/users/{SYSTEM_USER}", {"password": PASSWORD}, token=admin,
                               expect=400)
    assert err["errcode"] == "M_USER_IN_USE"
    assert await api.hs.users.get_user(SYSTEM_USER) is None
    # Similar names are ordinary usernames.
    assert await api.get("register/available?username=servers") == {"available": True}
    for name in ("server2", "the-server"):
        assert (await api.register(name))["user_id"] == f"@{name}:test.local"


async def test_server_notices_still_create_the_system_user(api: Api) -> None:
    admin = await make_admin(api)
    assert await api.hs.partners.notices.notify_admins("hello admins")
    user = await api.hs.users.get_user(SYSTEM_USER)
    assert user is not None and user.password_hash is None and user.user_type == "support"
    await _refused_everywhere(api, admin)
    # The admin API may still look at the existing account; it has no password to log in with.
    assert (await api.get(f"{V2}/users/{SYSTEM_USER}", token=admin))["name"] == SYSTEM_USER
    _, err = await api.request("POST", "login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "server"}, "password": PASSWORD,
    }, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"

