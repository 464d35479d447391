"""GET /_matrix/client/v3/admin/whois/{userId}: for the user themself and server
admins only, with each device's IP address, user agent and time as recorded at login."""

from __future__ import annotations

from tests.conftest import Api
from tests.homeserver.api.admin.helpers import make_admin
from tests.homeserver.api.reading_helpers import uid, user


async def test_whois_self_and_admin(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    admin = await make_admin(api)
    await api.post("login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                                     "password": "correct horse battery", "device_id": "PHONE"},
                           headers={"User-Agent": "Phone/1.0"})
    mine = await api.get(f"admin/whois/{uid('alice')}", token=alice)
    assert mine["user_id"] == uid("alice")
    assert "PHONE" in mine["devices"] and len(mine["devices"]) == 2
    (session,) = mine["devices"]["PHONE"]["sessions"]
    (conn,) = session["connections"]
    assert conn["ip"] == "127.0.0.1" and conn["user_agent"] == "Phone/1.0" and isinstance(conn["last_seen"], int)
    # An admin sees the same; the r0 prefix is served too.
    assert await api.get(f"/_matrix/client/r0/admin/whois/{uid('alice')}", token=admin) == mine
    # Anyone else is refused before any lookup: the same 403 for real and unknown users.
    for target in (uid("alice"), uid("ghost"), "@x:elsewhere.example", "not-a-user"):
        _, err = await api.request("GET", f"admin/whois/{target}", token=bob, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("GET", f"admin/whois/{uid('alice')}", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    # Admins: unknown local users are 404, remote and malformed IDs 400.
    _, err = await api.request("GET", f"admin/whois/{uid('ghost')}", token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    await api.request("GET", "admin/whois/@x:elsewhere.example", token=admin, expect=400)
    _, err = await api.request("GET", "admin/whois/not-a-user", token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
