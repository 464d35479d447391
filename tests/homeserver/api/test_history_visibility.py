"""History visibility on every read path: /messages, /event, /context, /state,
/members and /timestamp_to_event, for each m.room.history_visibility setting and
each kind of reader: the creator, a late joiner, one who is only invited, one who
left, and an outsider."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api, FakeClock
from tests.homeserver.api.reading_helpers import (
    bodies,
    create,
    errcode,
    forget,
    ids,
    invite,
    join,
    leave,
    messages,
    put_state,
    send,
    set_visibility,
    uid,
    user,
    walk,
)

READERS = ("alice", "dave", "bob", "carol", "mallory")
MESSAGES = ("e0", "e1", "e2", "e3")
# Which of e0..e3 each reader may see (see `_scenario` for the timeline).
VISIBLE: dict[str, dict[str, set[str]]] = {
    "world_readable": {r: set(MESSAGES) for r in READERS},
    "shared": {"alice": set(MESSAGES), "dave": set(MESSAGES), "bob": set(),
               "carol": {"e0", "e1", "e2"}, "mallory": set()},
    # bob has been invited since before e1; invited users may read from their invite on.
    "invited": {"alice": set(MESSAGES), "dave": {"e1", "e2", "e3"}, "bob": {"e1", "e2", "e3"},
                "carol": {"e0", "e1", "e2"}, "mallory": set()},
    "joined": {"alice": set(MESSAGES), "dave": {"e2", "e3"}, "bob": set(),
               "carol": {"e0", "e1", "e2"}, "mallory": set()},
}


async def _scenario(api: Api, visibility: str, clock: FakeClock | None = None) -> dict[str, Any]:
    """carol joins first; e0; bob and dave are invited; e1; dave joins; e2; carol
    leaves; e3; the topic changes. bob never joins, mallory is never in the room.
    With a clock, each step happens a second after the one before."""

    def tick() -> None:
        if clock is not None:
            clock.advance(1000)

    t = {n: await user(api, n) for n in READERS}
    room = await create(api, t["alice"])
    await set_visibility(api, room, t["alice"], visibility)
    await invite(api, room, t["alice"], "carol")
    await join(api, room, t["carol"])
    tick()
    ev = {"e0": await send(api, room, t["alice"], "e0")}
    tick()
    await invite(api, room, t["alice"], "bob")
    tick()
    await invite(api, room, t["alice"], "dave")
    tick()
    ev["e1"] = await send(api, room, t["alice"], "e1")
    tick()
    await join(api, room, t["dave"])
    tick()
    ev["e2"] = await send(api, room, t["alice"], "e2")
    tick()
    await leave(api, room, t["carol"])
    tick()
    ev["e3"] = await send(api, room, t["alice"], "e3")
    tick()
    await put_state(api, room, t["alice"], "m.room.topic", {"topic": "after carol left"})
    return {"room": room, "tokens": t, "events": ev}


def _may_read_room(visibility: str, reader: str) -> bool:
    """The room-wide gate: members, those who left, or anyone when world readable."""
    return visibility == "world_readable" or reader in ("alice", "dave", "carol")


@pytest.mark.parametrize("visibility", list(VISIBLE))
async def test_every_read_path(api: Api, visibility: str) -> None:
    s = await _scenario(api, visibility)
    room, events = s["room"], s["events"]
    for reader in READERS:
        token = s["tokens"][reader]
        expected = VISIBLE[visibility][reader]
        gate = _may_read_room(visibility, reader)
        where = (visibility, reader)

        # /messages, both directions, all pages.
        if gate:
            back, _ = await walk(api, room, token, dir="b", limit=3)
            assert set(bodies(back)) == expected, where
            forward, _ = await walk(api, room, token, dir="f", limit=3)
            assert [e["event_id"] for e in forward] == [e["event_id"] for e in reversed(back)], where
        else:
            assert await errcode(api, f"rooms/{room}/messages?dir=b", token, 403) == "M_FORBIDDEN", where

        for name, event_id in events.items():
            # /event: the event if visible, otherwise exactly like a missing event.
            if name in expected:
                got = await api.get(f"rooms/{room}/event/{event_id}", token=token)
                assert got["content"]["body"] == name, where
            else:
                assert await errcode(api, f"rooms/{room}/event/{event_id}", token, 404) == "M_NOT_FOUND", (where, name)
            # /context: the room gate first, then the event's own visibility.
            path = f"rooms/{room}/context/{event_id}?limit=10"
            if not gate:
                assert await errcode(api, path, token, 403) == "M_FORBIDDEN", where
            elif name in expected:
                ctx = await api.get(path, token=token)
                around = bodies(ctx["events_before"]) + bodies(ctx["events_after"])
                assert set(around) <= expected, (where, name)
            else:
                assert await errcode(api, path, token, 404) == "M_NOT_FOUND", (where, name)

        # /state, /state/{type}, /members.
        if not gate:
            for path in ("state", "state/m.room.create", "members"):
                assert await errcode(api, f"rooms/{room}/{path}", token, 403) == "M_FORBIDDEN", (where, path)
            continue
        state = {(e["type"], e["state_key"]): e for e in await api.get(f"rooms/{room}/state", token=token)}
        current = reader != "carol" or visibility == "world_readable"
        # carol reads the room as it was when she left: without the later topic.
        assert (("m.room.topic", "") in state) == current, where
        assert state[("m.room.member", uid("carol"))]["content"]["membership"] == "leave", where
        status = 200 if current else 404
        await api.request("GET", f"rooms/{room}/state/m.room.topic", token=token, expect=status)
        chunk = (await api.get(f"rooms/{room}/members", token=token))["chunk"]
        assert {e["state_key"]: e["content"]["membership"] for e in chunk}[uid("carol")] == "leave", where


@pytest.mark.parametrize("visibility", list(VISIBLE))
async def test_initial_sync_timeline_in_one_page(api: Api, visibility: str) -> None:
    """The whole scenario in one /sync timeline page, whose visibility changes and
    membership changes are worked out along the page (`Viewer._derive`) rather than
    read at each state snapshot: each reader sees what /messages shows them, page
    by page of three (carol, who left, up to her leave)."""
    s = await _scenario(api, visibility)
    room = s["room"]
    sync_filter = '{"room":{"include_leave":true,"timeline":{"limit":100}}}'
    for reader in ("alice", "dave", "carol"):
        token = s["tokens"][reader]
        body = await api.get(f"sync?filter={sync_filter}", token=token)
        section = "leave" if reader == "carol" else "join"
        timeline = body["rooms"][section][room]["timeline"]
        assert not timeline["limited"], reader
        if reader == "carol":  # her left room's timeline ends at her leave, before e3
            assert set(bodies(timeline["events"])) == VISIBLE[visibility][reader] - {"e3"}, visibility
            continue
        assert set(bodies(timeline["events"])) == VISIBLE[visibility][reader], (visibility, reader)
        back, _ = await walk(api, room, token, dir="b", limit=3)
        assert ids(timeline["events"]) == ids(list(reversed(back))), (visibility, reader)


@pytest.mark.parametrize("visibility", list(VISIBLE))
async def test_timestamp_to_event_finds_only_visible_events(make_api: Any, clock: FakeClock, visibility: str) -> None:
    api = await make_api(clock=clock)
    s = await _scenario(api, visibility, clock)
    room, events = s["room"], s["events"]
    e0 = await api.get(f"rooms/{room}/event/{events['e0']}", token=s["tokens"]["alice"])
    for reader in READERS:
        token = s["tokens"][reader]
        expected = VISIBLE[visibility][reader]
        forward = f"/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={e0['origin_server_ts']}&dir=f"
        backward = f"/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={clock.now_ms + 10**6}&dir=b"
        if not _may_read_room(visibility, reader):
            assert await errcode(api, forward, token, 403) == "M_FORBIDDEN"
            continue
        found = await api.get(forward, token=token)
        event = await api.get(f"rooms/{room}/event/{found['event_id']}", token=token)  # visible to them
        assert found["origin_server_ts"] == event["origin_server_ts"] >= e0["origin_server_ts"]
        if "e0" in expected:
            assert found["event_id"] == events["e0"], (visibility, reader)
        elif reader == "dave":
            # From e0 on, the first event dave may see is his own invite or join.
            assert (event["type"], event["state_key"]) == ("m.room.member", uid("dave"))
            assert event["content"]["membership"] == ("invite" if visibility == "invited" else "join")
        newest = await api.get(backward, token=token)
        if reader == "carol" and visibility != "world_readable":
            event = await api.get(f"rooms/{room}/event/{newest['event_id']}", token=token)
            assert (event["type"], event["state_key"]) == ("m.room.member", uid("carol"))  # her leave
            assert event["content"]["membership"] == "leave"
        else:
            topic = await api.get(f"rooms/{room}/state/m.room.topic?format=event", token=token)
            assert newest["event_id"] == topic["event_id"]


async def test_shared_history_stays_readable_after_leaving(api: Api) -> None:
    """Under "shared", events from before a user joined stay theirs after they leave
    (they joined after them), but nothing sent after the leave."""
    alice = await user(api, "alice")
    dave = await user(api, "dave")
    room = await create(api, alice, preset="public_chat")
    await send(api, room, alice, "before dave")
    await join(api, room, dave)
    await send(api, room, alice, "while dave")
    await leave(api, room, dave)
    after = await send(api, room, alice, "after dave")
    events, pages = await walk(api, room, dave, dir="b", limit=50)
    assert bodies(events) == ["while dave", "before dave"]
    assert await errcode(api, f"rooms/{room}/event/{after}", dave, 404) == "M_NOT_FOUND"
    # His timeline starts at his leave: nothing lies beyond it for him, from any token.
    assert events[0]["type"] == "m.room.member" and events[0]["content"]["membership"] == "leave"
    beyond = await messages(api, room, dave, dir="f", **{"from": pages[0]["start"]})
    assert beyond["chunk"] == [] and "end" not in beyond
    now = await messages(api, room, alice, dir="b", limit=1)
    assert ids((await messages(api, room, dave, dir="b", limit=1, **{"from": now["start"]}))["chunk"]) == ids(events[:1])


async def test_rejoining_restores_only_the_joined_periods(api: Api) -> None:
    alice = await user(api, "alice")
    dave = await user(api, "dave")
    room = await create(api, alice, preset="public_chat")
    await set_visibility(api, room, alice, "joined")
    await join(api, room, dave)
    await send(api, room, alice, "first stay")
    await leave(api, room, dave)
    await send(api, room, alice, "gap")
    await join(api, room, dave)
    await send(api, room, alice, "second stay")
    events, _ = await walk(api, room, dave, dir="b", limit=2)
    assert bodies(events) == ["second stay", "first stay"]


async def test_visibility_applies_as_it_was_when_each_event_was_sent(api: Api) -> None:
    alice = await user(api, "alice")
    mallory = await user(api, "mallory")
    room = await create(api, alice)
    await set_visibility(api, room, alice, "joined")
    hidden = await send(api, room, alice, "joined only")
    opened = await set_visibility(api, room, alice, "world_readable")
    public = await send(api, room, alice, "public")
    closed = await set_visibility(api, room, alice, "joined")
    hidden2 = await send(api, room, alice, "joined only again")
    for event_id in (opened, public, closed):  # both changes of world_readable are visible
        await api.get(f"rooms/{room}/event/{event_id}", token=mallory)
    for event_id in (hidden, hidden2):
        assert await errcode(api, f"rooms/{room}/event/{event_id}", mallory, 404) == "M_NOT_FOUND"
    # The room as a whole is no longer world readable.
    assert await errcode(api, f"rooms/{room}/messages?dir=b", mallory, 403) == "M_FORBIDDEN"
    # Open it again and the outsider may page through it: only the public parts.
    await set_visibility(api, room, alice, "world_readable")
    events, _ = await walk(api, room, mallory, dir="b", limit=2)
    assert bodies(events) == ["public"]
    assert {opened, public, closed} <= {e["event_id"] for e in events}
    assert hidden not in {e["event_id"] for e in events}


async def test_forgotten_rooms_are_not_readable(api: Api) -> None:
    alice = await user(api, "alice")
    carol = await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, carol)
    seen = await send(api, room, alice, "seen")
    await leave(api, room, carol)
    assert (await api.get(f"rooms/{room}/event/{seen}", token=carol))["event_id"] == seen
    await forget(api, room, carol)
    for path in ("messages?dir=b", "state", "members", f"context/{seen}"):
        assert await errcode(api, f"rooms/{room}/{path}", carol, 403) == "M_FORBIDDEN", path
    assert await errcode(api, f"rooms/{room}/event/{seen}", carol, 404) == "M_NOT_FOUND"


async def test_unknown_rooms_do_not_leak(api: Api) -> None:
    mallory = await user(api, "mallory")
    missing = "!missing:test.local"
    for path in ("messages?dir=b", "state", "state/m.room.name", "members", "joined_members", "context/$x"):
        assert await errcode(api, f"rooms/{missing}/{path}", mallory, 403) == "M_FORBIDDEN", path
    assert await errcode(api, f"rooms/{missing}/event/$x", mallory, 404) == "M_NOT_FOUND"


async def test_left_users_timeline_ends_at_their_leave(api: Api) -> None:
    """Even events anyone may fetch (world readable when sent) are not part of the
    timeline of someone who left before them: that user reads the room as it was."""
    alice = await user(api, "alice")
    carol = await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, carol)
    await send(api, room, alice, "together")
    await leave(api, room, carol)
    await set_visibility(api, room, alice, "world_readable")
    public = await send(api, room, alice, "public")
    await set_visibility(api, room, alice, "joined")
    events, _ = await walk(api, room, carol, dir="b", limit=3)
    assert bodies(events) == ["together"]
    now = (await messages(api, room, alice, dir="b", limit=1))["start"]
    page = await messages(api, room, carol, dir="b", limit=3, **{"from": now})
    assert ids(page["chunk"]) == ids(events[:3])
    assert (await api.get(f"rooms/{room}/event/{public}", token=carol))["event_id"] == public
