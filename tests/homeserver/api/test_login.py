"""GET/POST /login, /logout, /logout/all and refresh tokens (/refresh, expiry, rotation)."""

from __future__ import annotations

from typing import Any

from tests.conftest import PASSWORD, Api, FakeClock


def password_login(user: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        **extra,
    }


async def whoami_status(api: Api, token: str) -> tuple[int, Any]:
    return await api.request("GET", "account/whoami", token=token, expect=None)


async def assert_token_dead(api: Api, token: str, soft_logout: bool = False) -> None:
    status, body = await whoami_status(api, token)
    assert status == 401, body
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    assert body["soft_logout"] is soft_logout


# --- GET /login -------------------------------------------------------------------------


async def test_login_flows(api: Api) -> None:
    assert await api.get("login") == {
        "flows": [{"type": "m.login.password"}, {"type": "m.login.token", "get_login_token": True}]
    }


async def test_login_token_signs_in_once(db_overrides, make_api, clock) -> None:
    """POST /v1/login/get_token (UIA with the password) then m.login.token at /login:
    a new device of the same account; the token works once and briefly (SQLite and
    PostgreSQL)."""
    api = await make_api(clock=clock, **db_overrides)
    alice = await api.register("alice")
    path = "/_matrix/client/v1/login/get_token"
    _, challenge = await api.request("POST", path, {}, token=alice["access_token"], expect=401)
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    auth = {"type": "m.login.password", "session": challenge["session"], "password": PASSWORD,
            "identifier": {"type": "m.id.user", "user": "alice"}}
    got = await api.post(path, {"auth": auth}, token=alice["access_token"])
    assert got["expires_in_ms"] > 0 and isinstance(got["login_token"], str)
    login = await api.post("login", {"type": "m.login.token", "token": got["login_token"]})
    assert login["user_id"] == alice["user_id"] and login["device_id"] != alice["device_id"]
    assert (await api.get("account/whoami", token=login["access_token"]))["user_id"] == alice["user_id"]
    # Once only.
    _, err = await api.request("POST", "login", {"type": "m.login.token", "token": got["login_token"]}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Briefly: an unused token expires.
    _, challenge = await api.request("POST", path, {}, token=alice["access_token"], expect=401)
    auth["session"] = challenge["session"]
    late = await api.post(path, {"auth": auth}, token=alice["access_token"])
    clock.advance(late["expires_in_ms"] + 1)
    _, err = await api.request("POST", "login", {"type": "m.login.token", "token": late["login_token"]}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Not without signing in, not for guests, and not with a bad body.
    await api.request("POST", path, {}, expect=401)
    _, err = await api.request("POST", "login", {"type": "m.login.token"}, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("POST", "login", {"type": "m.login.token", "token": 5}, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


# --- POST /login ------------------------------------------------------------------------


async def test_login_with_localpart(api: Api) -> None:
    await api.register("alice")
    login = await api.post("login", password_login("alice"))
    assert set(login) == {"user_id", "access_token", "device_id", "home_server"}
    assert login["user_id"] == "@alice:test.local"
    assert login["home_server"] == "test.local"
    who = await api.get("account/whoami", token=login["access_token"])
    assert who == {"user_id": "@alice:test.local", "device_id": login["device_id"], "is_guest": False}


async def test_login_with_full_user_id(api: Api) -> None:
    await api.register("alice")
    login = await api.post("login", password_login("@alice:test.local"))
    assert login["user_id"] == "@alice:test.local"


async def test_login_is_case_insensitive_on_the_localpart(api: Api) -> None:
    await api.register("alice")
    assert (await api.post("login", password_login("ALICE")))["user_id"] == "@alice:test.local"
    login = await api.post("login", password_login("@Alice:test.local"))
    assert login["user_id"] == "@alice:test.local"


async def test_login_with_legacy_user_field(api: Api) -> None:
    await api.register("alice")
    for user in ("alice", "@alice:test.local"):
        login = await api.post(
            "login", {"type": "m.login.password", "user": user, "password": PASSWORD}
        )
        assert login["user_id"] == "@alice:test.local"


async def test_each_login_is_a_new_device(api: Api) -> None:
    await api.register("alice")
    a = await api.post("login", password_login("alice"))
    b = await api.post("login", password_login("alice"))
    assert a["device_id"] != b["device_id"]
    assert a["access_token"] != b["access_token"]
    await api.get("account/whoami", token=a["access_token"])
    await api.get("account/whoami", token=b["access_token"])


async def test_wrong_password(api: Api) -> None:
    await api.register("alice")
    _, err = await api.request("POST", "login", password_login("alice", "wrong password"), expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_unknown_user(api: Api) -> None:
    for user in ("nobody", "@nobody:test.local", "@alice:other.example", "@bad id:test.local"):
        _, err = await api.request("POST", "login", password_login(user), expect=403)
        assert err["errcode"] == "M_FORBIDDEN", user


async def test_user_on_another_server_is_not_ours(api: Api) -> None:
    await api.register("alice")
    _, err = await api.request("POST", "login", password_login("@alice:other.example"), expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_unknown_login_type(api: Api) -> None:
    await api.register("alice")
    for body in (
        {**password_login("alice"), "type": "org.example.magic"},
        {"identifier": {"type": "m.id.user", "user": "alice"}, "password": PASSWORD},
    ):
        _, err = await api.request("POST", "login", body, expect=400)
        assert err["errcode"] == "M_UNKNOWN"


async def test_unsupported_identifier_type(api: Api) -> None:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@example.org"},
        "password": PASSWORD,
    }
    _, err = await api.request("POST", "login", body, expect=400)
    assert err["errcode"] == "M_UNKNOWN"


async def test_malformed_login_fields(api: Api) -> None:
    await api.register("alice")
    for body in (
        {"type": "m.login.password", "identifier": "alice", "password": PASSWORD},
        {"type": "m.login.password", "identifier": {"type": "m.id.user"}, "password": PASSWORD},
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": ""},
         "password": PASSWORD},
        {"type": "m.login.password", "password": PASSWORD},
        password_login("alice", password=None),  # type: ignore[arg-type]
        {**password_login("alice"), "password": 12345678},
        {**password_login("alice"), "device_id": 5},
        {**password_login("alice"), "device_id": ""},
        {**password_login("alice"), "initial_device_display_name": 5},
        {**password_login("alice"), "refresh_token": "yes"},
    ):
        _, err = await api.request("POST", "login", body, expect=400)
        assert err["errcode"] == "M_BAD_JSON", body


async def test_initial_device_display_name(api: Api) -> None:
    await api.register("alice")
    login = await api.post("login", password_login("alice", initial_device_display_name="Laptop"))
    device = await api.get(f"devices/{login['device_id']}", token=login["access_token"])
    assert device["display_name"] == "Laptop"


async def test_device_id_reuse(api: Api) -> None:
    await api.register("alice")
    first = await api.post(
        "login", password_login("alice", device_id="MYDEVICE", initial_device_display_name="Phone")
    )
    assert first["device_id"] == "MYDEVICE"
    second = await api.post(
        "login", password_login("alice", device_id="MYDEVICE", initial_device_display_name="Other")
    )
    assert second["device_id"] == "MYDEVICE"
    assert second["access_token"] != first["access_token"]
    # Same device, its name kept (the display name is only for new devices) ...
    devices = (await api.get("devices", token=second["access_token"]))["devices"]
    mine = [d for d in devices if d["device_id"] == "MYDEVICE"]
    assert len(mine) == 1 and mine[0]["display_name"] == "Phone"
    # ... and the tokens it had before are revoked.
    await assert_token_dead(api, first["access_token"])
    await api.get("account/whoami", token=second["access_token"])


async def test_device_id_reuse_revokes_a_cached_token(api: Api) -> None:
    await api.register("alice")
    first = await api.post("login", password_login("alice", device_id="DEV"))
    await api.get("account/whoami", token=first["access_token"])  # now cached
    await api.post("login", password_login("alice", device_id="DEV"))
    await assert_token_dead(api, first["access_token"])


async def test_device_ids_are_per_user(api: Api) -> None:
    await api.register("alice")
    await api.register("bob")
    a = await api.post("login", password_login("alice", device_id="SHARED"))
    b = await api.post("login", password_login("bob", device_id="SHARED"))
    assert (await api.get("account/whoami", token=a["access_token"]))["user_id"] == "@alice:test.local"
    assert (await api.get("account/whoami", token=b["access_token"]))["user_id"] == "@bob:test.local"


async def test_login_returns_well_known_when_configured(make_api) -> None:
    api = await make_api(well_known={"client_base_url": "https://matrix.example.org"})
    await api.register("alice")
    login = await api.post("login", password_login("alice"))
    assert login["well_known"] == {"m.homeserver": {"base_url": "https://matrix.example.org"}}


# --- logout -------------------------------------------------------------------------------


async def test_logout(api: Api) -> None:
    reg = await api.register("alice")
    other = await api.login("alice")
    assert await api.post("logout", token=other["access_token"]) == {}
    await assert_token_dead(api, other["access_token"])
    # The device went with the token; the other session is untouched.
    devices = (await api.get("devices", token=reg["access_token"]))["devices"]
    assert [d["device_id"] for d in devices] == [reg["device_id"]]
    _, err = await api.request("POST", "logout", token=other["access_token"], expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"


async def test_logout_without_body(api: Api) -> None:
    reg = await api.register("alice")
    status, body = await api.request("POST", "logout", token=reg["access_token"])
    assert (status, body) == (200, {})
    await assert_token_dead(api, reg["access_token"])


async def test_logout_requires_token(api: Api) -> None:
    _, err = await api.request("POST", "logout", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    _, err = await api.request("POST", "logout/all", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_logout_all(api: Api) -> None:
    reg = await api.register("alice")
    tokens = [reg["access_token"]] + [(await api.login("alice"))["access_token"] for _ in range(2)]
    bob = await api.register("bob")
    assert await api.post("logout/all", token=tokens[1]) == {}
    for token in tokens:
        await assert_token_dead(api, token)
    fresh = await api.login("alice")
    devices = (await api.get("devices", token=fresh["access_token"]))["devices"]
    assert [d["device_id"] for d in devices] == [fresh["device_id"]]
    await api.get("account/whoami", token=bob["access_token"])  # other users unaffected


async def test_guest_can_log_out(make_api) -> None:
    api = await make_api(registration={"allow_guests": True})
    guest = await api.post("register?kind=guest", {})
    assert await api.post("logout", token=guest["access_token"]) == {}
    await assert_token_dead(api, guest["access_token"])


# --- refresh tokens --------------------------------------------------------------------------


async def refreshable(api: Api) -> dict[str, Any]:
    await api.register("alice")
    return await api.post("login", password_login("alice", refresh_token=True))


async def test_login_with_refresh_token(api: Api) -> None:
    login = await refreshable(api)
    assert set(login) == {
        "user_id", "access_token", "device_id", "home_server", "refresh_token", "expires_in_ms"
    }
    assert login["expires_in_ms"] == 300_000
    assert login["refresh_token"] != login["access_token"]


async def test_access_token_lifetime_is_configurable(make_api) -> None:
    api = await make_api(auth={"access_token_lifetime_ms": 60_000})
    login = await refreshable(api)
    assert login["expires_in_ms"] == 60_000


async def test_refresh_rotates_tokens(api: Api) -> None:
    login = await refreshable(api)
    new = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    assert set(new) == {"access_token", "refresh_token", "expires_in_ms"}
    assert new["expires_in_ms"] == 300_000
    assert new["access_token"] != login["access_token"]
    assert new["refresh_token"] != login["refresh_token"]
    who = await api.get("account/whoami", token=new["access_token"])
    assert who == {"user_id": "@alice:test.local", "device_id": login["device_id"], "is_guest": False}


async def test_old_refresh_token_dies_once_new_access_token_is_used(api: Api) -> None:
    login = await refreshable(api)
    new = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    await api.get("account/whoami", token=new["access_token"])
    _, err = await api.request("POST", "refresh", {"refresh_token": login["refresh_token"]}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    assert err["soft_logout"] is False
    await assert_token_dead(api, login["access_token"])
    # The new pair keeps working.
    newer = await api.post("refresh", {"refresh_token": new["refresh_token"]})
    await api.get("account/whoami", token=newer["access_token"])


async def test_old_access_token_dies_even_when_cached(api: Api) -> None:
    login = await refreshable(api)
    await api.get("account/whoami", token=login["access_token"])
    new = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    # Until the new token is used the old one may still be used (and cached again).
    await api.get("account/whoami", token=login["access_token"])
    await api.get("account/whoami", token=new["access_token"])
    await assert_token_dead(api, login["access_token"])


async def test_old_refresh_token_dies_once_new_refresh_token_is_used(api: Api) -> None:
    login = await refreshable(api)
    new = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    await api.post("refresh", {"refresh_token": new["refresh_token"]})
    _, err = await api.request("POST", "refresh", {"refresh_token": login["refresh_token"]}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"


async def test_refresh_can_be_retried_until_the_result_is_used(api: Api) -> None:
    """A client that lost the answer to /refresh repeats it with the same refresh token."""
    login = await refreshable(api)
    lost = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    retried = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    assert retried["access_token"] != lost["access_token"]
    await api.get("account/whoami", token=retried["access_token"])
    await assert_token_dead(api, lost["access_token"])
    _, err = await api.request("POST", "refresh", {"refresh_token": lost["refresh_token"]}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"


async def test_expired_access_token_is_a_soft_logout(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    login = await refreshable(api)
    await api.get("account/whoami", token=login["access_token"])
    clock.advance(300_000 - 1)
    await api.get("account/whoami", token=login["access_token"])
    clock.advance(1)
    await assert_token_dead(api, login["access_token"], soft_logout=True)
    new = await api.post("refresh", {"refresh_token": login["refresh_token"]})
    who = await api.get("account/whoami", token=new["access_token"])
    assert who["device_id"] == login["device_id"]


async def test_tokens_without_refresh_never_expire(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    reg = await api.register("alice")
    clock.advance(365 * 24 * 3600 * 1000)
    await api.get("account/whoami", token=reg["access_token"])


async def test_refresh_token_lifetime(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, auth={"refresh_token_lifetime_ms": 600_000})
    login = await refreshable(api)
    clock.advance(600_001)
    _, err = await api.request("POST", "refresh", {"refresh_token": login["refresh_token"]}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    assert err["soft_logout"] is False


async def test_refresh_errors(api: Api) -> None:
    _, err = await api.request("POST", "refresh", {"refresh_token": "ref_unknown"}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    assert err["soft_logout"] is False
    _, err = await api.request("POST", "refresh", {}, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("POST", "refresh", {"refresh_token": 5}, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


async def test_access_token_is_not_a_refresh_token(api: Api) -> None:
    login = await refreshable(api)
    _, err = await api.request("POST", "refresh", {"refresh_token": login["access_token"]}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"


async def test_logout_kills_the_refresh_token(api: Api) -> None:
    login = await refreshable(api)
    await api.post("logout", token=login["access_token"])
    _, err = await api.request("POST", "refresh", {"refresh_token": login["refresh_token"]}, expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
