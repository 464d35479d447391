"""Simplified sliding sync (MSC4186) over the client API, on a real server and
database: lists and their order, what an incremental response carries,
required_state, filters, subscriptions, extensions, long-polling and positions."""

from __future__ import annotations

import asyncio
import copy
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.conftest import Api, running_api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    leave,
    put_state,
    room_with_bob,
    send,
    uid,
    user,
)

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


async def ss(api: Api, token: str, body: dict[str, Any], pos: str | None = None, *, wait_ms: int = 0, expect: int = 200) -> Any:
    q = f"?timeout={wait_ms}" + (f"&pos={quote(pos)}" if pos else "")
    return (await api.request("POST", PATH + q, body, token=token, expect=expect))[1]


def window(n: int = 20, limit: int = 5, **extra: Any) -> dict[str, Any]:
    return {"lists": {"all": {"ranges": [[0, n - 1]], "timeline_limit": limit, "required_state": [], **extra}}}


def ids(body: dict[str, Any], name: str = "all") -> list[str]:
    return body["lists"][name]["ops"][0]["room_ids"]


async def test_list_is_ordered_by_recency_and_a_message_moves_its_room_to_the_top(
    tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]
) -> None:
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        await _recency_and_moves(api)


async def _recency_and_moves(api: Api) -> None:
    alice = await user(api, "alice")
    rooms = [await create(api, alice, name=f"room {i}") for i in range(4)]
    await send(api, rooms[1], alice, "newest")
    first = await ss(api, alice, window(3))
    assert first["lists"]["all"]["count"] == 4
    assert first["lists"]["all"]["ops"][0]["op"] == "SYNC" and first["lists"]["all"]["ops"][0]["range"] == [0, 2]
    assert ids(first) == [rooms[1], rooms[3], rooms[2]]
    entry = first["rooms"][rooms[1]]
    assert entry["initial"] is True and entry["name"] == "room 1"
    assert entry["timeline"][-1]["content"]["body"] == "newest" and "room_id" not in entry["timeline"][-1]
    assert entry["joined_count"] == 1 and entry["invited_count"] == 0 and entry["limited"] is True
    assert entry["bump_stamp"] == max(e["bump_stamp"] for e in first["rooms"].values())
    # prev_batch pages on with /messages.
    older = await api.get(f"rooms/{rooms[1]}/messages?dir=b&limit=50&from={entry['prev_batch']}", token=alice)
    assert older["chunk"] and older["chunk"][-1]["type"] == "m.room.create"
    # A message in a room outside the window moves it to the top; only it is sent.
    await send(api, rooms[0], alice, "hello")
    second = await ss(api, alice, window(3), first["pos"])
    assert ids(second)[0] == rooms[0]
    assert set(second["rooms"]) == {rooms[0]}
    assert second["rooms"][rooms[0]]["initial"] is True  # never sent on this connection before
    # Nothing new: nothing sent, and the position stays valid.
    third = await ss(api, alice, window(3), second["pos"])
    assert third["rooms"] == {}
    # A new message in a room already sent: only what is new, not initial.
    await send(api, rooms[0], alice, "again")
    fourth = await ss(api, alice, window(3), third["pos"])
    live = fourth["rooms"][rooms[0]]
    assert "initial" not in live and [e["content"]["body"] for e in live["timeline"]] == ["again"]
    assert live["num_live"] == 1 and live["limited"] is False and "name" not in live


async def test_a_room_left_behind_outside_the_window_gets_its_missed_events(api: Api) -> None:
    alice = await user(api, "alice")
    a = await create(api, alice)
    b = await create(api, alice)
    first = await ss(api, alice, window(1, limit=10))
    assert ids(first) == [b]
    await send(api, a, alice, "one")  # a goes to the top, b is now outside the window
    second = await ss(api, alice, window(1, limit=10), first["pos"])
    assert ids(second) == [a]
    await send(api, b, alice, "missed")  # b has news while a is shown
    await send(api, a, alice, "two")
    third = await ss(api, alice, window(1, limit=10), second["pos"])
    assert ids(third) == [a]
    await send(api, b, alice, "back")
    fourth = await ss(api, alice, window(1, limit=10), third["pos"])
    assert ids(fourth) == [b]
    bodies = [e["content"].get("body") for e in fourth["rooms"][b]["timeline"]]
    assert bodies[-2:] == ["missed", "back"] and "initial" not in fourth["rooms"][b]


