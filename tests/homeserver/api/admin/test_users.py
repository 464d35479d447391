"""The user admin API: list, query, create/modify (bots included), deactivate, reset
password, whois, login-as, and refusal of everything to non-admins."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, Api, FakeClock
from tests.homeserver.api.admin.helpers import (
    V1,
    V2,
    assert_refused_to_non_admins,
    make_admin,
    make_user,
)

ALICE = "@alice:test.local"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", V2 + "/users"),
        ("GET", V2 + "/users/@alice:test.local"),
        ("PUT", V2 + "/users/@alice:test.local"),
        ("POST", V1 + "/deactivate/@alice:test.local"),
        ("POST", V1 + "/reset_password/@alice:test.local"),
        ("GET", V1 + "/whois/@alice:test.local"),
        ("POST", V1 + "/users/@alice:test.local/login"),
        ("GET", V1 + "/users/@alice:test.local/admin"),
    ],
)
async def test_non_admins_are_refused(api: Api, method: str, path: str) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, method, path, alice, {} if method != "GET" else None)


async def test_guest_is_refused_as_a_non_admin(make_api) -> None:  # noqa: ANN001
    api = await make_api(registration={"allow_guests": True})
    guest = await api.post("register?kind=guest", {})
    _, err = await api.request("GET", V2 + "/users", token=guest["access_token"], expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_query_user(api: Api) -> None:
    admin = await make_admin(api)
    await make_user(api, "alice")
    body = await api.get(V2 + "/users/" + ALICE, token=admin)
    assert body["name"] == ALICE
    assert body["displayname"] == "alice"
    assert body["admin"] is False and body["deactivated"] is False and body["is_guest"] is False
    assert body["user_type"] is None and body["locked"] is False and body["erased"] is False
    assert body["threepids"] == [] and body["external_ids"] == []
    assert body["creation_ts"] == api.hs.clock.time_ms() or body["creation_ts"] > 1_600_000_000_000
    assert isinstance(body["last_seen_ts"], int)


async def test_query_user_errors(api: Api) -> None:
    admin = await make_admin(api)
    _, err = await api.request("GET", V2 + "/users/@nobody:test.local", token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", V2 + "/users/@someone:elsewhere.example", token=admin, expect=400)
    assert err["error"] == "Can only look up local users"
    _, err = await api.request("GET", V2 + "/users/not-a-user-id", token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_list_users_pagination_and_filters(api: Api) -> None:
    admin = await make_admin(api)
    for name in ("alice", "bob", "carol", "dave"):
        await make_user(api, name)
    await api.put(V2 + "/users/@bob:test.local", {"displayname": "Robert"}, token=admin)
    page = await api.get(V2 + "/users?limit=2", token=admin)
    assert [u["name"] for u in page["users"]] == ["@alice:test.local", "@bob:test.local"]
    assert page["total"] == 5 and page["next_token"] == "2"
    page2 = await api.get(V2 + f"/users?limit=2&from={page['next_token']}", token=admin)
    assert [u["name"] for u in page2["users"]] == ["@carol:test.local", "@dave:test.local"]
    last = await api.get(V2 + "/users?limit=2&from=4", token=admin)
    assert [u["name"] for u in last["users"]] == ["@root:test.local"] and "next_token" not in last
    # name matches the localpart or the display name, case-insensitively
    found = await api.get(V2 + "/users?name=ROBERT", token=admin)
    assert [u["name"] for u in found["users"]] == ["@bob:test.local"]
    found = await api.get(V2 + "/users?user_id=car", token=admin)
    assert [u["name"] for u in found["users"]] == ["@carol:test.local"]
    # LIKE wildcards in a filter are taken literally
    assert (await api.get(V2 + "/users?name=%25", token=admin))["total"] == 0
    backwards = await api.get(V2 + "/users?dir=b&limit=1", token=admin)
    assert backwards["users"][0]["name"] == "@root:test.local"
    admins = await api.get(V2 + "/users?admins=true", token=admin)
    assert [u["name"] for u in admins["users"]] == ["@root:test.local"]
    entry = page["users"][0]
    assert set(entry) >= {
        "name", "is_guest", "admin", "user_type", "deactivated", "erased", "shadow_banned",
        "displayname", "avatar_url", "creation_ts", "last_seen_ts", "locked",
    }


async def test_list_users_deactivated_and_guests(make_api) -> None:  # noqa: ANN001
    api = await make_api(registration={"allow_guests": True})
    admin = await make_admin(api)
    await make_user(api, "alice")
    guest = await api.post("register?kind=guest", {})
    await api.post(V1 + "/deactivate/" + ALICE, {}, token=admin)
    names = [u["name"] for u in (await api.get(V2 + "/users", token=admin))["users"]]
    assert ALICE not in names and guest["user_id"] in names
    names = [u["name"] for u in (await api.get(V2 + "/users?deactivated=true", token=admin))["users"]]
    assert ALICE in names
    names = [u["name"] for u in (await api.get(V2 + "/users?guests=false", token=admin))["users"]]
    assert guest["user_id"] not in names


@pytest.mark.parametrize(
    "query",
    ["limit=-1", "from=abc", "order_by=password_hash", "dir=x", "guests=maybe", "admins=1"],
)
async def test_list_users_bad_query(api: Api, query: str) -> None:
    admin = await make_admin(api)
    _, err = await api.request("GET", V2 + "/users?" + query, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_create_user_and_modify(api: Api) -> None:
    admin = await make_admin(api)
    status, body = await api.request(
        "PUT", V2 + "/users/@carol:test.local",
        {"password": PASSWORD, "displayname": "Carol", "admin": False}, token=admin, expect=201,
    )
    assert body["name"] == "@carol:test.local" and body["displayname"] == "Carol"
    login = await api.login("carol")
    # Modifying: 200, and a new password logs every device out unless told otherwise
    status, body = await api.request(
        "PUT", V2 + "/users/@carol:test.local",
        {"password": "another long password", "displayname": "", "admin": True}, token=admin,
    )
    assert status == 200 and body["admin"] is True and body["displayname"] is None
    await api.request("GET", "account/whoami", token=login["access_token"], expect=401)
    await api.login("carol", "another long password")
    # No devices are logged out with logout_devices: false
    session = await api.login("carol", "another long password")
    await api.put(
        V2 + "/users/@carol:test.local",
        {"password": "a third long password", "logout_devices": False}, token=admin,
    )
    await api.get("account/whoami", token=session["access_token"])


async def test_put_user_hostile_input(api: Api) -> None:
    admin = await make_admin(api)
    path = V2 + "/users/@carol:test.local"
    cases = [
        ({"user_type": "superuser"}, "M_UNKNOWN"),
        ({"admin": "yes"}, "M_BAD_JSON"),
        ({"password": 12345}, "M_UNKNOWN"),
        ({"password": "x" * 600}, "M_UNKNOWN"),
        ({"deactivated": "true"}, "M_UNKNOWN"),
        ({"deactivated": True, "locked": True}, "M_UNKNOWN"),
        ({"displayname": 5}, "M_BAD_JSON"),
        ({"avatar_url": "https://example.com/a.png"}, "M_INVALID_PARAM"),
        ({"threepids": [{"medium": "email", "address": "c@example.com"}]}, "M_UNRECOGNIZED"),
        ({"password": "short"}, "M_WEAK_PASSWORD"),
    ]
    for body, errcode in cases:
        _, err = await api.request("PUT", path, body, token=admin, expect=400)
        assert err["errcode"] == errcode, (body, err)
    assert await api.hs.users.get_user("@carol:test.local") is None  # nothing half-made
    _, err = await api.request("PUT", path, data=b"{not json", token=admin, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    _, err = await api.request("PUT", path, data=b"[1]", token=admin, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("PUT", V2 + "/users/@Carol:test.local", {}, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_USERNAME"
    _, err = await api.request("PUT", V2 + "/users/@carol:elsewhere.example", {}, token=admin, expect=400)
    assert err["error"] == "This endpoint can only be used with local users"


async def test_admin_cannot_demote_self(api: Api) -> None:
    admin = await make_admin(api)
    _, err = await api.request("PUT", V2 + "/users/@root:test.local", {"admin": False}, token=admin, expect=400)
    assert err["error"] == "You may not demote yourself."
    _, err = await api.request("PUT", V1 + "/users/@root:test.local/admin", {"admin": False}, token=admin, expect=400)
    assert (await api.get(V1 + "/users/@root:test.local/admin", token=admin)) == {"admin": True}


async def test_deactivate_and_reactivate(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    body = await api.post(V1 + "/deactivate/" + ALICE, {"erase": True}, token=admin)
    assert body == {"id_server_unbind_result": "success"}
    await api.request("GET", "account/whoami", token=alice, expect=401)
    details = await api.get(V2 + "/users/" + ALICE, token=admin)
    assert details["deactivated"] is True and details["erased"] is True
    _, err = await api.request("PUT", V2 + "/users/" + ALICE, {"deactivated": False}, token=admin, expect=400)
    assert err["error"] == "Must provide a password to re-activate an account."
    details = await api.put(V2 + "/users/" + ALICE, {"deactivated": False, "password": PASSWORD}, token=admin)
    assert details["deactivated"] is False and details["erased"] is False
    await api.login("alice")


async def test_deactivate_errors(api: Api) -> None:
    admin = await make_admin(api)
    await make_user(api, "alice")
    _, err = await api.request("POST", V1 + "/deactivate/" + ALICE, {"erase": "yes"}, token=admin, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    await api.request("POST", V1 + "/deactivate/@ghost:test.local", {}, token=admin, expect=404)
    _, err = await api.request("POST", V1 + "/deactivate/@x:elsewhere.example", {}, token=admin, expect=400)
    assert err["error"] == "Can only deactivate local users"
    # An empty body is accepted, for backwards compatibility
    status, _ = await api.request("POST", V1 + "/deactivate/" + ALICE, data=b"", token=admin)
    assert status == 200


async def test_reset_password(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    await api.post(V1 + "/reset_password/" + ALICE, {"new_password": "brand new password"}, token=admin)
    await api.request("GET", "account/whoami", token=alice, expect=401)
    await api.login("alice", "brand new password")
    session = await api.login("alice", "brand new password")
    await api.post(
        V1 + "/reset_password/" + ALICE, {"new_password": "another new password", "logout_devices": False},
        token=admin,
    )
    await api.get("account/whoami", token=session["access_token"])
    for body, errcode in (
        ({}, "M_MISSING_PARAM"),
        ({"new_password": 5}, "M_INVALID_PARAM"),
        ({"new_password": "short"}, "M_WEAK_PASSWORD"),
        ({"new_password": "long enough pass", "logout_devices": "no"}, "M_BAD_JSON"),
    ):
        _, err = await api.request("POST", V1 + "/reset_password/" + ALICE, body, token=admin, expect=400)
        assert err["errcode"] == errcode
    await api.request("POST", V1 + "/reset_password/@ghost:test.local", {"new_password": "long enough pass"},
                      token=admin, expect=404)


async def test_whois(api: Api) -> None:
    admin = await make_admin(api)
    session = await api.login("root")
    body = await api.get(V1 + "/whois/@root:test.local", token=admin)
    assert body["user_id"] == "@root:test.local"
    connections = body["devices"][session["device_id"]]["sessions"][0]["connections"]
    assert connections[0]["ip"] == "127.0.0.1" and isinstance(connections[0]["last_seen"], int)
    await api.request("GET", V1 + "/whois/@ghost:test.local", token=admin, expect=404)


async def test_bot_account_and_login_as(make_api) -> None:  # noqa: ANN001
    """A bot: created by an admin, shown as one, exempt from rate limits, and given a token
    that never expires even when the server hands out short-lived refreshable tokens."""
    clock = FakeClock()
    api = await make_api(
        clock=clock,
        rate_limits={"enabled": True, "actions": {"message": {"per_second": 0.1, "burst": 2}}},
        auth={"access_token_lifetime_ms": 60_000},
    )
    admin = await make_admin(api)
    status, body = await api.request(
        "PUT", V2 + "/users/@helper:test.local", {"user_type": "bot", "displayname": "Helper"},
        token=admin, expect=201,
    )
    assert body["user_type"] == "bot"
    listed = await api.get(V2 + "/users?name=helper", token=admin)
    assert listed["users"][0]["user_type"] == "bot"
    assert api.hs.is_ratelimit_exempt("@helper:test.local")
    assert await api.get(V1 + "/users/@helper:test.local/override_ratelimit", token=admin) == {
        "messages_per_second": 0, "burst_count": 0,
    }
    token = (await api.post(V1 + "/users/@helper:test.local/login", {}, token=admin))["access_token"]
    assert (await api.get("account/whoami", token=token))["user_id"] == "@helper:test.local"
    room = (await api.post("createRoom", {}, token=token))["room_id"]
    for i in range(10):  # far past the burst of 2
        await api.put(f"rooms/{room}/send/m.room.message/t{i}", {"msgtype": "m.text", "body": "hi"}, token=token)
    clock.advance(365 * 24 * 3600 * 1000)
    await api.get("account/whoami", token=token)  # still valid a year later
    # The token does not show up as a device of the bot
    assert (await api.get("devices", token=token))["devices"] == []
    # Ceasing to be a bot ends the exemption
    await api.put(V2 + "/users/@helper:test.local", {"user_type": None}, token=admin)
    assert not api.hs.is_ratelimit_exempt("@helper:test.local")


async def test_login_as_with_expiry_and_errors(make_api) -> None:  # noqa: ANN001
    clock = FakeClock()
    api = await make_api(clock=clock)
    admin = await make_admin(api)
    await make_user(api, "alice")
    until = clock.time_ms() + 10_000
    token = (await api.post(V1 + f"/users/{ALICE}/login", {"valid_until_ms": until}, token=admin))["access_token"]
    await api.get("account/whoami", token=token)
    clock.advance(10_001)
    await api.request("GET", "account/whoami", token=token, expect=401)
    _, err = await api.request("POST", V1 + f"/users/{ALICE}/login", {"valid_until_ms": "soon"}, token=admin, expect=400)
    assert err["error"] == "'valid_until_ms' parameter must be an int"
    _, err = await api.request("POST", V1 + "/users/@root:test.local/login", {}, token=admin, expect=400)
    assert err["error"] == "Cannot use admin API to login as self"
    await api.request("POST", V1 + "/users/@ghost:test.local/login", {}, token=admin, expect=404)
    _, err = await api.request("POST", V1 + "/users/@x:elsewhere.example/login", {}, token=admin, expect=400)
    assert err["error"] == "Only local users can be logged in as"
