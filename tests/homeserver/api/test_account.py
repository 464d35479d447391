"""whoami, password change, deactivation, and how credentials are stored."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.conftest import PASSWORD, Api, password_auth

PASSWORD_FLOWS = [{"stages": ["m.login.password"]}]
NEW_PASSWORD = "a brand new passphrase"


async def token_status(api: Api, token: str) -> int:
    status, _ = await api.request("GET", "account/whoami", token=token, expect=None)
    return status


async def challenge(api: Api, path: str, body: dict[str, Any], token: str) -> str:
    """The unauthenticated first step of a UIA endpoint: 401 with the password flow."""
    _, resp = await api.request("POST", path, body, token=token, expect=401)
    assert resp["flows"] == PASSWORD_FLOWS
    assert resp["completed"] == []
    assert "errcode" not in resp
    return resp["session"]


# --- whoami ------------------------------------------------------------------------------


async def test_whoami(api: Api) -> None:
    reg = await api.register("alice")
    assert await api.get("account/whoami", token=reg["access_token"]) == {
        "user_id": "@alice:test.local",
        "device_id": reg["device_id"],
        "is_guest": False,
    }


async def test_whoami_requires_a_token(api: Api) -> None:
    _, err = await api.request("GET", "account/whoami", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


# --- password change -----------------------------------------------------------------------


async def test_change_password(api: Api) -> None:
    reg = await api.register("alice")
    other = await api.login("alice")
    body = {"new_password": NEW_PASSWORD}
    session = await challenge(api, "account/password", body, reg["access_token"])
    resp = await api.post(
        "account/password",
        {**body, "auth": password_auth(session, "alice")},
        token=reg["access_token"],
    )
    assert resp == {}
    # The requesting session survives; the others are logged out (the default).
    assert await token_status(api, reg["access_token"]) == 200
    assert await token_status(api, other["access_token"]) == 401
    devices = (await api.get("devices", token=reg["access_token"]))["devices"]
    assert [d["device_id"] for d in devices] == [reg["device_id"]]
    _, err = await api.request(
        "POST", "login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
         "password": PASSWORD},
        expect=403,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    await api.login("alice", NEW_PASSWORD)


async def test_change_password_keeping_devices(api: Api) -> None:
    reg = await api.register("alice")
    other = await api.login("alice")
    body = {"new_password": NEW_PASSWORD, "logout_devices": False}
    session = await challenge(api, "account/password", body, reg["access_token"])
    await api.post(
        "account/password", {**body, "auth": password_auth(session, "@alice:test.local")},
        token=reg["access_token"],
    )
    assert await token_status(api, other["access_token"]) == 200
    await api.login("alice", NEW_PASSWORD)


async def test_change_password_wrong_current_password(api: Api) -> None:
    reg = await api.register("alice")
    body = {"new_password": NEW_PASSWORD}
    session = await challenge(api, "account/password", body, reg["access_token"])
    _, err = await api.request(
        "POST", "account/password",
        {**body, "auth": password_auth(session, "alice", "not my password")},
        token=reg["access_token"], expect=401,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    assert err["flows"] == PASSWORD_FLOWS
    assert err["session"] == session
    assert err["completed"] == []
    await api.login("alice")  # unchanged
    # The session allows another attempt.
    await api.post(
        "account/password", {**body, "auth": password_auth(session, "alice")},
        token=reg["access_token"],
    )
    await api.login("alice", NEW_PASSWORD)


async def test_change_password_auth_naming_another_user(api: Api) -> None:
    reg = await api.register("alice")
    await api.register("bob")
    body = {"new_password": NEW_PASSWORD}
    session = await challenge(api, "account/password", body, reg["access_token"])
    _, err = await api.request(
        "POST", "account/password", {**body, "auth": password_auth(session, "bob")},
        token=reg["access_token"], expect=401,
    )
    assert err["errcode"] == "M_FORBIDDEN"


async def test_password_stage_identifier_forms(api: Api) -> None:
    """The stage may name the user by localpart, full ID (any case), legacy 'user', or not at all."""
    reg = await api.register("alice")
    token = reg["access_token"]
    auths = [
        password_auth(None, "ALICE"),
        password_auth(None, "@Alice:test.local"),
        {"type": "m.login.password", "user": "alice", "password": PASSWORD},
        {"type": "m.login.password", "password": PASSWORD},
    ]
    for auth in auths:
        session = await challenge(api, "account/password", {}, token)
        await api.request(
            "POST", "account/password", {"auth": {**auth, "session": session}}, token=token,
            expect=400,  # authenticated; only new_password is missing
        )


async def test_password_stage_refuses_unresolvable_identifiers(api: Api) -> None:
    reg = await api.register("alice")
    token = reg["access_token"]
    for identifier in (
        {"type": "m.id.thirdparty", "medium": "email", "address": "alice@example.org"},
        {"type": "m.id.phone", "country": "GB", "phone": "07700900000"},
        {"type": "m.id.user", "user": "@alice"},
        {"type": "m.id.user"},
        "alice",
    ):
        session = await challenge(api, "account/password", {}, token)
        _, err = await api.request(
            "POST", "account/password",
            {"new_password": NEW_PASSWORD,
             "auth": {"type": "m.login.password", "identifier": identifier, "password": PASSWORD,
                      "session": session}},
            token=token, expect=401,
        )
        assert err["errcode"] == "M_FORBIDDEN", identifier
    await api.login("alice")  # unchanged


async def test_password_stage_failures_are_rate_limited(make_api, clock) -> None:
    api = await make_api(
        clock=clock,
        rate_limits={"enabled": True,
                     "actions": {"login_failures": {"per_second": 0.1, "burst": 2}}},
    )
    reg = await api.register("alice")
    token = reg["access_token"]
    body = {"new_password": NEW_PASSWORD}
    session = await challenge(api, "account/password", body, token)
    for _ in range(2):
        _, err = await api.request(
            "POST", "account/password", {**body, "auth": password_auth(session, "alice", "guess!!!")},
            token=token, expect=401,
        )
        assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request(
        "POST", "account/password", {**body, "auth": password_auth(session, "alice")},
        token=token, expect=429,
    )
    assert err["errcode"] == "M_LIMIT_EXCEEDED"
    clock.advance(10_001)
    await api.post(
        "account/password", {**body, "auth": password_auth(session, "alice")}, token=token
    )


async def test_change_password_needs_auth_every_time(api: Api) -> None:
    reg = await api.register("alice")
    body = {"new_password": NEW_PASSWORD}
    session = await challenge(api, "account/password", body, reg["access_token"])
    auth = password_auth(session, "alice")
    await api.post("account/password", {**body, "auth": auth}, token=reg["access_token"])
    # The finished session is gone: reusing it is refused.
    _, err = await api.request(
        "POST", "account/password", {"new_password": "yet another passphrase", "auth": auth},
        token=reg["access_token"], expect=400,
    )
    assert err["errcode"] == "M_UNKNOWN"


async def test_change_password_weak(api: Api) -> None:
    reg = await api.register("alice")
    _, err = await api.request(
        "POST", "account/password", {"new_password": "short"}, token=reg["access_token"], expect=400
    )
    assert err["errcode"] == "M_WEAK_PASSWORD"


async def test_change_password_bad_types(api: Api) -> None:
    reg = await api.register("alice")
    for body in ({"new_password": 12345678}, {"new_password": NEW_PASSWORD, "logout_devices": "no"}):
        _, err = await api.request(
            "POST", "account/password", body, token=reg["access_token"], expect=400
        )
        assert err["errcode"] == "M_BAD_JSON", body


async def test_change_password_missing_new_password_keeps_session(api: Api) -> None:
    reg = await api.register("alice")
    session = await challenge(api, "account/password", {}, reg["access_token"])
    _, err = await api.request(
        "POST", "account/password", {"auth": password_auth(session, "alice")},
        token=reg["access_token"], expect=400,
    )
    assert err["errcode"] == "M_MISSING_PARAM"
    await api.post(
        "account/password", {"new_password": NEW_PASSWORD, "auth": {"session": session}},
        token=reg["access_token"],
    )
    await api.login("alice", NEW_PASSWORD)


async def test_session_proven_by_one_user_cannot_serve_another(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    session = await challenge(api, "account/password", {}, alice["access_token"])
    await api.request(
        "POST", "account/password", {"auth": password_auth(session, "alice")},
        token=alice["access_token"], expect=400,
    )
    _, err = await api.request(
        "POST", "account/password", {"new_password": NEW_PASSWORD, "auth": {"session": session}},
        token=bob["access_token"], expect=403,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    await api.login("bob")  # bob's password is unchanged


async def test_change_password_requires_token(api: Api) -> None:
    _, err = await api.request("POST", "account/password", {"new_password": NEW_PASSWORD}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_guest_cannot_change_password(make_api) -> None:
    api = await make_api(registration={"allow_guests": True})
    guest = await api.post("register?kind=guest", {})
    _, err = await api.request(
        "POST", "account/password", {"new_password": NEW_PASSWORD},
        token=guest["access_token"], expect=403,
    )
    assert err["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


# --- deactivation --------------------------------------------------------------------------


async def test_deactivate(api: Api) -> None:
    reg = await api.register("alice")
    other = await api.login("alice")
    session = await challenge(api, "account/deactivate", {}, reg["access_token"])
    resp = await api.post(
        "account/deactivate", {"auth": password_auth(session, "alice")}, token=reg["access_token"]
    )
    assert resp == {"id_server_unbind_result": "success"}
    for token in (reg["access_token"], other["access_token"]):
        _, err = await api.request("GET", "account/whoami", token=token, expect=401)
        assert err["errcode"] == "M_UNKNOWN_TOKEN"
    _, err = await api.request(
        "POST", "login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
         "password": PASSWORD},
        expect=403,
    )
    assert err["errcode"] == "M_USER_DEACTIVATED"
    _, err = await api.request("GET", "profile/@alice:test.local", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", "profile/@alice:test.local/displayname", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    # The user ID stays taken for good.
    _, err = await api.request("GET", "register/available?username=alice", expect=400)
    assert err["errcode"] == "M_USER_IN_USE"
    user = await api.hs.users.get_user("@alice:test.local")
    assert user is not None and user.deactivated and user.password_hash is None
    assert await api.hs.db.fetchone(
        "SELECT count(*) FROM devices WHERE user_id = ?", ("@alice:test.local",)
    ) == (0,)


async def test_deactivate_with_body_fields(api: Api) -> None:
    reg = await api.register("alice")
    body = {"erase": True, "id_server": "id.example.org"}
    session = await challenge(api, "account/deactivate", body, reg["access_token"])
    await api.post(
        "account/deactivate", {**body, "auth": password_auth(session, "alice")},
        token=reg["access_token"],
    )
    assert await token_status(api, reg["access_token"]) == 401


async def test_deactivate_wrong_password(api: Api) -> None:
    reg = await api.register("alice")
    session = await challenge(api, "account/deactivate", {}, reg["access_token"])
    _, err = await api.request(
        "POST", "account/deactivate", {"auth": password_auth(session, "alice", "nope nope")},
        token=reg["access_token"], expect=401,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    assert await token_status(api, reg["access_token"]) == 200


async def test_deactivate_bad_types(api: Api) -> None:
    reg = await api.register("alice")
    for body in ({"erase": "yes"}, {"id_server": 5}):
        _, err = await api.request(
            "POST", "account/deactivate", body, token=reg["access_token"], expect=400
        )
        assert err["errcode"] == "M_BAD_JSON", body


async def test_deactivate_requires_token(api: Api) -> None:
    _, err = await api.request("POST", "account/deactivate", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_deactivated_user_cannot_log_in_with_any_password(api: Api) -> None:
    reg = await api.register("alice")
    session = await challenge(api, "account/deactivate", {}, reg["access_token"])
    await api.post(
        "account/deactivate", {"auth": password_auth(session, "alice")}, token=reg["access_token"]
    )
    _, err = await api.request(
        "POST", "login",
        {"type": "m.login.password", "user": "@alice:test.local", "password": "anything at all"},
        expect=403,
    )
    assert err["errcode"] == "M_USER_DEACTIVATED"


# --- credential storage ----------------------------------------------------------------------


async def test_database_holds_only_token_hashes(api: Api) -> None:
    await api.register("alice")
    login = await api.post(
        "login",
        {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
         "password": PASSWORD, "refresh_token": True},
    )
    access, refresh = login["access_token"], login["refresh_token"]
    hashes = {r[0] for r in await api.hs.db.fetchall("SELECT token_hash FROM access_tokens")}
    assert hashlib.sha256(access.encode()).hexdigest() in hashes
    refresh_hashes = {r[0] for r in await api.hs.db.fetchall("SELECT token_hash FROM refresh_tokens")}
    assert hashlib.sha256(refresh.encode()).hexdigest() in refresh_hashes
    # No raw token anywhere in the database.
    tables = [r[0] for r in await api.hs.db.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    )]
    for table in tables:
        for row in await api.hs.db.fetchall(f"SELECT * FROM {table}"):
            text = repr(row)
            assert access not in text, table
            assert refresh not in text, table


async def test_password_hashes_are_salted_scrypt(api: Api) -> None:
    await api.register("alice")
    await api.register("bob")
    rows = dict(await api.hs.db.fetchall("SELECT user_id, password_hash FROM users"))
    a, b = rows["@alice:test.local"], rows["@bob:test.local"]
    assert a != b
    for h in (a, b):
        scheme, n, r, p, salt, digest = h.split("$")
        assert (scheme, n, r, p) == ("scrypt", "1024", "8", "1")
        assert PASSWORD not in h
    assert a.split("$")[4] != b.split("$")[4]  # per-user salts
    for table in ("users", "uia_sessions", "profiles", "devices"):
        for row in await api.hs.db.fetchall(f"SELECT * FROM {table}"):
            assert PASSWORD not in repr(row), table


async def test_uia_sessions_never_store_passwords(api: Api) -> None:
    reg = await api.register("alice")
    session = await challenge(
        api, "account/password", {"new_password": NEW_PASSWORD}, reg["access_token"]
    )
    await api.request(
        "POST", "account/password",
        {"new_password": NEW_PASSWORD, "auth": password_auth(session, "alice", "wrong password!")},
        token=reg["access_token"], expect=401,
    )
    for row in await api.hs.db.fetchall("SELECT * FROM uia_sessions"):
        assert NEW_PASSWORD not in repr(row)
        assert "wrong password!" not in repr(row)


async def test_deactivation_leaves_rooms_and_declines_invites(api: Api) -> None:
    owner = (await api.register("owner"))["access_token"]
    leaver = await api.register("leaver")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    invited_room = (await api.post("createRoom", {}, token=owner))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=leaver["access_token"])
    await api.post(f"rooms/{invited_room}/invite", {"user_id": leaver["user_id"]}, token=owner)
    status, challenge = await api.request("POST", "account/deactivate", {}, token=leaver["access_token"], expect=401)
    await api.post("account/deactivate", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": "leaver"}, "password": PASSWORD,
    }}, token=leaver["access_token"])
    for rid in (room, invited_room):
        member = await api.get(f"rooms/{rid}/state/m.room.member/{leaver['user_id']}", token=owner)
        assert member["membership"] == "leave", rid


async def test_guest_upgrades_to_a_full_account_keeping_its_user_id(db_overrides, make_api) -> None:
    """The guest access module: POST /register with `guest_access_token` and the
    guest's own username goes through the ordinary flow and keeps the user ID, so
    the rooms it joined stay its own."""
    api = await make_api(registration={"allow_guests": True}, **db_overrides)
    guest = await api.post("register?kind=guest", {})
    guest_id, guest_token = guest["user_id"], guest["access_token"]
    localpart = guest_id[1:].split(":", 1)[0]
    alice = (await api.register("alice"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat", "initial_state": [
        {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}]}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=guest_token)

    # A wrong username, or a full account's token, is refused before any account changes.
    _, err = await api.request("POST", "register", {"username": "someoneelse", "password": "pw-upgrade-1",
                                                    "guest_access_token": guest_token}, expect=400)
    assert err["errcode"] == "M_INVALID_USERNAME"
    _, err = await api.request("POST", "register", {"username": "alice", "password": "pw-upgrade-1",
                                                    "guest_access_token": alice}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"

    upgraded = await api.register(localpart, "pw-upgrade-1", guest_access_token=guest_token)
    assert upgraded["user_id"] == guest_id
    who = await api.get("account/whoami", token=upgraded["access_token"])
    assert who["user_id"] == guest_id and who["is_guest"] is False
    # The old guest token now acts as the full account; the password logs in.
    assert (await api.get("account/whoami", token=guest_token))["is_guest"] is False
    assert (await api.login(localpart, "pw-upgrade-1"))["user_id"] == guest_id
    assert await api.get("joined_rooms", token=upgraded["access_token"]) == {"joined_rooms": [room]}
    # Upgrading twice is refused.
    _, err = await api.request("POST", "register", {"username": localpart, "password": "pw-upgrade-2",
                                                    "guest_access_token": guest_token}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
