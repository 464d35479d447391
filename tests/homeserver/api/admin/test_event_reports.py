"""Reporting events, rooms and users (client API) and reviewing reports (admin API)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, ClientFactory, password_auth
from tests.homeserver.api.admin.helpers import (
    V1,
    assert_refused_to_non_admins,
    make_admin,
    make_room,
    make_user,
    send_text,
)

PATH = V1 + "/event_reports"


@pytest.mark.parametrize(("method", "path"), [("GET", PATH), ("GET", PATH + "/1"), ("DELETE", PATH + "/1")])
async def test_non_admins_are_refused(api: Api, method: str, path: str) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, method, path, alice)


async def test_report_and_review(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    room = await make_room(api, alice, name="Reports", preset="public_chat", room_alias_name="rep")
    await api.post(f"join/{room}", {}, token=bob)
    first = await send_text(api, alice, room, "offensive", "a")
    second = await send_text(api, alice, room, "also offensive", "b")
    assert await api.post(f"rooms/{room}/report/{first}", {"reason": "rude", "score": -100}, token=bob) == {}
    await api.post(f"rooms/{room}/report/{second}", {}, token=bob)  # reason is optional
    await api.post(f"rooms/{room}/report/{second}", {"reason": "again"}, token=alice)
    page = await api.get(PATH + "?limit=2", token=admin)
    assert page["total"] == 3 and page["next_token"] == 2
    newest = page["event_reports"][0]
    assert newest["event_id"] == second and newest["user_id"] == "@alice:test.local"
    assert newest["name"] == "Reports" and newest["canonical_alias"] == "#rep:test.local"
    assert newest["sender"] == "@alice:test.local" and newest["room_id"] == room
    oldest = (await api.get(PATH + "?dir=f&limit=1", token=admin))["event_reports"][0]
    assert oldest["reason"] == "rude" and oldest["score"] == -100 and oldest["event_id"] == first
    by_bob = await api.get(PATH + "?user_id=@bob:test.local", token=admin)
    assert by_bob["total"] == 2 and "next_token" not in by_bob
    assert (await api.get(PATH + "?room_id=!nope:test.local", token=admin))["total"] == 0
    detail = await api.get(PATH + f"/{oldest['id']}", token=admin)
    assert detail["event_json"]["content"]["body"] == "offensive" and detail["event_json"]["event_id"] == first
    assert await api.request("DELETE", PATH + f"/{oldest['id']}", token=admin) == (200, {})
    await api.request("GET", PATH + f"/{oldest['id']}", token=admin, expect=404)
    await api.request("DELETE", PATH + f"/{oldest['id']}", token=admin, expect=404)
    _, err = await api.request("GET", PATH + "/abc", token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("GET", PATH + "?dir=sideways", token=admin, expect=400)


async def test_report_event_refusals(api: Api) -> None:
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    room = await make_room(api, alice)
    other = await make_room(api, alice)
    event = await send_text(api, alice, room, "hello", "a")
    elsewhere = await send_text(api, alice, other, "hello", "b")
    missing = "The event was not found or you are not joined to the room."
    # not joined: the same 404 as a missing event, so nothing leaks
    for path in (f"rooms/{room}/report/{event}", f"rooms/{room}/report/$nope", f"rooms/!nope:test.local/report/{event}"):
        _, err = await api.request("POST", path, {"reason": "x"}, token=bob, expect=404)
        assert err == {"errcode": "M_NOT_FOUND", "error": missing}
    _, err = await api.request("POST", f"rooms/{room}/report/{elsewhere}", {}, token=alice, expect=404)
    for body, errcode in (({"reason": 5}, "M_BAD_JSON"), ({"score": -101}, "M_INVALID_PARAM"),
                          ({"score": "bad"}, "M_INVALID_PARAM"), ({"reason": "x" * 2000}, "M_INVALID_PARAM")):
        _, err = await api.request("POST", f"rooms/{room}/report/{event}", body, token=alice, expect=400)
        assert err["errcode"] == errcode
    _, err = await api.request("POST", f"rooms/{room}/report/{event}", data=b"nope", token=alice, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    _, err = await api.request("POST", f"rooms/{room}/report/{event}", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_report_room(api: Api) -> None:
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    room = await make_room(api, alice)
    # the reporter need not be joined (the spec forbids requiring it)
    assert await api.post(f"rooms/{room}/report", {"reason": "spam room"}, token=bob) == {}
    rows = await api.hs.db.fetchall("SELECT room_id, user_id, reason FROM room_reports")
    assert rows == [(room, "@bob:test.local", "spam room")]
    _, err = await api.request("POST", "rooms/!nope:test.local/report", {"reason": "x"}, token=bob, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("POST", f"rooms/{room}/report", {}, token=bob, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("POST", f"rooms/{room}/report", {"reason": ["x"]}, token=bob, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


ACCORD = "/_accord/admin/v1"


@pytest.mark.parametrize(
    ("method", "path"),
    [(m, ACCORD + p) for p in ("/room_reports", "/user_reports") for m in ("GET",)]
    + [(m, ACCORD + p + "/1") for p in ("/room_reports", "/user_reports") for m in ("GET", "DELETE")],
)
async def test_non_admins_are_refused_room_and_user_reports(api: Api, method: str, path: str) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, method, path, alice)


async def test_report_user(api: Api) -> None:
    """v1.14: any user may report another, sharing a room or not; unknown users are 404."""
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    assert await api.post("users/@alice:test.local/report", {"reason": "harassment"}, token=bob) == {}
    assert await api.post("users/@bob:test.local/report", {"reason": ""}, token=alice) == {}  # may be blank
    rows = await api.hs.db.fetchall("SELECT target_user_id, user_id, reason FROM user_reports ORDER BY id")
    assert rows == [("@alice:test.local", "@bob:test.local", "harassment"), ("@bob:test.local", "@alice:test.local", "")]
    for target in ("@nobody:test.local", "@stranger:elsewhere.example"):
        _, err = await api.request("POST", f"users/{target}/report", {"reason": "x"}, token=bob, expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("POST", "users/not-a-user/report", {"reason": "x"}, token=bob, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("POST", "users/@alice:test.local/report", {}, token=bob, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("POST", "users/@alice:test.local/report", {"reason": 5}, token=bob, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("POST", "users/@alice:test.local/report", {"reason": "x" * 1001}, token=bob, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("POST", "users/@alice:test.local/report", {"reason": "x"}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    # A deactivated account stays reportable: what it did is still there to review.
    _, challenge = await api.request("POST", "account/deactivate", {}, token=alice, expect=401)
    await api.post("account/deactivate", {"auth": password_auth(challenge["session"], "alice")}, token=alice)
    assert await api.post("users/@alice:test.local/report", {"reason": "again"}, token=bob) == {}
    assert len(await api.hs.db.fetchall("SELECT id FROM user_reports")) == 3


async def test_review_room_and_user_reports(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    """On both engines: the substring filters are instr() on SQLite, strpos() on PostgreSQL."""
    api = await make_api(**db_overrides)
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    room = await make_room(api, alice)
    await api.post(f"rooms/{room}/report", {"reason": "spam room"}, token=bob)
    await api.post(f"rooms/{room}/report", {"reason": "still spam"}, token=alice)
    await api.post("users/@alice:test.local/report", {"reason": "spammer"}, token=bob)
    page = await api.get(ACCORD + "/room_reports?limit=1", token=admin)
    assert page["total"] == 2 and page["next_token"] == 1
    newest = page["room_reports"][0]
    assert (newest["room_id"], newest["user_id"], newest["reason"]) == (room, "@alice:test.local", "still spam")
    assert isinstance(newest["received_ts"], int) and isinstance(newest["id"], int)
    by_bob = await api.get(ACCORD + "/room_reports?dir=f&user_id=@bob", token=admin)
    assert by_bob["total"] == 1 and by_bob["room_reports"][0]["reason"] == "spam room"
    users = await api.get(ACCORD + "/user_reports?target_user_id=alice", token=admin)
    assert users["total"] == 1 and "next_token" not in users
    report = users["user_reports"][0]
    assert (report["target_user_id"], report["user_id"], report["reason"]) == ("@alice:test.local", "@bob:test.local", "spammer")
    assert await api.get(ACCORD + f"/user_reports/{report['id']}", token=admin) == report
    assert (await api.get(ACCORD + "/user_reports?target_user_id=@bob", token=admin))["total"] == 0
    assert await api.request("DELETE", ACCORD + f"/user_reports/{report['id']}", token=admin) == (200, {})
    await api.request("GET", ACCORD + f"/user_reports/{report['id']}", token=admin, expect=404)
    await api.request("DELETE", ACCORD + f"/room_reports/{newest['id']}", token=admin)
    await api.request("DELETE", ACCORD + f"/room_reports/{newest['id']}", token=admin, expect=404)
    assert (await api.get(ACCORD + "/room_reports", token=admin))["total"] == 1
    for bad in ("/room_reports/abc", "/user_reports/-1", "/user_reports?dir=up", "/room_reports?limit=-5"):
        _, err = await api.request("GET", ACCORD + bad, token=admin, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", bad
