"""The room admin API: list, details, members, state, block, and delete/purge (v1 and v2)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.server import HomeServer
from tests.conftest import Api
from tests.homeserver.api.admin.helpers import (
    V1,
    V2,
    assert_refused_to_non_admins,
    make_admin,
    make_room,
    make_user,
    send_text,
)

ROOM = "!room:test.local"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", V1 + "/rooms"),
        ("GET", V1 + f"/rooms/{ROOM}"),
        ("GET", V1 + f"/rooms/{ROOM}/members"),
        ("GET", V1 + f"/rooms/{ROOM}/state"),
        ("DELETE", V1 + f"/rooms/{ROOM}"),
        ("DELETE", V2 + f"/rooms/{ROOM}"),
        ("GET", V2 + f"/rooms/{ROOM}/delete_status"),
        ("GET", V2 + "/rooms/delete_status/abc"),
        ("GET", V1 + f"/rooms/{ROOM}/block"),
        ("PUT", V1 + f"/rooms/{ROOM}/block"),
    ],
)
async def test_non_admins_are_refused(api: Api, method: str, path: str) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, method, path, alice, {} if method in ("PUT", "DELETE") else None)


async def test_list_and_details(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    big = await make_room(api, alice, name="Big room", preset="public_chat", room_alias_name="big", visibility="public")
    await api.post(f"join/{big}", {}, token=bob)
    small = await make_room(api, bob, name="another room", topic="small talk")
    body = await api.get(V1 + "/rooms", token=admin)
    assert body["total_rooms"] == 2 and body["offset"] == 0 and "next_batch" not in body
    assert [r["room_id"] for r in body["rooms"]] == [small, big]  # by name: "another" < "Big"
    entry = next(r for r in body["rooms"] if r["room_id"] == big)
    assert entry == {
        "room_id": big, "name": "Big room", "canonical_alias": "#big:test.local",
        "joined_members": 2, "joined_local_members": 2, "version": entry["version"],
        "creator": "@alice:test.local", "encryption": None, "federatable": True, "public": True,
        "join_rules": "public", "guest_access": entry["guest_access"], "history_visibility": "shared",
        "state_events": entry["state_events"], "room_type": None,
    }
    assert entry["state_events"] >= 7
    by_size = await api.get(V1 + "/rooms?order_by=joined_members", token=admin)
    assert [r["room_id"] for r in by_size["rooms"]] == [big, small]
    reversed_ = await api.get(V1 + "/rooms?order_by=joined_members&dir=b", token=admin)
    assert [r["room_id"] for r in reversed_["rooms"]] == [small, big]
    paged = await api.get(V1 + "/rooms?limit=1", token=admin)
    assert len(paged["rooms"]) == 1 and paged["next_batch"] == 1 and paged["total_rooms"] == 2
    second = await api.get(V1 + f"/rooms?limit=1&from={paged['next_batch']}", token=admin)
    assert second["rooms"][0]["room_id"] == big and second["prev_batch"] == 0
    found = await api.get(V1 + "/rooms?search_term=BIG", token=admin)
    assert [r["room_id"] for r in found["rooms"]] == [big]
    found = await api.get(V1 + "/rooms?public_rooms=false", token=admin)
    assert [r["room_id"] for r in found["rooms"]] == [small]

    details = await api.get(V1 + f"/rooms/{small}", token=admin)
    assert details["topic"] == "small talk" and details["joined_local_devices"] == 1
    assert details["forgotten"] is False and details["tombstoned"] is False
    assert details["replacement_room"] is None and details["avatar"] is None
    members = await api.get(V1 + f"/rooms/{big}/members", token=admin)
    assert members == {"members": ["@alice:test.local", "@bob:test.local"], "total": 2}
    state = await api.get(V1 + f"/rooms/{big}/state", token=admin)
    types = {ev["type"] for ev in state["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} <= types
    only = await api.get(V1 + f"/rooms/{big}/state?type=m.room.member", token=admin)
    assert sorted(ev["state_key"] for ev in only["state"]) == ["@alice:test.local", "@bob:test.local"]


@pytest.mark.parametrize("query", ["order_by=secret", "dir=up", "from=-3", "limit=x", "search_term=", "public_rooms=yes"])
async def test_list_bad_query(api: Api, query: str) -> None:
    admin = await make_admin(api)
    _, err = await api.request("GET", V1 + "/rooms?" + query, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_unknown_and_malformed_rooms(api: Api) -> None:
    admin = await make_admin(api)
    for suffix in ("", "/members", "/state"):
        _, err = await api.request("GET", V1 + f"/rooms/!nope:test.local{suffix}", token=admin, expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", V1 + "/rooms/not-a-room", token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_block(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    room = await make_room(api, alice, preset="public_chat")
    assert await api.get(V1 + f"/rooms/{room}/block", token=admin) == {"block": False}
    assert await api.put(V1 + f"/rooms/{room}/block", {"block": True}, token=admin) == {"block": True}
    assert await api.get(V1 + f"/rooms/{room}/block", token=admin) == {"block": True, "user_id": "@root:test.local"}
    _, err = await api.request("POST", f"join/{room}", {}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("PUT", V1 + f"/rooms/{room}/block", {"block": "yes"}, token=admin, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    await api.put(V1 + f"/rooms/{room}/block", {"block": False}, token=admin)
    await api.post(f"join/{room}", {}, token=bob)
    # A room this server has never seen can be blocked ahead of time
    await api.put(V1 + "/rooms/!future:elsewhere.example/block", {"block": True}, token=admin)
    assert (await api.get(V1 + "/rooms/!future:elsewhere.example/block", token=admin))["block"] is True


async def _rows_for_room(hs: HomeServer, room_id: str, room_nid: int, event_ids: list[str]) -> dict[str, int]:
    """How many rows in every table still mention the room, by any column naming it."""
    tables = await hs.room_admin.store._columns()
    left: dict[str, int] = {}
    for table, cols in tables.items():
        if table in ("audit_log", "blocked_rooms"):
            continue
        for col, value in (("room_nid", room_nid), ("room_id", room_id)):
            if col in cols:
                row = await hs.db.fetchone(f"SELECT count(*) FROM {table} WHERE {col} = ?", (value,))
                if row and row[0]:
                    left[f"{table}.{col}"] = int(row[0])
        if "event_id" in cols and event_ids:
            marks = ",".join("?" * len(event_ids))
            row = await hs.db.fetchone(f"SELECT count(*) FROM {table} WHERE event_id IN ({marks})", event_ids)
            if row and row[0]:
                left[f"{table}.event_id"] = int(row[0])
    return left


async def _busy_room(api: Api) -> tuple[str, dict[str, str], list[str]]:
    """A room with members, messages, receipts, room account data, an alias and a report."""
    alice = await make_user(api, "alice")
    bob = await make_user(api, "bob")
    carol = await make_user(api, "carol")
    room = await make_room(api, alice, name="Bad room", preset="public_chat", room_alias_name="bad", visibility="public")
    await api.post(f"join/{room}", {}, token=bob)
    await api.post(f"rooms/{room}/invite", {"user_id": "@carol:test.local"}, token=alice)
    events = [await send_text(api, alice, room, f"message {i}", f"t{i}") for i in range(3)]
    await api.post(f"rooms/{room}/receipt/m.read/{events[-1]}", {}, token=bob)
    await api.put(f"user/@bob:test.local/rooms/{room}/account_data/org.example.x", {"a": 1}, token=bob)
    await api.post(f"rooms/{room}/report/{events[0]}", {"reason": "spam"}, token=bob)
    await api.put(f"rooms/{room}/typing/@bob:test.local", {"typing": True, "timeout": 30000}, token=bob)
    return room, {"alice": alice, "bob": bob, "carol": carol}, events


async def test_delete_v1_with_purge_removes_every_trace(api: Api) -> None:
    admin = await make_admin(api)
    room, tokens, events = await _busy_room(api)
    record = await api.hs.room_store.get_room(room)
    assert record is not None
    all_events = [r[0] for r in await api.hs.db.fetchall(
        "SELECT event_id FROM events WHERE room_nid = ?", (record.room_nid,))]
    assert await _rows_for_room(api.hs, room, record.room_nid, all_events)  # sanity: there is something
    # a sync before, so its caches hold the room
    assert room in (await api.get("sync", token=tokens["bob"]))["rooms"]["join"]
    result = await api.request("DELETE", V1 + f"/rooms/{room}", {"block": True}, token=admin)
    body = result[1]
    assert sorted(body["kicked_users"]) == ["@alice:test.local", "@bob:test.local", "@carol:test.local"]
    assert body["failed_to_kick_users"] == [] and body["local_aliases"] == ["#bad:test.local"]
    assert body["new_room_id"] is None
    assert await _rows_for_room(api.hs, room, record.room_nid, all_events) == {}
    # Gone from the API and from every user's view
    await api.request("GET", V1 + f"/rooms/{room}", token=admin, expect=404)
    assert (await api.get(V1 + "/rooms", token=admin))["total_rooms"] == 0
    for token in tokens.values():
        sync = await api.get("sync", token=token)
        assert room not in sync.get("rooms", {}).get("join", {})
        assert room not in sync.get("rooms", {}).get("invite", {})
        assert (await api.get("joined_rooms", token=token))["joined_rooms"] == []
    await api.request("GET", f"rooms/{room}/event/{events[0]}", token=tokens["alice"], expect=404)
    _, err = await api.request("GET", "directory/room/%23bad:test.local", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    assert (await api.get("publicRooms"))["chunk"] == []
    assert (await api.get(V1 + "/event_reports", token=admin))["total"] == 0
    # Blocked: even a room with the same ID cannot be joined or re-created through it
    assert (await api.get(V1 + f"/rooms/{room}/block", token=admin))["block"] is True
    # The server keeps working: new rooms, messages, sync
    fresh = await make_room(api, tokens["alice"])
    await send_text(api, tokens["alice"], fresh, "still alive", "after")


async def test_delete_without_purge_keeps_the_room(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    room = await make_room(api, alice)
    body = await api.request("DELETE", V1 + f"/rooms/{room}", {"purge": False}, token=admin)
    assert body[1]["kicked_users"] == ["@alice:test.local"]
    details = await api.get(V1 + f"/rooms/{room}", token=admin)
    assert details["joined_members"] == 0
    # and a purge later finds nobody left
    await api.request("DELETE", V1 + f"/rooms/{room}", {}, token=admin)
    await api.request("GET", V1 + f"/rooms/{room}", token=admin, expect=404)


async def test_delete_moves_users_to_a_notice_room(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    room = await make_room(api, alice, room_alias_name="moved")
    _, body = await api.request(
        "DELETE", V1 + f"/rooms/{room}",
        {"new_room_user_id": "@root:test.local", "room_name": "Closed", "message": "This room was closed."},
        token=admin,
    )
    new_room = body["new_room_id"]
    assert new_room and body["local_aliases"] == ["#moved:test.local"]
    assert (await api.get("joined_rooms", token=alice))["joined_rooms"] == [new_room]
    assert (await api.get("directory/room/%23moved:test.local"))["room_id"] == new_room
    messages = await api.get(f"rooms/{new_room}/messages?dir=b", token=alice)
    assert any(ev["content"].get("body") == "This room was closed." for ev in messages["chunk"])
    _, err = await api.request(
        "PUT", f"rooms/{new_room}/send/m.room.message/x", {"msgtype": "m.text", "body": "hey"},
        token=alice, expect=403,
    )
    _, err = await api.request(
        "DELETE", V1 + f"/rooms/{new_room}", {"new_room_user_id": "@x:elsewhere.example"}, token=admin, expect=400,
    )


async def test_delete_bad_input(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    room = await make_room(api, alice)
    for body in ({"block": "yes"}, {"purge": 1}, {"force_purge": "x"}, {"message": 5}):
        _, err = await api.request("DELETE", V1 + f"/rooms/{room}", body, token=admin, expect=400)
        assert err["errcode"] == "M_BAD_JSON", body
    await api.request("DELETE", V1 + "/rooms/!unknown:test.local", {}, token=admin, expect=400)
    _, err = await api.request("DELETE", V1 + "/rooms/nonsense", {}, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    # An unknown room can be blocked pre-emptively with v1
    body = (await api.request("DELETE", V1 + "/rooms/!unknown:test.local", {"block": True}, token=admin))[1]
    assert body == {"kicked_users": [], "failed_to_kick_users": [], "local_aliases": [], "new_room_id": None}
    # v2 needs a body ("{}" at least)
    _, err = await api.request("DELETE", V2 + f"/rooms/{room}", data=b"", token=admin, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    assert (await api.get(V1 + f"/rooms/{room}", token=admin))["joined_members"] == 1  # untouched


async def test_delete_v2_and_status(api: Api) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    room = await make_room(api, alice)
    delete_id = (await api.request("DELETE", V2 + f"/rooms/{room}", {}, token=admin))[1]["delete_id"]
    status = await api.get(V2 + f"/rooms/delete_status/{delete_id}", token=admin)
    assert status == {
        "delete_id": delete_id, "room_id": room, "status": "complete",
        "shutdown_room": {"kicked_users": ["@alice:test.local"], "failed_to_kick_users": [],
                          "local_aliases": [], "new_room_id": None},
    }
    by_room = await api.get(V2 + f"/rooms/{room}/delete_status", token=admin)
    assert by_room == {"results": [status]}
    await api.request("GET", V1 + f"/rooms/{room}", token=admin, expect=404)
    # A failing deletion is reported, not lost
    failed_id = (await api.request("DELETE", V2 + "/rooms/!ghost:test.local", {}, token=admin))[1]["delete_id"]
    failed = await api.get(V2 + f"/rooms/delete_status/{failed_id}", token=admin)
    assert failed["status"] == "failed" and "Unknown room" in failed["error"]
    _, err = await api.request("GET", V2 + "/rooms/delete_status/nope", token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    await api.request("GET", V2 + "/rooms/!never:test.local/delete_status", token=admin, expect=404)


async def test_purge_refuses_while_local_users_remain_unless_forced(api: Api) -> None:
    alice = await make_user(api, "alice")
    room = await make_room(api, alice)
    hs = api.hs
    with pytest.raises(Exception) as info:
        await hs.room_admin.purge(room)
    assert "still joined" in str(info.value)
    await hs.room_admin.purge(room, force=True)
    assert await hs.room_store.get_room(room) is None


async def test_purge_on_postgres(make_api, pg_dsn: str) -> None:  # noqa: ANN001
    api = await make_api(database={"engine": "postgres", "dsn": pg_dsn})
    admin = await make_admin(api)
    room, tokens, _ = await _busy_room(api)
    record = await api.hs.room_store.get_room(room)
    assert record is not None
    all_events = [r[0] for r in await api.hs.db.fetchall(
        "SELECT event_id FROM events WHERE room_nid = ?", (record.room_nid,))]
    body: dict[str, Any] = (await api.request("DELETE", V1 + f"/rooms/{room}", {}, token=admin))[1]
    assert len(body["kicked_users"]) == 3
    assert await _rows_for_room(api.hs, room, record.room_nid, all_events) == {}
    assert room not in (await api.get("sync", token=tokens["bob"])).get("rooms", {}).get("join", {})