async def test_required_state_wildcards_me_and_lazy_members(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    await put_state(api, room, alice, "m.room.topic", {"topic": "t"})
    await send(api, room, bob, "from bob")
    body = await ss(api, alice, window(limit=1, required_state=[["m.room.member", "$LAZY"], ["m.room.topic", ""]]))
    state = {(e["type"], e["state_key"]) for e in body["rooms"][room]["required_state"]}
    assert state == {("m.room.member", uid("bob")), ("m.room.topic", "")}
    body = await ss(api, alice, window(required_state=[["m.room.member", "$ME"]]))
    assert {e["state_key"] for e in body["rooms"][room]["required_state"]} == {uid("alice")}
    body = await ss(api, alice, window(required_state=[["*", "*"]]))
    types = {e["type"] for e in body["rooms"][room]["required_state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.member", "m.room.topic"} <= types
    body = await ss(api, alice, window(required_state=[["m.room.member", "*"]]))
    assert {e["state_key"] for e in body["rooms"][room]["required_state"]} == {uid("alice"), uid("bob")}
    # Incremental: a lazy member already sent is not sent again; a new sender's is.
    carol = await user(api, "carol")
    lazy = window(limit=5, required_state=[["m.room.member", "$LAZY"]])
    first = await ss(api, alice, lazy)
    await send(api, room, bob, "bob again")
    second = await ss(api, alice, lazy, first["pos"])
    assert "required_state" not in second["rooms"][room]
    await invite(api, room, alice, "carol")
    await join(api, room, carol)
    await send(api, room, carol, "hi from carol")
    third = await ss(api, alice, lazy, second["pos"])
    assert uid("carol") in {e["state_key"] for e in third["rooms"][room]["required_state"]}
    assert third["rooms"][room]["joined_count"] == 3


async def test_heroes_for_a_room_without_a_name(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    await api.put(f"profile/{uid('bob')}/displayname", {"displayname": "Bob B"}, token=bob)
    body = await ss(api, alice, window())
    entry = body["rooms"][room]
    assert "name" not in entry
    assert entry["heroes"] == [{"user_id": uid("bob"), "displayname": "Bob B"}]


async def test_filters_invites_dm_encrypted_room_types_tags_and_spaces(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    plain = await create(api, alice)
    encrypted = await create(api, alice, initial_state=[{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    space = await create(api, alice, creation_content={"type": "m.space"})
    await put_state(api, space, alice, "m.space.child", {"via": ["test.local"]}, plain)
    dm = await create(api, bob, is_direct=True, invite=[uid("alice")])
    await api.put(f"user/{uid('alice')}/account_data/m.direct", {uid("bob"): [dm]}, token=alice)
    await api.put(f"user/{uid('alice')}/rooms/{encrypted}/tags/m.favourite", {"order": 0.5}, token=alice)

    def listed(**filters: Any) -> dict[str, Any]:
        return {"lists": {"l": {"ranges": [[0, 9]], "timeline_limit": 0, "required_state": [], "filters": filters}}}

    async def rooms_for(**filters: Any) -> set[str]:
        return set((await ss(api, alice, listed(**filters)))["lists"]["l"]["ops"][0]["room_ids"])

    assert await rooms_for(is_invite=True) == {dm}
    assert await rooms_for(is_dm=True) == {dm}
    assert await rooms_for(is_encrypted=True) == {encrypted}
    assert await rooms_for(room_types=["m.space"]) == {space}
    assert await rooms_for(not_room_types=["m.space"]) == {plain, encrypted, dm}
    assert await rooms_for(room_types=[None]) == {plain, encrypted, dm}
    assert await rooms_for(tags=["m.favourite"]) == {encrypted}
    assert await rooms_for(not_tags=["m.favourite"]) == {plain, space, dm}
    assert await rooms_for(spaces=[space]) == {plain}
    body = await ss(api, alice, listed(is_invite=True))
    entry = body["rooms"][dm]
    assert entry["is_dm"] is True and "timeline" not in entry
    assert {e["type"] for e in entry["invite_state"]} >= {"m.room.create", "m.room.member"}


async def test_room_subscription_gets_its_timeline_and_others_are_ignored(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    other = await create(api, bob)  # alice is not in it
    await send(api, room, bob, "hello")
    body = await ss(api, alice, {"room_subscriptions": {room: {"timeline_limit": 2, "required_state": [["m.room.create", ""]]}, other: {"timeline_limit": 2, "required_state": []}}, "unsubscribe_rooms": []})
    assert set(body["rooms"]) == {room}
    assert body["rooms"][room]["timeline"][-1]["content"]["body"] == "hello"
    assert [e["type"] for e in body["rooms"][room]["required_state"]] == ["m.room.create"]
    assert "lists" not in body


async def test_unknown_and_invalid_positions_and_bodies(api: Api) -> None:
    alice = await user(api, "alice")
    await create(api, alice)
    first = await ss(api, alice, window())
    conn, _, token = first["pos"].partition("/")
    err = await ss(api, alice, window(), f"{int(conn) + 1000}/{token}", expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"
    # Another connection's position is not this one's.
    err = await ss(api, alice, {**window(), "conn_id": "other"}, first["pos"], expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"
    # A retried request (its answer lost) is answered again from the same position.
    again = await ss(api, alice, window(), first["pos"])
    again2 = await ss(api, alice, window(), first["pos"])
    assert again["rooms"] == again2["rooms"] == {}
    for bad in ("nonsense", "1/x", "/s1"):
        err = await ss(api, alice, window(), bad, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"
    for body in (
        {"lists": []},
        {"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": "5", "required_state": []}}},
        {"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 5001, "required_state": []}}},
        {"lists": {"a": {"ranges": [[0, -1]], "timeline_limit": 1, "required_state": []}}},
        {"lists": {"a": {"ranges": [[0, 1]], "timeline_limit": 1, "required_state": [["a"]]}}},
        {"lists": {"x" * 65: {"ranges": [[0, 1]], "timeline_limit": 1, "required_state": []}}},
        {"extensions": {"to_device": {"enabled": True, "since": "abc"}}},
        {"room_subscriptions": {"!a:b": 3}},
    ):
        err = await ss(api, alice, body, expect=400)
        assert err["errcode"] == "M_BAD_JSON", body
    err = await ss(api, alice, {**window(), "conn_id": "c" * 256}, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    for ranges in ([[5, 1]], [[0, 1]] * 11, [[0, 20_000]]):
        err = await ss(api, alice, {"lists": {"a": {"ranges": ranges, "timeline_limit": 1, "required_state": []}}}, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"
    # Unknown extensions and fields are ignored.
    await ss(api, alice, {**window(), "extensions": {"unknown": {"enabled": True}}, "whatever": 1})


async def test_long_poll_wakes_on_a_message(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    first = await ss(api, alice, window())
    waiting = asyncio.create_task(ss(api, alice, window(), first["pos"], wait_ms=30_000))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await send(api, room, bob, "wake up")
    body = await asyncio.wait_for(waiting, 20)
    assert body["rooms"][room]["timeline"][-1]["content"]["body"] == "wake up"
    # Timing out with nothing new: an empty answer with a position still valid.
    quiet = await ss(api, alice, window(), body["pos"], wait_ms=100)
    assert quiet["rooms"] == {}
    await ss(api, alice, window(), quiet["pos"])


async def test_extensions_to_device_e2ee_account_data_typing_receipts(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    await create(api, alice)  # a second room, outside the typing scope below
    ext = {
        "to_device": {"enabled": True},
        "e2ee": {"enabled": True},
        "account_data": {"enabled": True},
        "receipts": {"enabled": True},
        "typing": {"enabled": True, "rooms": [room], "lists": []},
    }
    alice_dev = (await api.get("account/whoami", token=alice))["device_id"]
    first = await ss(api, alice, {**window(), "extensions": ext})
    e = first["extensions"]
    assert e["to_device"]["events"] == [] and e["to_device"]["next_batch"]
    assert e["e2ee"]["device_one_time_keys_count"] == {"signed_curve25519": 0} and "device_lists" not in e["e2ee"]
    assert any(g["type"] == "m.push_rules" for g in e["account_data"]["global"])
    assert e["typing"] == {"rooms": {}}
    # Changes arrive through each extension.
    await api.put("sendToDevice/m.test/t1", {"messages": {uid("alice"): {alice_dev: {"n": 1}}}}, token=bob)
    await api.put(f"user/{uid('alice')}/account_data/m.custom", {"a": 1}, token=alice)
    await api.put(f"user/{uid('alice')}/rooms/{room}/account_data/m.room.custom", {"b": 2}, token=alice)
    await api.put(f"rooms/{room}/typing/{uid('bob')}", {"typing": True, "timeout": 30000}, token=bob)
    event_id = await send(api, room, bob, "read me")
    await api.post(f"rooms/{room}/receipt/m.read/{event_id}", {}, token=bob)
    await api.post("keys/upload", {}, token=bob)  # nothing: bob's device list does not change
    body = {**window(), "extensions": {**ext, "to_device": {"enabled": True, "since": e["to_device"]["next_batch"]}}}
    second = await ss(api, alice, body, first["pos"])
    e2 = second["extensions"]
    assert [m["content"] for m in e2["to_device"]["events"]] == [{"n": 1}]
    assert e2["account_data"]["global"] == [{"type": "m.custom", "content": {"a": 1}}]
    assert e2["account_data"]["rooms"] == {room: [{"type": "m.room.custom", "content": {"b": 2}}]}
    assert e2["typing"]["rooms"][room]["content"]["user_ids"] == [uid("bob")]
    assert uid("bob") in e2["receipts"]["rooms"][room]["content"][event_id]["m.read"]
    assert e2["e2ee"]["device_lists"] == {"changed": [], "left": []}
    # Acknowledged by `since`: not sent again.
    third = await ss(api, alice, {**body, "extensions": {**ext, "to_device": {"enabled": True, "since": e2["to_device"]["next_batch"]}}}, second["pos"])
    assert third["extensions"]["to_device"]["events"] == []
    # A new login of bob's changes his device list, which alice shares a room with.
    await api.login("bob")
    fourth = await ss(api, alice, body, third["pos"])
    assert uid("bob") in fourth["extensions"]["e2ee"]["device_lists"]["changed"]


async def test_leaving_sends_the_leave_then_drops_the_room(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    first = await ss(api, bob, window())
    assert room in ids(first)
    await leave(api, room, bob)
    second = await ss(api, bob, window(), first["pos"])
    assert room in ids(second)
    assert second["rooms"][room]["timeline"][-1]["content"]["membership"] == "leave"
    await send(api, room, alice, "bob must not see this")
    fresh = await ss(api, bob, window())
    assert room not in ids(fresh)


async def test_extension_news_of_a_room_outside_the_window_arrives_when_it_is_shown(api: Api) -> None:
    alice, bob, a = await room_with_bob(api)
    b = await create(api, alice)
    await invite(api, b, alice, "bob")
    await join(api, b, bob)
    ext = {"account_data": {"enabled": True}, "receipts": {"enabled": True}}
    body = {**window(1), "extensions": ext}
    await send(api, b, bob, "b first")
    first = await ss(api, alice, body)
    assert ids(first) == [b]
    await send(api, a, bob, "a moves up")
    second = await ss(api, alice, body, first["pos"])
    assert ids(second) == [a]
    # While b is outside the window: its account data and a receipt in it change.
    await api.put(f"user/{uid('alice')}/rooms/{b}/account_data/m.room.note", {"n": 1}, token=alice)
    read = await send(api, b, bob, "b again")
    await api.post(f"rooms/{b}/receipt/m.read/{read}", {}, token=bob)
    await send(api, a, bob, "a stays up")
    third = await ss(api, alice, body, second["pos"])
    assert ids(third) == [a] and b not in third["extensions"]["account_data"]["rooms"]
    assert b not in third["extensions"]["receipts"]["rooms"]
    # b comes back into the window: what it missed arrives, once.
    await send(api, b, bob, "b back")
    fourth = await ss(api, alice, body, third["pos"])
    assert ids(fourth) == [b]
    assert fourth["extensions"]["account_data"]["rooms"][b] == [{"type": "m.room.note", "content": {"n": 1}}]
    assert uid("bob") in fourth["extensions"]["receipts"]["rooms"][b]["content"][read]["m.read"]
    assert [e["content"]["body"] for e in fourth["rooms"][b]["timeline"]][-2:] == ["b again", "b back"]
    fifth = await ss(api, alice, body, fourth["pos"])
    assert fifth["extensions"]["account_data"]["rooms"] == {} and fifth["extensions"]["receipts"]["rooms"] == {}


async def test_a_room_shown_first_gets_the_receipts_of_its_timeline_and_the_users_own(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    old = await send(api, room, alice, "old")
    await api.post(f"rooms/{room}/receipt/m.read/{old}", {}, token=bob)
    await api.post(f"rooms/{room}/receipt/m.read/{old}", {}, token=alice)
    latest = await send(api, room, bob, "latest")
    await api.post(f"rooms/{room}/receipt/m.read.private/{latest}", {}, token=bob)  # never shown to alice
    body = await ss(api, alice, {**window(limit=1), "extensions": {"receipts": {"enabled": True}}})
    content = body["extensions"]["receipts"]["rooms"][room]["content"]
    assert content == {old: {"m.read": {uid("alice"): content[old]["m.read"][uid("alice")]}}}
    await api.post(f"rooms/{room}/receipt/m.read/{latest}", {}, token=bob)
    later = await ss(api, alice, {**window(limit=1), "extensions": {"receipts": {"enabled": True}}}, body["pos"])
    assert list(later["extensions"]["receipts"]["rooms"][room]["content"][latest]["m.read"]) == [uid("bob")]


async def test_mangled_bodies_get_a_client_error_never_a_server_error(api: Api) -> None:
    """Every value of a full request replaced, one at a time, by values of other types
    and by edge values: each answer is 200 or a 4xx with an errcode."""
    alice, bob, room = await room_with_bob(api)
    await create(api, alice, creation_content={"type": "m.space"})
    full: dict[str, Any] = {
        "conn_id": "c",
        "lists": {"l": {
            "ranges": [[0, 5]], "timeline_limit": 3, "required_state": [["*", "$ME"], ["m.room.member", "$LAZY"]],
            "filters": {"is_dm": False, "spaces": [room], "is_encrypted": False, "is_invite": False,
                        "room_types": [None, "m.space"], "not_room_types": ["x"], "tags": ["t"], "not_tags": ["u"]},
        }},
        "room_subscriptions": {room: {"timeline_limit": 1, "required_state": [["*", "*"], ["m.room.member", "@x:y"]]}},
        "extensions": {
            "to_device": {"enabled": True, "since": "0", "limit": 5}, "e2ee": {"enabled": True},
            "account_data": {"enabled": True, "lists": ["l", "nope"], "rooms": ["*"]},
            "receipts": {"enabled": True, "lists": ["*"], "rooms": []},
            "typing": {"enabled": True, "lists": [], "rooms": [room, "!nope:x"]},
        },
    }
    weird: list[Any] = [None, True, 0, -1, 2**63, 1.5, "", "*", "$LAZY", [], [None], [[0, 0]], {}, {"a": 1}, ["*"]]

    def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        out = [prefix] if prefix else []
        if isinstance(obj, dict):
            for k, v in obj.items():
                out += paths(v, (*prefix, k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                out += paths(v, (*prefix, i))
        return out

    rng = random.Random(4186)
    first = await ss(api, alice, full)
    for path in paths(full):
        for value in rng.sample(weird, 4):
            body = copy.deepcopy(full)
            target = body
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            status, answer = await api.request("POST", PATH + f"?pos={quote(first['pos'])}", body, token=alice, expect=None)
            assert status == 200 or (400 <= status < 500 and "errcode" in answer), (path, value, status, answer)


async def test_to_device_pages_by_limit_and_since(tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]) -> None:
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        await _to_device_pages(api)


async def _to_device_pages(api: Api) -> None:
    alice, bob, _ = await room_with_bob(api)
    device = (await api.get("account/whoami", token=alice))["device_id"]
    for n in range(3):
        await api.put(f"sendToDevice/m.test/p{n}", {"messages": {uid("alice"): {device: {"n": n}}}}, token=bob)

    async def page(since: str | None) -> dict[str, Any]:
        ext = {"to_device": {"enabled": True, "limit": 2, **({"since": since} if since else {})}}
        return dict((await ss(api, alice, {"extensions": ext}))["extensions"]["to_device"])

    first = await page(None)
    assert [e["content"]["n"] for e in first["events"]] == [0, 1]
    second = await page(first["next_batch"])
    assert [e["content"]["n"] for e in second["events"]] == [2]
    # A retried page (its answer lost) is served again: only `since` acknowledges.
    assert [e["content"]["n"] for e in (await page(first["next_batch"]))["events"]] == [2]
    assert (await page(second["next_batch"]))["events"] == []
