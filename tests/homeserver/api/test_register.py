"""POST /register (user and guest), /register/available and registration tokens."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import PASSWORD, Api, FakeClock

DUMMY_FLOWS = [{"stages": ["m.login.dummy"]}]
TOKEN_FLOWS = [{"stages": ["m.login.registration_token"]}]
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


async def start(api: Api, body: dict[str, Any], flows: list[Any] = DUMMY_FLOWS) -> str:
    """The first, unauthenticated request: must be a 401 challenge; returns its session."""
    _, challenge = await api.request("POST", "register", body, expect=401)
    assert challenge["flows"] == flows
    assert challenge["params"] == {}
    assert challenge["completed"] == []
    assert "errcode" not in challenge
    assert isinstance(challenge["session"], str) and challenge["session"]
    return challenge["session"]


# --- the UIA dance with m.login.dummy --------------------------------------------------


async def test_register_with_dummy_auth(api: Api) -> None:
    body = {"username": "alice", "password": PASSWORD, "device_id": "PHONE",
            "initial_device_display_name": "Alice's phone"}
    session = await start(api, body)
    reg = await api.post("register", {**body, "auth": {"type": "m.login.dummy", "session": session}})
    assert set(reg) == {"user_id", "access_token", "device_id", "home_server"}
    assert reg["user_id"] == "@alice:test.local"
    assert reg["device_id"] == "PHONE"
    assert reg["home_server"] == "test.local"
    who = await api.get("account/whoami", token=reg["access_token"])
    assert who == {"user_id": "@alice:test.local", "device_id": "PHONE", "is_guest": False}
    device = await api.get("devices/PHONE", token=reg["access_token"])
    assert device["display_name"] == "Alice's phone"
    # The account works with its password.
    login = await api.login("alice")
    assert login["user_id"] == "@alice:test.local"


async def test_dummy_auth_without_session_still_needs_a_401_first(api: Api) -> None:
    """A dummy stage sent straight away starts a session and completes in one go."""
    reg = await api.post(
        "register", {"username": "alice", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
    )
    assert reg["user_id"] == "@alice:test.local"


async def test_request_without_auth_never_succeeds(api: Api) -> None:
    body = {"username": "alice", "password": PASSWORD}
    await start(api, body)
    await start(api, body)
    assert await api.hs.users.get_user("@alice:test.local") is None


async def test_probe_with_empty_body(api: Api) -> None:
    await start(api, {})
    _, challenge = await api.request("POST", "register", data=b"", expect=401)
    assert challenge["flows"] == DUMMY_FLOWS


async def test_empty_device_id_means_none(api: Api) -> None:
    reg = await api.register("alice", device_id="")
    assert re.fullmatch(r"[A-Z]{10}", reg["device_id"]), reg["device_id"]


async def test_final_request_may_carry_only_auth_and_password(api: Api) -> None:
    """The session remembers the first request's username and device settings."""
    session = await start(api, {"username": "alice", "device_id": "DEV1", "inhibit_login": False})
    reg = await api.post(
        "register", {"password": PASSWORD, "auth": {"type": "m.login.dummy", "session": session}}
    )
    assert reg["user_id"] == "@alice:test.local"
    assert reg["device_id"] == "DEV1"


