"""Client config: global and per-room account data over the API, the spec's errors,
the account data stream, and persistence across a restart."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.server import HomeServer
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, uid, user

ALICE = uid("alice")
ROOM = "!someroom:test.local"


def g(user_id: str, data_type: str) -> str:
    return f"user/{user_id}/account_data/{data_type}"


def r(user_id: str, room_id: str, data_type: str) -> str:
    return f"user/{user_id}/rooms/{room_id}/account_data/{data_type}"


async def test_global_round_trip_and_overwrite(api: Api) -> None:
    alice = await user(api, "alice")
    assert await api.put(g(ALICE, "org.example.config"), {"a": 1, "nested": {"b": [1, 2]}}, token=alice) == {}
    assert await api.get(g(ALICE, "org.example.config"), token=alice) == {"a": 1, "nested": {"b": [1, 2]}}
    await api.put(g(ALICE, "org.example.config"), {"a": 2}, token=alice)
    assert await api.get(g(ALICE, "org.example.config"), token=alice) == {"a": 2}
    # An empty object is a value like any other.
    await api.put(g(ALICE, "org.example.config"), {}, token=alice)
    assert await api.get(g(ALICE, "org.example.config"), token=alice) == {}


async def test_room_data_is_separate_from_global_and_other_rooms(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    await api.put(r(ALICE, room, "m.tag"), {"tags": {"u.work": {"order": 0.5}}}, token=alice)
    assert await api.get(r(ALICE, room, "m.tag"), token=alice) == {"tags": {"u.work": {"order": 0.5}}}
    # No inheritance either way, and no leaking into another room.
    for path in (g(ALICE, "m.tag"), r(ALICE, ROOM, "m.tag")):
        _, err = await api.request("GET", path, token=alice, expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
    await api.put(g(ALICE, "m.tag"), {"global": True}, token=alice)
    assert await api.get(r(ALICE, room, "m.tag"), token=alice) == {"tags": {"u.work": {"order": 0.5}}}
    # A room the server does not know (or the user is not in) may hold data too.
    await api.put(r(ALICE, ROOM, "org.example.x"), {"x": 1}, token=alice)
    assert await api.get(r(ALICE, ROOM, "org.example.x"), token=alice) == {"x": 1}


async def test_unset_is_not_found(api: Api) -> None:
    alice = await user(api, "alice")
    for path in (g(ALICE, "org.example.none"), r(ALICE, ROOM, "org.example.none"), g(ALICE, "m.fully_read")):
        _, err = await api.request("GET", path, token=alice, expect=404)
        assert err["errcode"] == "M_NOT_FOUND"


async def test_other_users_data_is_forbidden(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    await api.put(g(ALICE, "org.example.secret"), {"s": 1}, token=alice)
    await api.put(r(ALICE, ROOM, "org.example.secret"), {"s": 1}, token=alice)
    for method, path in (
        ("GET", g(ALICE, "org.example.secret")), ("PUT", g(ALICE, "org.example.secret")),
        ("GET", r(ALICE, ROOM, "org.example.secret")), ("PUT", r(ALICE, ROOM, "org.example.secret")),
        ("GET", g("@nobody:elsewhere.example", "x")), ("PUT", g("not-a-user-id", "x")),
    ):
        _, err = await api.request(method, path, {"s": 2} if method == "PUT" else None, token=bob, expect=403)
        assert err["errcode"] == "M_FORBIDDEN", (method, path)
    assert await api.get(g(ALICE, "org.example.secret"), token=alice) == {"s": 1}
    _, err = await api.request("GET", g(ALICE, "org.example.secret"), expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


@pytest.mark.parametrize("data_type", ["m.fully_read", "m.push_rules"])
async def test_server_managed_types_are_refused(api: Api, data_type: str) -> None:
    alice = await user(api, "alice")
    for path in (g(ALICE, data_type), r(ALICE, ROOM, data_type)):
        _, err = await api.request("PUT", path, {"event_id": "$x"}, token=alice, expect=405)
        assert err["errcode"] == "M_BAD_JSON"
        _, err = await api.request("GET", path, token=alice, expect=404)  # reading is allowed
        assert err["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("room_id", ["@notaroom:test.local", "!", "!room:bad_server!", "nope", "!a b:test.local"])
async def test_invalid_room_ids(api: Api, room_id: str) -> None:
    alice = await user(api, "alice")
    for method in ("GET", "PUT"):
        _, err = await api.request(method, r(ALICE, room_id, "org.example.x"), {} if method == "PUT" else None,
                                   token=alice, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", (method, room_id)


async def test_room_ids_of_every_room_version_are_valid(api: Api) -> None:
    alice = await user(api, "alice")
    for version in ("10", "11", "12"):
        room = await create(api, alice, room_version=version)
        await api.put(r(ALICE, room, "org.example.x"), {"v": version}, token=alice)
        assert await api.get(r(ALICE, room, "org.example.x"), token=alice) == {"v": version}


@pytest.mark.parametrize(("data", "errcode"), [(b"", "M_NOT_JSON"), (b"{oops", "M_NOT_JSON"),
                                               (b"[1, 2]", "M_BAD_JSON"), (b'"text"', "M_BAD_JSON")])
async def test_body_must_be_a_json_object(api: Api, data: bytes, errcode: str) -> None:
    alice = await user(api, "alice")
    for path in (g(ALICE, "org.example.x"), r(ALICE, ROOM, "org.example.x")):
        _, err = await api.request("PUT", path, data=data, token=alice, expect=400)
        assert err["errcode"] == errcode
    _, err = await api.request("GET", g(ALICE, "org.example.x"), token=alice, expect=404)


async def test_stream_positions_and_changes(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    service = api.hs.account_data
    seen: list[tuple[str, str, str, int]] = []
    service.listeners.append(lambda *args: seen.append(args))
    start = await service.current_position()
    await api.put(g(ALICE, "a"), {"n": 1}, token=alice)
    await api.put(r(ALICE, ROOM, "b"), {"n": 2}, token=alice)
    await api.put(g(uid("bob"), "a"), {"n": 3}, token=bob)
    await api.put(g(ALICE, "a"), {"n": 4}, token=alice)
    assert [s[3] for s in seen] == [start + 1, start + 2, start + 3, start + 4]
    assert [s[:3] for s in seen] == [(ALICE, "", "a"), (ALICE, ROOM, "b"), (uid("bob"), "", "a"), (ALICE, "", "a")]
    assert await service.current_position() == start + 4
    changes = await service.changes(ALICE, start)
    assert [(c.room_id, c.data_type, c.content) for c in changes] == [(ROOM, "b", {"n": 2}), ("", "a", {"n": 4})]
    assert await service.changes(ALICE, start + 4) == []
    assert [c.data_type for c in await service.changes(ALICE, start, start + 2)] == ["b"]


async def test_concurrent_writes_keep_the_last(api: Api) -> None:
    import asyncio

    alice = await user(api, "alice")
    await asyncio.gather(*(api.put(g(ALICE, "org.example.n"), {"n": i}, token=alice) for i in range(20)))
    final = await api.get(g(ALICE, "org.example.n"), token=alice)
    # Whatever order they landed in, the cache and the database agree.
    stored = await api.hs.account_data.store.get(ALICE, "", "org.example.n")
    assert final == stored
    changes = await api.hs.account_data.changes(ALICE, 0)
    assert [c.content for c in changes] == [final]


async def test_persists_across_restart(make_hs: Any) -> None:
    hs: HomeServer = await make_hs()
    await hs.account_data.set_global(ALICE, "org.example.keep", {"k": True})
    pos = await hs.account_data.set_room(ALICE, ROOM, "org.example.keep", {"r": 1})
    await hs.stop()
    again: HomeServer = await make_hs()
    assert await again.account_data.get_global(ALICE, "org.example.keep") == {"k": True}
    assert await again.account_data.get_room(ALICE, ROOM, "org.example.keep") == {"r": 1}
    # The stream continues after the last position written, never reusing one.
    assert await again.account_data.current_position() == pos
    assert await again.account_data.set_global(ALICE, "x", {}) == pos + 1


async def test_sync_sees_account_data(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    await api.put(g(ALICE, "org.example.a"), {"a": 1}, token=alice)
    await api.put(r(ALICE, room, "org.example.r"), {"r": 1}, token=alice)
    service = api.hs.account_data
    # Position 0 is an initial sync, which also carries m.push_rules (tests/homeserver/api/test_push_rules.py).
    initial = await service.global_changes_since(ALICE, 0)
    assert [e for e in initial if e["type"] != "m.push_rules"] == [{"type": "org.example.a", "content": {"a": 1}}]
    assert await service.room_changes_since(ALICE, room, 0) == [{"type": "org.example.r", "content": {"r": 1}}]
    pos = await service.current_position()
    assert await service.global_changes_since(ALICE, pos) == []
    await api.put(g(ALICE, "org.example.a"), {"a": 2}, token=alice)
    assert await service.global_changes_since(ALICE, pos) == [{"type": "org.example.a", "content": {"a": 2}}]
    assert await service.room_changes_since(ALICE, room, pos) == []
    body = await api.get("sync", token=alice)
    assert {"type": "org.example.a", "content": {"a": 2}} in body["account_data"]["events"]
    assert {"type": "org.example.r", "content": {"r": 1}} in body["rooms"]["join"][room]["account_data"]["events"]


async def test_a_change_wakes_a_waiting_sync(api: Api) -> None:
    import asyncio
    import time

    alice = await user(api, "alice")
    since = (await api.get("sync", token=alice))["next_batch"]
    started = time.monotonic()
    waiting = asyncio.ensure_future(api.get(f"sync?since={since}&timeout=20000", token=alice))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await api.put(g(ALICE, "org.example.wake"), {"w": 1}, token=alice)
    body = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 5
    assert body["account_data"]["events"] == [{"type": "org.example.wake", "content": {"w": 1}}]
