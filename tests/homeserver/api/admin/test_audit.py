"""The audit log's producers (logins, credentials, devices, registration, admin writes)
and its query API; no password or token ever reaches the table."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, Api, FakeClock, password_auth
from tests.homeserver.api.admin.helpers import (
    V1,
    V2,
    assert_refused_to_non_admins,
    make_admin,
    make_user,
)

PATH = "/_accord/admin/v1/audit_log"
SECRET_PASSWORD = "my very secret password 4711"


async def _all_rows_text(api: Api) -> str:
    rows = await api.hs.db.fetchall("SELECT action, actor, target, ip, outcome, details FROM audit_log")
    return "\n".join(repr(r) for r in rows)


async def test_non_admins_are_refused(api: Api) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, "GET", PATH, alice)


async def test_account_events_are_recorded_without_secrets(api: Api) -> None:
    admin = await make_admin(api)
    await api.register("alice", SECRET_PASSWORD)
    session = await api.login("alice", SECRET_PASSWORD)
    # a failed login, whose attempted password must not be stored either
    _, err = await api.request("POST", "login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "wrong " + SECRET_PASSWORD,
    }, expect=403)
    await api.request("POST", "login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"},
        "password": SECRET_PASSWORD,
    }, expect=403)
    token = session["access_token"]
    body = {"new_password": "another " + SECRET_PASSWORD, "logout_devices": False}
    _, challenge = await api.request("POST", "account/password", body, token=token, expect=401)
    body["auth"] = password_auth(challenge["session"], "alice", SECRET_PASSWORD)
    await api.post("account/password", body, token=token)
    other = await api.login("alice", "another " + SECRET_PASSWORD)
    del_body = {"devices": [other["device_id"]]}
    _, challenge = await api.request("POST", "delete_devices", del_body, token=token, expect=401)
    del_body["auth"] = password_auth(challenge["session"], "alice", "another " + SECRET_PASSWORD)
    await api.post("delete_devices", del_body, token=token)
    await api.post("logout", {}, token=token)
    await api.post(V1 + "/deactivate/@alice:test.local", {}, token=admin)

    entries = (await api.get(PATH + "?actor=@alice:test.local", token=admin))["entries"]
    actions = [e["action"] for e in reversed(entries)]
    assert actions == [
        "register", "login", "login.failed", "password.change", "login", "device.delete", "logout",
    ]
    failed = next(e for e in entries if e["action"] == "login.failed")
    assert failed["outcome"] == "failed" and failed["ip"] == "127.0.0.1"
    assert failed["details"] == {"reason": "bad_credentials"}
    unknown = (await api.get(PATH + "?actor=@nobody:test.local", token=admin))["entries"]
    assert [e["action"] for e in unknown] == ["login.failed"]
    deactivation = (await api.get(PATH + "?action=admin.user.deactivate", token=admin))["entries"]
    assert deactivation[0]["actor"] == "@root:test.local" and deactivation[0]["target"] == "@alice:test.local"
    text = await _all_rows_text(api)
    assert SECRET_PASSWORD not in text
    assert token not in text and session["access_token"] not in text


async def test_admin_writes_are_recorded(api: Api) -> None:
    admin = await make_admin(api)
    await api.request(
        "PUT", V2 + "/users/@bot:test.local", {"user_type": "bot", "password": SECRET_PASSWORD},
        token=admin, expect=201,
    )
    await api.put(V2 + "/users/@bot:test.local", {"displayname": "Bot"}, token=admin)
    minted = (await api.post(V1 + "/users/@bot:test.local/login", {}, token=admin))["access_token"]
    await api.post(V1 + "/reset_password/@bot:test.local", {"new_password": "new " + SECRET_PASSWORD}, token=admin)
    await api.post(V1 + "/users/@bot:test.local/override_ratelimit", {}, token=admin)
    await api.put(V1 + "/rooms/!x:test.local/block", {"block": True}, token=admin)
    admin_entries = (await api.get(PATH + "?action=admin.", token=admin))["entries"]
    assert [e["action"] for e in reversed(admin_entries)] == [
        "admin.user.create", "admin.user.modify", "admin.user.login", "admin.user.reset_password",
        "admin.ratelimit.set", "admin.room.block",
    ]
    modify = admin_entries[-2]
    assert modify["details"] == {"changed": ["displayname"]}
    text = await _all_rows_text(api)
    assert SECRET_PASSWORD not in text and minted not in text


async def test_query_filters_and_pages(make_api) -> None:  # noqa: ANN001
    clock = FakeClock()
    api = await make_api(clock=clock)
    admin = await make_admin(api)
    start = clock.time_ms()
    for i in range(5):
        clock.advance(1000)
        await api.hs.audit.record("test.thing", actor="@x:test.local", target=f"t{i}")
    page = await api.get(PATH + "?action=test.thing&limit=2", token=admin)
    assert [e["target"] for e in page["entries"]] == ["t4", "t3"]
    page2 = await api.get(PATH + f"?action=test.thing&limit=2&from={page['next_token']}", token=admin)
    assert [e["target"] for e in page2["entries"]] == ["t2", "t1"]
    page3 = await api.get(PATH + f"?action=test.thing&limit=2&from={page2['next_token']}", token=admin)
    assert [e["target"] for e in page3["entries"]] == ["t0"] and page3["next_token"] is None
    window = await api.get(PATH + f"?action=test.thing&since={start + 2000}&until={start + 3000}", token=admin)
    assert [e["target"] for e in window["entries"]] == ["t2", "t1"]
    assert [e["target"] for e in (await api.get(PATH + "?target=t3", token=admin))["entries"]] == ["t3"]
    entry = page["entries"][0]
    assert set(entry) == {"id", "ts", "action", "actor", "target", "ip", "outcome", "details"}


@pytest.mark.parametrize("query", ["limit=0", "limit=5000", "limit=x", "from=0", "since=yesterday", "action="])
async def test_query_bad_input(api: Api, query: str) -> None:
    admin = await make_admin(api)
    _, err = await api.request("GET", PATH + "?" + query, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_register_by_shared_secret_is_recorded(api: Api) -> None:
    admin = await make_admin(api)
    rows = (await api.get(PATH + "?action=register", token=admin))["entries"]
    assert rows[0]["actor"] == "@root:test.local" and rows[0]["details"]["guest"] is False
    assert PASSWORD not in await _all_rows_text(api)
