"""GET /sync?use_state_after=true (v1.16, MSC4222): `state_after` carries the state
changes up to the timeline's end, timeline events included, and `state` is omitted."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, put_state, send, uid, user


def _state(entry: dict[str, Any]) -> dict[tuple[str, str], str]:
    assert "state" not in entry
    return {(e["type"], e["state_key"]): e["event_id"] for e in entry["state_after"]["events"]}


async def _sync(api: Api, token: str, since: str | None = None, **params: str) -> dict[str, Any]:
    query = {"use_state_after": "true", **params}
    if since is not None:
        query["since"] = since
    return await api.get("sync?" + "&".join(f"{k}={quote(v)}" for k, v in query.items()), token=token)


async def test_initial_and_incremental(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice, name="First")
    first = await _sync(api, alice)
    entry = first["rooms"]["join"][room]
    state = _state(entry)
    # All the state at the timeline's end, also what the timeline itself holds.
    timeline_ids = {e["event_id"] for e in entry["timeline"]["events"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", uid("alice"))} <= set(state)
    assert timeline_ids & set(state.values())
    # Without the parameter, `state` as before, and no state_after.
    plain = (await api.get("sync", token=alice))["rooms"]["join"][room]
    assert "state_after" not in plain and "state" in plain

    # A message alone: state_after is there, empty.
    await send(api, room, alice, "hello")
    second = await _sync(api, alice, first["next_batch"])
    assert _state(second["rooms"]["join"][room]) == {}
    # A new name inside the timeline: in state_after too (the client reads state from it alone).
    renamed = await put_state(api, room, alice, "m.room.name", {"name": "Second"})
    await send(api, room, alice, "after the rename")
    third = await _sync(api, alice, second["next_batch"])
    entry = third["rooms"]["join"][room]
    assert renamed in {e["event_id"] for e in entry["timeline"]["events"]}
    assert _state(entry) == {("m.room.name", ""): renamed}


async def test_limited_timeline_keeps_early_state(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    first = await _sync(api, alice)
    topic = await put_state(api, room, alice, "m.room.topic", {"topic": "early"})
    for i in range(5):
        await send(api, room, alice, f"m{i}")
    later = await _sync(api, alice, first["next_batch"], filter=json.dumps({"room": {"timeline": {"limit": 2}}}))
    entry = later["rooms"]["join"][room]
    assert entry["timeline"]["limited"] is True
    assert topic not in {e["event_id"] for e in entry["timeline"]["events"]}
    assert _state(entry) == {("m.room.topic", ""): topic}


async def test_joins_and_leaves(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat", name="Pub")
    before = await _sync(api, bob)
    await api.post(f"join/{room}", {}, token=bob)
    joined = await _sync(api, bob, before["next_batch"])
    # Newly joined: the whole state, the room's name included.
    assert ("m.room.name", "") in _state(joined["rooms"]["join"][room])
    await put_state(api, room, alice, "m.room.topic", {"topic": "while bob is here"})
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    left = await _sync(api, bob, joined["next_batch"])
    state = _state(left["rooms"]["leave"][room])
    assert ("m.room.topic", "") in state and state[("m.room.member", uid("bob"))]


async def test_lazy_loaded_members(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    for token in (bob, carol):
        await api.post(f"join/{room}", {}, token=token)
    await send(api, room, bob, "from bob")
    lazy = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}})
    entry = (await _sync(api, alice, filter=lazy))["rooms"]["join"][room]
    members = {k[1] for k in _state(entry) if k[0] == "m.room.member"}
    assert members == {uid("alice"), uid("bob")}  # the sender and the user, not carol
