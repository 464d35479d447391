"""GET /rooms/{roomId}/context/{eventId}: the events around one event, the state at
the last one, tokens that continue with /messages, filters and access."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    errcode,
    ids,
    join,
    messages,
    put_state,
    query,
    send,
    set_visibility,
    uid,
    user,
)


async def context(api: Api, room: str, event_id: str, token: str, expect: int = 200, **params: Any) -> Any:
    path = f"rooms/{room}/context/{event_id}{query(**params)}"
    return (await api.request("GET", path, token=token, expect=expect))[1]


async def test_events_around_and_tokens_continue_with_messages(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    sent = [await send(api, room, alice, str(i)) for i in range(30)]
    ctx = await context(api, room, sent[15], alice, limit=6)
    assert ctx["event"]["event_id"] == sent[15]
    assert ctx["event"]["content"]["body"] == "15"
    assert ids(ctx["events_before"]) == [sent[14], sent[13], sent[12]]  # newest first
    assert ids(ctx["events_after"]) == [sent[16], sent[17], sent[18]]  # oldest first
    # start continues backwards from the oldest event before, end forwards after the newest.
    back = await messages(api, room, alice, dir="b", limit=3, **{"from": ctx["start"]})
    assert ids(back["chunk"]) == [sent[11], sent[10], sent[9]]
    forward = await messages(api, room, alice, dir="f", limit=3, **{"from": ctx["end"]})
    assert ids(forward["chunk"]) == [sent[19], sent[20], sent[21]]


async def test_limit_default_zero_and_edges(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    sent = [await send(api, room, alice, str(i)) for i in range(20)]
    ctx = await context(api, room, sent[10], alice)
    assert len(ctx["events_before"]) + len(ctx["events_after"]) == 10  # the default limit
    zero = await context(api, room, sent[10], alice, limit=0)
    assert zero["event"]["event_id"] == sent[10]
    assert zero["events_before"] == [] and zero["events_after"] == []
    # Tokens of an empty context still continue from the event itself.
    nxt = await messages(api, room, alice, dir="f", limit=1, **{"from": zero["end"]})
    assert ids(nxt["chunk"]) == [sent[11]]
    prv = await messages(api, room, alice, dir="b", limit=1, **{"from": zero["start"]})
    assert ids(prv["chunk"]) == [sent[9]]
    # At the newest event nothing comes after.
    last = await context(api, room, sent[-1], alice, limit=4)
    assert last["events_after"] == [] and ids(last["events_before"]) == [sent[18], sent[17]]
    assert (await messages(api, room, alice, dir="f", **{"from": last["end"]}))["chunk"] == []
    for bad in ("-1", "x"):
        _, err = await api.request("GET", f"rooms/{room}/context/{sent[0]}?limit={bad}", token=alice, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"


async def test_state_is_at_the_last_event_returned(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice, topic="old")
    target = await send(api, room, alice, "target")
    await send(api, room, alice, "next")
    await put_state(api, room, alice, "m.room.topic", {"topic": "new"})
    topic = {e["content"]["topic"] for e in (await context(api, room, target, alice, limit=2))["state"]
             if e["type"] == "m.room.topic"}
    assert topic == {"old"}  # the last event returned is "next"; the topic changed after it
    ctx = await context(api, room, target, alice, limit=6)
    assert ids(ctx["events_after"])[-1] == (await api.get(f"rooms/{room}/state/m.room.topic?format=event", token=alice))["event_id"]
    types = {(e["type"], e["state_key"]): e["content"] for e in ctx["state"]}
    assert types[("m.room.topic", "")]["topic"] == "new"
    assert ("m.room.create", "") in types and ("m.room.member", uid("alice")) in types


async def test_filter_applies_around_but_not_to_the_event(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    carol = await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    await join(api, room, carol)
    a = [await send(api, room, alice, f"a{i}") for i in range(3)]
    topic = await put_state(api, room, alice, "m.room.topic", {"topic": "t"})
    b = [await send(api, room, bob, f"b{i}") for i in range(3)]
    c = [await send(api, room, carol, f"c{i}") for i in range(3)]
    ctx = await context(api, room, topic, alice, limit=4, filter={"types": ["m.room.message"], "senders": [uid("alice"), uid("carol")]})
    assert ctx["event"]["event_id"] == topic  # not a message, returned all the same
    assert ids(ctx["events_before"]) == [a[2], a[1]]
    assert ids(ctx["events_after"]) == [c[0], c[1]]
    assert ctx["state"] == []  # no state event is an m.room.message
    # lazy_load_members: state has only the senders' member events (and all other state).
    ctx = await context(api, room, b[1], alice, limit=2, filter={"lazy_load_members": True})
    members = {e["state_key"] for e in ctx["state"] if e["type"] == "m.room.member"}
    assert members == {uid("bob")}
    assert ("m.room.topic") in {e["type"] for e in ctx["state"]}
    ctx = await context(api, room, b[2], alice, limit=2, filter={"lazy_load_members": True})
    assert {e["state_key"] for e in ctx["state"] if e["type"] == "m.room.member"} == {uid("bob"), uid("carol")}


async def test_not_found_and_forbidden(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    mallory = await user(api, "mallory")
    room = await create(api, alice, preset="public_chat")
    other = await create(api, alice)
    secret = await send(api, room, alice, "before bob")
    await set_visibility(api, room, alice, "joined")
    hidden = await send(api, room, alice, "still before bob")
    await join(api, room, bob)
    seen = await send(api, room, alice, "after bob")
    elsewhere = await send(api, other, alice, "other room")
    assert (await context(api, room, seen, bob))["event"]["event_id"] == seen
    # Events bob may not see are indistinguishable from events that do not exist.
    for event_id in (hidden, "$doesnotexist", elsewhere):
        assert await errcode(api, f"rooms/{room}/context/{event_id}", bob, 404) == "M_NOT_FOUND", event_id
    # "before bob" was sent while history was shared: bob, now joined, may see it.
    assert (await context(api, room, secret, bob))["event"]["event_id"] == secret
    # Outsiders are refused the room as a whole.
    assert await errcode(api, f"rooms/{room}/context/{seen}", mallory, 403) == "M_FORBIDDEN"
    # Around a visible event, the invisible ones are left out.
    ctx = await context(api, room, seen, bob, limit=20)
    assert hidden not in ids(ctx["events_before"]) and secret in ids(ctx["events_before"])
