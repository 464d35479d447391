"""Room tags: GET/PUT/DELETE /user/{userId}/rooms/{roomId}/tags[/{tag}], their
validation, that only the user themself may use them, and that they reach /sync
as the room's m.tag account data."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, uid, user

ALICE = uid("alice")


def tags_path(user_id: str, room_id: str, tag: str | None = None) -> str:
    path = f"user/{user_id}/rooms/{room_id}/tags"
    return path + f"/{tag}" if tag is not None else path


def room_account_data(sync: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    return sync.get("rooms", {}).get("join", {}).get(room_id, {}).get("account_data", {}).get("events", [])


async def test_add_list_and_remove_tags(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    assert await api.get(tags_path(ALICE, room), token=alice) == {"tags": {}}
    assert await api.put(tags_path(ALICE, room, "m.favourite"), {"order": 0.25}, token=alice) == {}
    await api.put(tags_path(ALICE, room, "u.Work"), {}, token=alice)
    await api.put(tags_path(ALICE, room, "u.Edges"), {"order": 1}, token=alice)
    await api.put(tags_path(ALICE, room, "u.Zero"), {"order": 0}, token=alice)
    assert await api.get(tags_path(ALICE, room), token=alice) == {
        "tags": {"m.favourite": {"order": 0.25}, "u.Work": {}, "u.Edges": {"order": 1}, "u.Zero": {"order": 0}}
    }
    # Setting a tag again replaces its object.
    await api.put(tags_path(ALICE, room, "m.favourite"), {"order": 0.5}, token=alice)
    assert (await api.get(tags_path(ALICE, room), token=alice))["tags"]["m.favourite"] == {"order": 0.5}
    assert await api.request("DELETE", tags_path(ALICE, room, "u.Work"), token=alice) == (200, {})
    # Removing a tag the room does not have is not an error.
    await api.request("DELETE", tags_path(ALICE, room, "u.Missing"), token=alice)
    assert set((await api.get(tags_path(ALICE, room), token=alice))["tags"]) == {"m.favourite", "u.Edges", "u.Zero"}
    # They are the room's m.tag account data.
    data = await api.get(f"user/{ALICE}/rooms/{room}/account_data/m.tag", token=alice)
    assert data == await api.get(tags_path(ALICE, room), token=alice)


async def test_invalid_tags_are_refused(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    for body in ({"order": 1.5}, {"order": -0.1}, {"order": "0.5"}, {"order": True}, {"order": None}):
        _, err = await api.request("PUT", tags_path(ALICE, room, "u.x"), body, token=alice, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", body
    _, err = await api.request("PUT", tags_path(ALICE, room, "u." + "x" * 254), {}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    # 255 bytes (multi-byte characters count as their bytes) is the limit.
    await api.put(tags_path(ALICE, room, "u." + "x" * 253), {}, token=alice)
    _, err = await api.request("PUT", tags_path(ALICE, room, "u." + "é" * 127), {}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("PUT", tags_path(ALICE, room, "u.x"), data="[1]", token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("GET", tags_path(ALICE, "not-a-room"), token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    assert await api.get(tags_path(ALICE, room), token=alice) == {"tags": {"u." + "x" * 253: {}}}


async def test_only_the_user_themself(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    room = await create(api, alice)
    await api.put(tags_path(ALICE, room, "u.secret"), {}, token=alice)
    for method, path in (
        ("GET", tags_path(ALICE, room)),
        ("PUT", tags_path(ALICE, room, "u.bob")),
        ("DELETE", tags_path(ALICE, room, "u.secret")),
    ):
        _, err = await api.request(method, path, {} if method == "PUT" else None, token=bob, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("GET", tags_path(ALICE, room), expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert await api.get(tags_path(ALICE, room), token=alice) == {"tags": {"u.secret": {}}}


async def test_tags_appear_in_sync(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    await api.put(tags_path(ALICE, room, "m.favourite"), {"order": 0.1}, token=alice)
    first = await api.get("sync", token=alice)
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.1}}}} in room_account_data(first, room)
    await api.put(tags_path(ALICE, room, "m.lowpriority"), {}, token=alice)
    later = await api.get(f"sync?since={first['next_batch']}&timeout=0", token=alice)
    assert room_account_data(later, room) == [
        {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.1}, "m.lowpriority": {}}}}
    ]
    await api.request("DELETE", tags_path(ALICE, room, "m.favourite"), token=alice)
    last = await api.get(f"sync?since={later['next_batch']}&timeout=0", token=alice)
    assert room_account_data(last, room) == [{"type": "m.tag", "content": {"tags": {"m.lowpriority": {}}}}]
