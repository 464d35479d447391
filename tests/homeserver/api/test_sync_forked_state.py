"""/sync's `state` when the state before the timeline plus the timeline's events do
not add up to the room's state: a timeline filter hides a membership inside the
timeline's range, or the timeline sits on a branch of the room's DAG that lacks
some of the room's state (an event another server built before it saw ours). The
syncing user's own membership, and every member without lazy loading, are still
sent, so state plus timeline gives the room as it is (as Synapse does)."""

from __future__ import annotations

import json
from typing import Any

from homeserver.records.rooms import RoomRecord
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, join, put_state, send, uid, user
from tests.homeserver.remote_events import REMOTE_USER, receive, remote_event


def _entry(body: dict[str, Any], room: str) -> dict[str, Any]:
    return body["rooms"]["join"][room]


def _state(body: dict[str, Any], room: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["type"], e["state_key"]): e for e in _entry(body, room)["state"]["events"]}


def _timeline_ids(body: dict[str, Any], room: str) -> list[str]:
    return [e["event_id"] for e in _entry(body, room)["timeline"]["events"]]


async def _sync(api: Api, token: str, since: str | None = None, **room_filter: Any) -> dict[str, Any]:
    query = "filter=" + json.dumps({"room": room_filter}) + (f"&since={since}" if since else "")
    return await api.get(f"sync?{query}", token=token)


async def _remote_member_then_carol(api: Api, alice: str, **create_body: Any) -> tuple[str, RoomRecord, list[str], str]:
    """A public room a remote user joined, then carol (a new local user): the room's
    ID and record, its extremities before carol joined (where a remote event can
    branch off without her) and carol's token."""
    room_id = await create(api, alice, preset="public_chat", **create_body)
    room = await api.hs.room_store.get_room(room_id)
    assert room is not None
    assert await receive(api.hs, room, await remote_event(api.hs, room, "m.room.member", {"membership": "join"},
                                                        state_key=REMOTE_USER)) == "accepted"
    head = await api.hs.room_service.head(room)
    before_carol = [e.event_id for e in (await api.hs.event_store.get_events_by_nid(head.extremities)).values()]
    carol = await user(api, "carol")
    await join(api, room_id, carol)
    return room_id, room, before_carol, carol


async def test_own_membership_hidden_by_the_timeline_filter(api: Api) -> None:
    alice, carol = await user(api, "alice"), await user(api, "carol")
    room = await create(api, alice, preset="public_chat")  # history shared: carol sees m1
    m1 = await send(api, room, alice, "before carol")
    await join(api, room, carol)
    m2 = await send(api, room, alice, "after carol")
    body = await _sync(api, carol, timeline={"types": ["m.room.message"]})
    assert _timeline_ids(body, room) == [m1, m2]  # her join is in range, but filtered out
    state = _state(body, room)
    assert state[("m.room.member", uid("carol"))]["content"]["membership"] == "join"
    assert {k[1] for k in state if k[0] == "m.room.member"} == {uid("alice"), uid("carol")}
    # Lazy loading: the senders' members and her own.
    lazy = _state(await _sync(api, carol, timeline={"types": ["m.room.message"]},
                              state={"lazy_load_members": True}), room)
    assert {k[1] for k in lazy if k[0] == "m.room.member"} == {uid("alice"), uid("carol")}
    # Unfiltered, her join is in the timeline and not repeated in state.
    plain = await _sync(api, carol)
    assert ("m.room.member", uid("carol")) not in _state(plain, room)
    assert any(e["type"] == "m.room.member" and e["state_key"] == uid("carol")
               for e in _entry(plain, room)["timeline"]["events"])


async def test_own_membership_and_members_across_a_fork(api: Api) -> None:
    alice = await user(api, "alice")
    room_id, room, before_carol, carol = await _remote_member_then_carol(api, alice)
    # The remote user writes on top of what they knew: the room before carol joined.
    hello = await remote_event(api.hs, room, "m.room.message", {"msgtype": "m.text", "body": "hi"}, prev=before_carol)
    assert await receive(api.hs, room, hello) == "accepted"

    # Initial sync, the timeline only that message: carol's join is in neither the
    # timeline nor the state before the message, yet she is in the room.
    first = await _sync(api, carol, timeline={"limit": 1})
    assert _timeline_ids(first, room_id) == [hello["event_id"]]
    state = _state(first, room_id)
    assert state[("m.room.member", uid("carol"))]["content"]["membership"] == "join"
    assert {k[1] for k in state if k[0] == "m.room.member"} == {uid("alice"), uid("carol"), REMOTE_USER}
    assert ("m.room.create", "") in state and ("m.room.power_levels", "") in state
    # With lazy loading: the timeline's sender and the user themselves.
    lazy = _state(await _sync(api, carol, timeline={"limit": 1}, state={"lazy_load_members": True}), room_id)
    assert {k[1] for k in lazy if k[0] == "m.room.member"} == {uid("carol"), REMOTE_USER}
    assert lazy[("m.room.member", uid("carol"))]["content"]["membership"] == "join"

    # A limited incremental sync across a fork: a topic set here, then two remote
    # messages on the branch from before it; the topic is sent in `state`.
    since = first["next_batch"]
    head = await api.hs.room_service.head(room)
    before_topic = [e.event_id for e in (await api.hs.event_store.get_events_by_nid(head.extremities)).values()]
    topic = await put_state(api, room_id, alice, "m.room.topic", {"topic": "forks"})
    for body in ("one", "two"):
        ev = await remote_event(api.hs, room, "m.room.message", {"msgtype": "m.text", "body": body}, prev=before_topic)
        assert await receive(api.hs, room, ev) == "accepted"
        before_topic = [ev["event_id"]]
    later = await _sync(api, carol, since, timeline={"limit": 1})
    assert _entry(later, room_id)["timeline"]["limited"] is True
    assert _timeline_ids(later, room_id) == [before_topic[0]]
    state = _state(later, room_id)
    assert state[("m.room.topic", "")]["event_id"] == topic
    # (The state at the token is read from the branch too, so unchanged members may
    # be sent again: redundant, never wrong.)
    assert state.get(("m.room.member", uid("carol")), {}).get("content", {}).get("membership", "join") == "join"


async def test_state_after_across_a_fork(api: Api) -> None:
    """use_state_after (v1.16): the state at the timeline's end is the room's, although
    the timeline's last event sits on a branch that lacks carol's join and a rename."""
    alice = await user(api, "alice")
    room_id, room, branch, carol = await _remote_member_then_carol(api, alice, name="Old")
    first = await api.get("sync?use_state_after=true", token=carol)
    renamed = await put_state(api, room_id, alice, "m.room.name", {"name": "New"})
    hello = await remote_event(api.hs, room, "m.room.message", {"msgtype": "m.text", "body": "hi"}, prev=branch)
    assert await receive(api.hs, room, hello) == "accepted"

    body = await api.get(f"sync?use_state_after=true&since={first['next_batch']}", token=carol)
    entry = _entry(body, room_id)
    assert "state" not in entry and _timeline_ids(body, room_id)[-1] == hello["event_id"]
    # Only what changed since the token: the rename (in the timeline too), not carol's
    # join, which the previous response already gave and which still holds.
    assert {(e["type"], e["state_key"]): e["event_id"] for e in entry["state_after"]["events"]} == {
        ("m.room.name", ""): renamed
    }
