"""Reporting events and rooms (client API) and reviewing reports (admin API)."""

from __future__ import annotations

import pytest

from tests.conftest import Api
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