async def test_missing_password_after_auth_keeps_the_session(api: Api) -> None:
    session = await start(api, {"username": "alice"})
    auth = {"type": "m.login.dummy", "session": session}
    _, err = await api.request("POST", "register", {"username": "alice", "auth": auth}, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    # Authentication is done: a retry with the password completes without a new stage.
    reg = await api.post("register", {"password": PASSWORD, "auth": {"session": session}})
    assert reg["user_id"] == "@alice:test.local"


async def test_retried_finished_session_returns_the_same_account(db_overrides: dict[str, Any], make_api: Any) -> None:
    """A client whose answer was lost retries the completed session: it gets the
    account that session made, with a new login, never a second account (Synapse's
    behaviour, which clients rely on). SQLite and PostgreSQL."""
    api = await make_api(**db_overrides)
    session = await start(api, {"username": "alice", "password": PASSWORD})
    auth = {"type": "m.login.dummy", "session": session}
    first = await api.post("register", {"username": "alice", "password": PASSWORD, "auth": auth})
    again = await api.post("register", {"username": "bob", "password": PASSWORD, "auth": auth})
    assert again["user_id"] == first["user_id"] == "@alice:test.local"
    assert again["access_token"] != first["access_token"]
    assert (await api.get("account/whoami", token=again["access_token"]))["user_id"] == "@alice:test.local"
    assert await api.hs.users.get_user("@bob:test.local") is None
    quiet = await api.post("register", {"inhibit_login": True, "auth": auth})
    assert quiet == {"user_id": "@alice:test.local", "home_server": "test.local"}


LOGIN_OPTIONS = {"device_id": "LAPTOP", "initial_device_display_name": "Laptop", "refresh_token": True}


@pytest.mark.parametrize("path", ["new account", "retried session", "guest upgrade"])
async def test_login_options_on_every_registration_path(make_api: Any, path: str) -> None:
    """Each way POST /register answers (a new account, the account a retried session
    made, an upgraded guest) logs in as the request asks: the device ID and display
    name given, a refresh token when asked, nothing but the user ID when inhibited."""
    api = await make_api(registration={"allow_guests": True})

    async def register(localpart: str, **options: Any) -> tuple[str, dict[str, Any]]:
        if path == "new account":
            return f"@{localpart}:test.local", await api.register(localpart, **options)
        if path == "retried session":
            session = await start(api, {"username": localpart, "password": PASSWORD, "inhibit_login": True})
            auth = {"type": "m.login.dummy", "session": session}
            await api.post("register", {"auth": auth})  # the answer the client lost
            return f"@{localpart}:test.local", await api.post("register", {"auth": auth, **options})
        guest = await api.post("register?kind=guest", {})
        guest_localpart = guest["user_id"][1:].split(":", 1)[0]
        return guest["user_id"], await api.register(guest_localpart, guest_access_token=guest["access_token"], **options)

    user_id, reg = await register("alice", inhibit_login=False, **LOGIN_OPTIONS)
    assert set(reg) == {"user_id", "access_token", "device_id", "home_server", "refresh_token", "expires_in_ms"}
    assert reg["user_id"] == user_id and reg["device_id"] == "LAPTOP" and reg["home_server"] == "test.local"
    device = await api.hs.devices.get_device(user_id, "LAPTOP")
    assert device is not None and device.display_name == "Laptop"
    assert await api.get("account/whoami", token=reg["access_token"]) == {
        "user_id": user_id, "device_id": "LAPTOP", "is_guest": False}

    user_id, quiet = await register("bob", inhibit_login=True, **LOGIN_OPTIONS)
    assert quiet == {"user_id": user_id, "home_server": "test.local"}
    assert await api.hs.devices.get_device(user_id, "LAPTOP") is None


async def test_password_of_the_first_request_is_remembered_as_a_hash(api: Api) -> None:
    """The first request's username and password; the last carries only `auth`.
    The session keeps the password's hash, never the password."""
    session = await start(api, {"username": "carol", "password": PASSWORD, "password_hash": "forged"})
    stored = await api.hs.uia.store.get(session)
    assert stored is not None
    assert PASSWORD not in str(stored) and stored[4]["password_hash"] != "forged"
    reg = await api.post("register", {"auth": {"type": "m.login.dummy", "session": session}})
    assert reg["user_id"] == "@carol:test.local"
    assert (await api.login("carol", PASSWORD))["user_id"] == "@carol:test.local"


async def test_unknown_session(api: Api) -> None:
    _, err = await api.request(
        "POST", "register",
        {"username": "alice", "password": PASSWORD,
         "auth": {"type": "m.login.dummy", "session": "no-such-session"}},
        expect=400,
    )
    assert err["errcode"] == "M_UNKNOWN"


async def test_expired_session(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    session = await start(api, {"username": "alice", "password": PASSWORD})
    clock.advance(31 * 60 * 1000)
    _, err = await api.request(
        "POST", "register",
        {"username": "alice", "password": PASSWORD,
         "auth": {"type": "m.login.dummy", "session": session}},
        expect=400,
    )
    assert err["errcode"] == "M_UNKNOWN"


async def test_disallowed_stage(api: Api) -> None:
    session = await start(api, {"username": "alice", "password": PASSWORD})
    for stage in ("m.login.password", "m.login.registration_token", "org.example.custom", 5):
        _, err = await api.request(
            "POST", "register",
            {"username": "alice", "password": PASSWORD, "auth": {"type": stage, "session": session}},
            expect=401,
        )
        assert err["errcode"] == "M_UNRECOGNIZED"
        assert err["flows"] == DUMMY_FLOWS
        assert err["session"] == session
        assert err["completed"] == []


async def test_session_cannot_switch_endpoint(api: Api) -> None:
    session = await start(api, {"username": "alice", "password": PASSWORD})
    owner = await api.register("bob")
    _, err = await api.request(
        "POST", "delete_devices",
        {"devices": [owner["device_id"]], "auth": {"type": "m.login.password", "session": session,
                                                   "identifier": {"type": "m.id.user", "user": "bob"},
                                                   "password": PASSWORD}},
        token=owner["access_token"], expect=403,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    await api.get("account/whoami", token=owner["access_token"])


# --- usernames ------------------------------------------------------------------------


async def test_invalid_usernames_are_refused_before_auth(api: Api) -> None:
    for username in ("", "alice bob", "al!ce", "alice:test", "@alice", "élise", "a#b",
                     "12345", "x" * 250, "alice\n", "ali\nce", "\t"):
        _, err = await api.request(
            "POST", "register", {"username": username, "password": PASSWORD}, expect=400
        )
        assert err["errcode"] == "M_INVALID_USERNAME", username
        assert "session" not in err


async def test_grammar_allows_all_localpart_characters(api: Api) -> None:
    reg = await api.register("a.b_c=d-e/f+g9")
    assert reg["user_id"] == "@a.b_c=d-e/f+g9:test.local"


async def test_username_is_mapped_to_lower_case(api: Api) -> None:
    reg = await api.register("Alice")
    assert reg["user_id"] == "@alice:test.local"


async def test_user_in_use_before_auth(api: Api) -> None:
    await api.register("alice")
    for username in ("alice", "ALICE", "aLiCe"):
        _, err = await api.request(
            "POST", "register", {"username": username, "password": PASSWORD}, expect=400
        )
        assert err["errcode"] == "M_USER_IN_USE", username


async def test_user_in_use_after_auth_keeps_the_session(api: Api) -> None:
    """The username checked before auth can be taken by the time auth completes."""
    session = await start(api, {"username": "carol", "password": PASSWORD})
    await api.register("carol")  # someone else takes it meanwhile
    auth = {"type": "m.login.dummy", "session": session}
    # The final request names no username: the session's "carol" is used, and refused.
    _, err = await api.request("POST", "register", {"password": PASSWORD, "auth": auth}, expect=400)
    assert err["errcode"] == "M_USER_IN_USE"
    # Authentication is kept: the client picks another name without authenticating again.
    reg = await api.post(
        "register", {"username": "carol2", "password": PASSWORD, "auth": {"session": session}}
    )
    assert reg["user_id"] == "@carol2:test.local"


async def test_auth_with_only_the_session_reports_progress(api: Api) -> None:
    session = await start(api, {"username": "alice", "password": PASSWORD})
    _, resp = await api.request(
        "POST", "register",
        {"username": "alice", "password": PASSWORD, "auth": {"session": session}}, expect=401,
    )
    assert resp == {"flows": DUMMY_FLOWS, "params": {}, "session": session, "completed": []}


async def test_generated_username(api: Api) -> None:
    session = await start(api, {"password": PASSWORD})
    reg = await api.post(
        "register", {"password": PASSWORD, "auth": {"type": "m.login.dummy", "session": session}}
    )
    assert re.fullmatch(r"@user[0-9a-f]{10}:test\.local", reg["user_id"]), reg["user_id"]
    localpart = reg["user_id"][1:].split(":")[0]
    assert (await api.login(localpart))["user_id"] == reg["user_id"]


async def test_weak_password(api: Api) -> None:
    _, err = await api.request(
        "POST", "register", {"username": "alice", "password": "short"}, expect=400
    )
    assert err["errcode"] == "M_WEAK_PASSWORD"


async def test_password_min_length_is_configurable(make_api) -> None:
    api = await make_api(registration={"password_min_length": 20})
    _, err = await api.request(
        "POST", "register", {"username": "alice", "password": "nineteen-characters"}, expect=400
    )
    assert err["errcode"] == "M_WEAK_PASSWORD"
    await api.register("alice", "twenty-characters!!!")


async def test_wrongly_typed_fields(api: Api) -> None:
    for extra in (
        {"username": 5},
        {"password": 12345678},
        {"device_id": 7},
        {"initial_device_display_name": ["x"]},
        {"inhibit_login": "yes"},
        {"refresh_token": 1},
        {"auth": "dummy"},
        {"auth": {"type": "m.login.dummy", "session": 5}},
    ):
        body = {"username": "alice", "password": PASSWORD, **extra}
        _, err = await api.request("POST", "register", body, expect=400)
        assert err["errcode"] == "M_BAD_JSON", extra


async def test_non_object_body(api: Api) -> None:
    _, err = await api.request("POST", "register", data=b"[1]", expect=400)
    assert err["errcode"] == "M_BAD_JSON"


# --- login options --------------------------------------------------------------------


async def test_inhibit_login(api: Api) -> None:
    reg = await api.register("alice", inhibit_login=True)
    assert reg == {"user_id": "@alice:test.local", "home_server": "test.local"}
    count = await api.hs.db.fetchone("SELECT count(*) FROM devices")
    assert count == (0,)
    login = await api.login("alice")
    devices = await api.get("devices", token=login["access_token"])
    assert [d["device_id"] for d in devices["devices"]] == [login["device_id"]]


async def test_inhibit_login_with_refresh_token(api: Api) -> None:
    reg = await api.register("alice", inhibit_login=True, refresh_token=True)
    assert reg == {"user_id": "@alice:test.local", "home_server": "test.local"}


async def test_register_with_refresh_token(api: Api) -> None:
    reg = await api.register("alice", refresh_token=True)
    assert set(reg) == {
        "user_id", "access_token", "device_id", "home_server", "refresh_token", "expires_in_ms"
    }
    assert reg["expires_in_ms"] == 5 * 60 * 1000
    new = await api.post("refresh", {"refresh_token": reg["refresh_token"]})
    who = await api.get("account/whoami", token=new["access_token"])
    assert who["device_id"] == reg["device_id"]


# --- policies and kinds ---------------------------------------------------------------


async def test_closed_registration(make_api) -> None:
    api = await make_api(registration={"policy": "closed"})
    for body in ({}, {"username": "alice", "password": PASSWORD},
                 {"username": "alice", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}):
        _, err = await api.request("POST", "register", body, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    assert await api.hs.users.get_user("@alice:test.local") is None


async def test_unknown_kind(api: Api) -> None:
    _, err = await api.request(
        "POST", "register?kind=admin", {"username": "alice", "password": PASSWORD}, expect=400
    )
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_guest_forbidden_by_default(api: Api) -> None:
    _, err = await api.request("POST", "register?kind=guest", {}, expect=403)
    assert err["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_guest_registration(make_api) -> None:
    api = await make_api(registration={"allow_guests": True, "policy": "closed"})
    reg = await api.post(
        "register?kind=guest",
        {
            "username": "mallory",
            "password": PASSWORD,
            "device_id": "CHOSEN",
            "refresh_token": True,
            "inhibit_login": True,
            "initial_device_display_name": "Guest browser",
        },
    )
    # Everything but initial_device_display_name is ignored for guests.
    assert set(reg) == {"user_id", "access_token", "device_id", "home_server"}
    assert re.fullmatch(r"@[0-9]+:test\.local", reg["user_id"]), reg["user_id"]
    assert reg["device_id"] != "CHOSEN"
    who = await api.get("account/whoami", token=reg["access_token"])
    assert who == {"user_id": reg["user_id"], "device_id": reg["device_id"], "is_guest": True}
    device = await api.hs.devices.get_device(reg["user_id"], reg["device_id"])
    assert device is not None and device.display_name == "Guest browser"
    # Guests cannot use endpoints meant for full accounts.
    _, err = await api.request("GET", "devices", token=reg["access_token"], expect=403)
    assert err["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    # Nor log in with a password they never had.
    localpart = reg["user_id"][1:].split(":")[0]
    _, err = await api.request(
        "POST", "login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
         "password": PASSWORD},
        expect=403,
    )
    assert err["errcode"] == "M_FORBIDDEN"


async def test_two_guests_get_different_ids(make_api) -> None:
    api = await make_api(registration={"allow_guests": True})
    a = await api.post("register?kind=guest", {})
    b = await api.post("register?kind=guest", {})
    assert a["user_id"] != b["user_id"]


# --- /register/available ---------------------------------------------------------------


async def test_available(api: Api) -> None:
    assert await api.get("register/available?username=alice") == {"available": True}
    await api.register("alice")
    for name in ("alice", "ALICE"):
        _, err = await api.request("GET", f"register/available?username={name}", expect=400)
        assert err["errcode"] == "M_USER_IN_USE"
    _, err = await api.request("GET", "register/available?username=bad%20name", expect=400)
    assert err["errcode"] == "M_INVALID_USERNAME"
    _, err = await api.request("GET", "register/available?username=", expect=400)
    assert err["errcode"] == "M_INVALID_USERNAME"
    _, err = await api.request("GET", "register/available", expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"


# --- registration tokens ---------------------------------------------------------------


async def token_api(make_api, clock: FakeClock) -> Api:
    return await make_api(clock=clock, registration={"policy": "token"})


async def token_stage(
    api: Api, username: str, token: str, *, password: str | None = PASSWORD,
    session: str | None = None, expect: int = 200,
) -> tuple[str, Any]:
    """Run the token stage (starting a session if needed); returns (session, response body)."""
    if session is None:
        session = await start(api, {"username": username}, flows=TOKEN_FLOWS)
    body: dict[str, Any] = {
        "username": username,
        "auth": {"type": "m.login.registration_token", "token": token, "session": session},
    }
    if password is not None:
        body["password"] = password
    _, resp = await api.request("POST", "register", body, expect=expect)
    return session, resp


async def test_token_registration(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("invite-abc", None, None)
    _, reg = await token_stage(api, "alice", "invite-abc")
    assert reg["user_id"] == "@alice:test.local"
    assert await api.hs.registration_tokens.get("invite-abc") == (None, 0, 1, None)


async def test_token_policy_refuses_other_stages(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    session = await start(api, {"username": "alice"}, flows=TOKEN_FLOWS)
    _, err = await api.request(
        "POST", "register",
        {"username": "alice", "password": PASSWORD,
         "auth": {"type": "m.login.dummy", "session": session}},
        expect=401,
    )
    assert err["errcode"] == "M_UNRECOGNIZED"


async def test_wrong_or_missing_token(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("invite-abc", None, None)
    session, err = await token_stage(api, "alice", "invite-xyz", expect=401)
    assert err["errcode"] == "M_FORBIDDEN"
    assert err["flows"] == TOKEN_FLOWS
    assert err["completed"] == []
    _, err = await api.request(
        "POST", "register",
        {"username": "alice", "password": PASSWORD,
         "auth": {"type": "m.login.registration_token", "session": session}},
        expect=401,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    # The session survives failed attempts.
    _, reg = await token_stage(api, "alice", "invite-abc", session=session)
    assert reg["user_id"] == "@alice:test.local"


async def test_token_use_limit(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("once", 1, None)
    assert await api.get(f"{VALIDITY}?token=once") == {"valid": True}
    await token_stage(api, "alice", "once")
    assert await api.get(f"{VALIDITY}?token=once") == {"valid": False}
    _, err = await token_stage(api, "bob", "once", expect=401)
    assert err["errcode"] == "M_FORBIDDEN"
    assert await api.hs.users.get_user("@bob:test.local") is None
    assert await api.hs.registration_tokens.get("once") == (1, 0, 1, None)


async def test_pending_use_counts_against_the_limit(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("once", 1, None)
    # Alice passes the token stage but her request lacks a password: the use is pending.
    session, err = await token_stage(api, "alice", "once", password=None, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    assert await api.hs.registration_tokens.get("once") == (1, 1, 0, None)
    assert await api.get(f"{VALIDITY}?token=once") == {"valid": False}
    _, err = await token_stage(api, "bob", "once", expect=401)
    assert err["errcode"] == "M_FORBIDDEN"
    # Retrying the completed stage in the same session reserves nothing more.
    await token_stage(api, "alice", "once", password=None, session=session, expect=400)
    assert await api.hs.registration_tokens.get("once") == (1, 1, 0, None)
    # Alice finishes: the pending use becomes a completed one.
    reg = await api.post("register", {"password": PASSWORD, "auth": {"session": session}})
    assert reg["user_id"] == "@alice:test.local"
    assert await api.hs.registration_tokens.get("once") == (1, 0, 1, None)
    # The finished session outlives the registration (for retries) but, when it
    # expires, does not give back the use the account consumed.
    again = await api.post("register", {"auth": {"session": session}})
    assert again["user_id"] == "@alice:test.local"
    clock.advance(31 * 60 * 1000)
    assert await api.get(f"{VALIDITY}?token=once") == {"valid": False}
    assert await api.hs.registration_tokens.get("once") == (1, 0, 1, None)


async def test_abandoned_registration_gives_its_token_use_back(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("once", 1, None)
    session, _ = await token_stage(api, "alice", "once", password=None, expect=400)
    assert await api.get(f"{VALIDITY}?token=once") == {"valid": False}
    clock.advance(31 * 60 * 1000)  # past the UIA session lifetime
    assert await api.get(f"{VALIDITY}?token=once") == {"valid": True}
    assert await api.hs.registration_tokens.get("once") == (1, 0, 0, None)
    _, err = await api.request(
        "POST", "register", {"password": PASSWORD, "auth": {"session": session}}, expect=400
    )
    assert err["errcode"] == "M_UNKNOWN"
    _, reg = await token_stage(api, "bob", "once")
    assert reg["user_id"] == "@bob:test.local"


async def test_expired_session_releases_its_token_when_resumed(make_api, clock: FakeClock) -> None:
    """Resuming an expired session gives back its reserved use at once."""
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("once", 1, None)
    session, _ = await token_stage(api, "alice", "once", password=None, expect=400)
    clock.advance(31 * 60 * 1000)
    _, err = await api.request(
        "POST", "register", {"password": PASSWORD, "auth": {"session": session}}, expect=400
    )
    assert err["errcode"] == "M_UNKNOWN"
    assert await api.hs.registration_tokens.get("once") == (1, 0, 0, None)


async def test_token_expiry(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    now = clock.time_ms()
    await api.hs.registration_tokens.create("soon", None, now + 60_000)
    assert await api.get(f"{VALIDITY}?token=soon") == {"valid": True}
    clock.advance(60_001)
    assert await api.get(f"{VALIDITY}?token=soon") == {"valid": False}
    _, err = await token_stage(api, "alice", "soon", expect=401)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_validity_endpoint(make_api, clock: FakeClock) -> None:
    api = await token_api(make_api, clock)
    await api.hs.registration_tokens.create("abc", 3, None)
    assert await api.get(f"{VALIDITY}?token=abc") == {"valid": True}
    # Served under v3 too, for clients that predate v1 paths.
    assert await api.get("register/m.login.registration_token/validity?token=abc") == {
        "valid": True
    }
    assert await api.get(f"{VALIDITY}?token=unknown") == {"valid": False}
    _, err = await api.request("GET", VALIDITY, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"


async def test_validity_without_token_policy(api: Api) -> None:
    _, err = await api.request("GET", f"{VALIDITY}?token=abc", expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
