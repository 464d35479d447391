"""GET /rooms/{roomId}/messages: pagination in both directions, tokens, filters,
lazy-loaded members, redactions and errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    bodies,
    create,
    errcode,
    ids,
    invite,
    join,
    messages,
    put_state,
    send,
    uid,
    user,
    walk,
)

CREATION_TYPES = [
    "m.room.create", "m.room.member", "m.room.power_levels",
    "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
]


async def _room_with(api: Api, n: int) -> tuple[str, str, list[str]]:
    alice = await user(api, "alice")
    room = await create(api, alice)
    sent = [await send(api, room, alice, str(i)) for i in range(n)]
    return alice, room, sent


async def test_backwards_over_150_events_exact_pages(api: Api) -> None:
    alice, room, sent = await _room_with(api, 150)
    events, pages = await walk(api, room, alice, dir="b", limit=7)
    # Every event exactly once, newest first: the 150 messages, then createRoom's events.
    assert ids(events)[:150] == list(reversed(sent))
    assert [e["type"] for e in events[150:]] == list(reversed(CREATION_TYPES))
    assert len(set(ids(events))) == len(events) == 156
    assert all(len(p["chunk"]) == 7 for p in pages[:-1])
    assert len(pages) == 23  # 22 full pages and the last 2 events
    # Each page starts where the previous one ended, and the first where the room is now.
    for before, after in zip(pages, pages[1:], strict=False):
        assert after["start"] == before["end"]
    assert "end" not in pages[-1]
    assert [e["content"]["body"] for e in pages[0]["chunk"]] == [str(i) for i in range(149, 142, -1)]


async def test_forwards_over_150_events_exact_pages(api: Api) -> None:
    alice, room, sent = await _room_with(api, 150)
    events, pages = await walk(api, room, alice, dir="f", limit=11)
    assert [e["type"] for e in events[:6]] == CREATION_TYPES
    assert ids(events)[6:] == sent
    assert len(set(ids(events))) == len(events) == 156
    # Going forward to the present, a page with events always carries `end` (more
    # may be sent); the walk stops at the first empty page, which has none.
    assert all(len(p["chunk"]) == 11 for p in pages[:-2])
    assert len(pages[-2]["chunk"]) == 156 % 11 and "end" in pages[-2]
    assert pages[-1]["chunk"] == [] and "end" not in pages[-1]
    # Both directions see the same history.
    back, _ = await walk(api, room, alice, dir="b", limit=100)
    assert ids(back) == list(reversed(ids(events)))


async def test_forward_end_lets_a_client_follow_new_events(api: Api) -> None:
    alice, room, sent = await _room_with(api, 3)
    page = await messages(api, room, alice, dir="f", limit=50)
    assert ids(page["chunk"])[-3:] == sent and "end" in page
    newer = await send(api, room, alice, "later")
    following = await messages(api, room, alice, dir="f", **{"from": page["end"]})
    assert ids(following["chunk"]) == [newer]


async def test_tokens_round_trip_between_directions(api: Api) -> None:
    alice, room, sent = await _room_with(api, 30)
    page = await messages(api, room, alice, dir="b", limit=10)
    assert ids(page["chunk"]) == list(reversed(sent[20:]))
    # Forwards from the end of a backwards page: the events just paginated, oldest first,
    # and from its start (the present) nothing.
    again = await messages(api, room, alice, dir="f", limit=10, **{"from": page["end"]})
    assert ids(again["chunk"]) == sent[20:]
    at_head = await messages(api, room, alice, dir="f", **{"from": page["start"]})
    assert at_head["chunk"] == [] and "end" not in at_head
    # The start token of a request without `from` equals the live position, usable as `from`.
    same = await messages(api, room, alice, dir="b", limit=10, **{"from": page["start"]})
    assert ids(same["chunk"]) == ids(page["chunk"])
    assert same["start"] == page["start"]


async def test_to_token_bounds_the_range(api: Api) -> None:
    alice, room, sent = await _room_with(api, 40)
    first = await messages(api, room, alice, dir="b", limit=10)
    second = await messages(api, room, alice, dir="b", limit=10, **{"from": first["end"]})
    # Backwards from now to the end of the first page: exactly the first page, then done.
    bounded = await messages(api, room, alice, dir="b", limit=50, to=first["end"])
    assert ids(bounded["chunk"]) == ids(first["chunk"])
    assert "end" not in bounded
    # Forwards between two tokens: exactly the second page, oldest first.
    between = await messages(api, room, alice, dir="f", limit=50, to=first["end"], **{"from": second["end"]})
    assert ids(between["chunk"]) == list(reversed(ids(second["chunk"])))
    assert ids(between["chunk"]) == sent[20:30]


async def test_sync_tokens_are_accepted(api: Api) -> None:
    alice, room, sent = await _room_with(api, 12)
    pos = api.hs.room_service.stream.current
    page = await messages(api, room, alice, dir="b", limit=3, **{"from": f"s{pos}_0_0_0_0_0_0"})
    assert ids(page["chunk"]) == list(reversed(sent[-3:]))
    assert page["start"] == f"s{pos}_0_0_0_0_0_0"
    # The sync token of a /sync and the prev_batch of its timeline both work.
    body = await api.get("sync?filter=" + '{"room":{"timeline":{"limit":4}}}', token=alice)
    timeline = body["rooms"]["join"][room]["timeline"]
    assert ids(timeline["events"]) == sent[-4:]
    older = await messages(api, room, alice, dir="b", limit=4, **{"from": timeline["prev_batch"]})
    assert ids(older["chunk"]) == list(reversed(sent[-8:-4]))
    newer = await messages(api, room, alice, dir="f", **{"from": body["next_batch"]})
    assert newer["chunk"] == []
    later = await send(api, room, alice, "later")
    newer = await messages(api, room, alice, dir="f", **{"from": body["next_batch"]})
    assert ids(newer["chunk"]) == [later]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "garbage"}, {"from": ""}, {"from": "t"}, {"from": "t12x"}, {"from": "t-"}, {"from": "t--3"}, {"from": "s-3"},
        {"from": "t\u00b2"}, {"from": "s_1"}, {"from": "x12"}, {"to": "nope"}, {"to": "t1.5"},
        {"dir": "x"}, {"limit": "-1"}, {"limit": "ten"}, {"limit": "1e3"},
    ],
)
async def test_invalid_parameters(api: Api, params: dict[str, str]) -> None:
    alice, room, _ = await _room_with(api, 1)
    params.setdefault("dir", "b")
    page = await messages(api, room, alice, expect=400, **params)
    assert page["errcode"] == "M_INVALID_PARAM"


async def test_invalid_filters(api: Api) -> None:
    alice, room, _ = await _room_with(api, 1)
    assert (await messages(api, room, alice, expect=400, dir="b", filter="{nope"))["errcode"] == "M_NOT_JSON"
    for bad in ({"types": "m.room.message"}, {"senders": [1]}, {"contains_url": "yes"}, {"limit": -1}):
        page = await messages(api, room, alice, expect=400, dir="b", filter=bad)
        assert page["errcode"] == "M_BAD_JSON", bad


async def test_limits(api: Api) -> None:
    alice, room, sent = await _room_with(api, 15)
    assert len((await messages(api, room, alice, dir="b"))["chunk"]) == 10  # the default
    zero = await messages(api, room, alice, dir="b", limit=0)
    assert zero["chunk"] == [] and "end" in zero
    assert len((await messages(api, room, alice, dir="b", limit=100000))["chunk"]) == 21
    # A filter's own limit caps the page too.
    assert len((await messages(api, room, alice, dir="b", limit=8, filter={"limit": 3}))["chunk"]) == 3


async def test_end_omitted_only_when_history_is_exhausted(api: Api) -> None:
    alice, room, sent = await _room_with(api, 4)
    # 10 events in all: a page of exactly 10 with more to come is not the end...
    page = await messages(api, room, alice, dir="b", limit=9)
    assert "end" in page
    # ...and one that reaches the room's creation is.
    page = await messages(api, room, alice, dir="b", limit=10)
    assert len(page["chunk"]) == 10 and "end" not in page
    last = await messages(api, room, alice, dir="b", limit=5, **{"from": "t0"})
    assert last["chunk"] == [] and "end" not in last


async def _filter_room(api: Api) -> tuple[str, str, str, dict[str, list[str]]]:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    sent: dict[str, list[str]] = {"alice": [], "bob": [], "url": [], "topic": [], "custom": []}
    for i in range(60):
        if i % 3 == 0:
            sent["alice"].append(await send(api, room, alice, f"a{i}"))
        elif i % 3 == 1:
            sent["bob"].append(await send(api, room, bob, f"b{i}"))
        else:
            sent["url"].append(await send(api, room, bob, f"u{i}", url="mxc://test.local/x"))
        if i % 20 == 0:
            sent["topic"].append(await put_state(api, room, alice, "m.room.topic", {"topic": f"t{i}"}))
            path = f"rooms/{room}/send/org.example.custom/c{i}"
            sent["custom"].append((await api.put(path, {"n": i}, token=alice))["event_id"])
    return alice, bob, room, sent


async def test_filters_across_pages(api: Api) -> None:
    alice, _, room, sent = await _filter_room(api)

    async def walked(flt: dict[str, Any], direction: str = "b") -> list[str]:
        events, _ = await walk(api, room, alice, dir=direction, limit=4, filter=flt)
        got = ids(events)
        assert len(got) == len(set(got))
        return list(reversed(got)) if direction == "b" else got

    messages_only = sorted(sent["alice"] + sent["bob"] + sent["url"], key=_order(api))
    assert await walked({"types": ["m.room.message"]}) == messages_only
    assert await walked({"types": ["m.room.message"]}, "f") == messages_only
    assert await walked({"senders": [uid("alice")], "types": ["m.room.message"]}) == sent["alice"]
    assert await walked({"not_senders": [uid("alice")]}) == sorted(
        [*sent["bob"], *sent["url"], await _bob_join(api, room)], key=_order(api)
    )
    assert await walked({"types": ["m.room.message"], "contains_url": True}) == sent["url"]
    no_url = await walked({"types": ["m.room.message"], "contains_url": False})
    assert no_url == sorted(sent["alice"] + sent["bob"], key=_order(api))
    # '*' wildcards in types; not_types wins over types.
    topics = await walked({"types": ["m.room.t*"]})
    assert topics == sent["topic"]
    everything_m = await walked({"types": ["m.*"], "not_types": ["m.room.message", "m.room.topic"]})
    assert not set(everything_m) & set(messages_only + sent["topic"] + sent["custom"])
    assert await walked({"types": ["org.example.*"]}) == sent["custom"]
    assert await walked({"not_types": ["*"]}) == []
    assert await walked({"types": ["m.room.message"], "not_rooms": [room]}) == []


def _order(api: Api) -> Any:
    def key(event_id: str) -> int:
        ev = api.hs.event_store._cached(event_id)
        assert ev is not None
        return ev.stream_ordering or 0

    return key


async def _bob_join(api: Api, room: str) -> str:
    info = await api.hs.room_store.get_room(room)
    current = await api.hs.room_service.current_state_event(info, ("m.room.member", uid("bob")))
    return current.event_id


async def test_lazy_loading_members(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    carol = await user(api, "carol")
    dave = await user(api, "dave")
    room = await create(api, alice, preset="public_chat")
    for token in (bob, carol, dave):
        await join(api, room, token)
    await send(api, room, dave, "early, from dave")
    await send(api, room, bob, "from bob")
    await send(api, room, carol, "from carol")
    await send(api, room, bob, "bob again")
    page = await messages(api, room, alice, dir="b", limit=3, filter={"lazy_load_members": True})
    assert bodies(page["chunk"]) == ["bob again", "from carol", "from bob"]
    state = {e["state_key"]: e for e in page["state"]}
    assert set(state) == {uid("bob"), uid("carol")}  # the chunk's senders, not dave or alice
    assert all(e["type"] == "m.room.member" and e["content"]["membership"] == "join" for e in state.values())
    # Without lazy-loading there is no state; with it and an empty chunk neither.
    assert "state" not in await messages(api, room, alice, dir="b", limit=3)
    empty = await messages(api, room, alice, dir="f", filter={"lazy_load_members": True}, **{"from": page["start"]})
    assert empty["chunk"] == [] and "state" not in empty
    # The member event is the one in force at the chunk: a later rename shows there.
    await api.put(f"profile/{uid('bob')}/displayname", {"displayname": "Robert"}, token=bob)
    await send(api, room, bob, "renamed")
    page = await messages(api, room, alice, dir="b", limit=1, filter={"lazy_load_members": True})
    assert [e["content"].get("displayname") for e in page["state"]] == ["Robert"]


async def test_redacted_events_are_served_redacted(api: Api) -> None:
    alice, room, sent = await _room_with(api, 3)
    redaction = (await api.put(f"rooms/{room}/redact/{sent[1]}/r1", {"reason": "spam"}, token=alice))["event_id"]
    page = await messages(api, room, alice, dir="b", limit=4)
    assert ids(page["chunk"]) == [redaction, sent[2], sent[1], sent[0]]
    redacted = page["chunk"][2]
    assert redacted["content"] == {}
    assert redacted["unsigned"]["redacted_because"]["event_id"] == redaction
    assert redacted["unsigned"]["redacted_because"]["content"]["reason"] == "spam"
    assert page["chunk"][0]["redacts"] == sent[1]
    assert "redacted_because" not in page["chunk"][1]["unsigned"]


async def test_state_events_carry_prev_content(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice, topic="first")
    await put_state(api, room, alice, "m.room.topic", {"topic": "second"})
    page = await messages(api, room, alice, dir="b", limit=2, filter={"types": ["m.room.topic"]})
    newest, oldest = page["chunk"]
    assert newest["content"]["topic"] == "second"
    assert newest["unsigned"]["prev_content"]["topic"] == "first"
    assert "prev_content" not in oldest["unsigned"]
    # A membership change carries the membership it replaced.
    bob = await user(api, "bob")
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    page = await messages(api, room, alice, dir="b", limit=1)
    assert page["chunk"][0]["content"]["membership"] == "join"
    assert page["chunk"][0]["unsigned"]["prev_content"]["membership"] == "invite"


async def test_access_errors(api: Api) -> None:
    alice, room, _ = await _room_with(api, 2)
    mallory = await user(api, "mallory")
    assert await errcode(api, f"rooms/{room}/messages?dir=b", mallory, 403) == "M_FORBIDDEN"
    # A room that does not exist looks the same as one the user may not read.
    assert await errcode(api, "rooms/!nothere:test.local/messages?dir=b", mallory, 403) == "M_FORBIDDEN"
    assert await errcode(api, "rooms/!nothere:test.local/messages?dir=b", alice, 403) == "M_FORBIDDEN"
    assert await errcode(api, f"rooms/{room}/messages?dir=b", None, 401) == "M_MISSING_TOKEN"


async def test_transaction_id_only_for_the_sending_device(api: Api) -> None:
    alice, room, sent = await _room_with(api, 1)
    other = (await api.login("alice"))["access_token"]
    mine = (await messages(api, room, alice, dir="b", limit=1))["chunk"][0]
    theirs = (await messages(api, room, other, dir="b", limit=1))["chunk"][0]
    assert mine["event_id"] == theirs["event_id"] == sent[0]
    assert "transaction_id" in mine["unsigned"] and "transaction_id" not in theirs["unsigned"]


async def test_long_invisible_stretches_page_through_empty_chunks(api: Api, monkeypatch: Any) -> None:
    """A reader who may not see a long stretch of history gets empty pages with a
    token to go on (bounded work per request), and in the end exactly what they may see."""
    from homeserver.rooms import history

    monkeypatch.setattr(history, "MAX_SCAN", 25)
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    room = await create(api, alice, preset="public_chat")
    early = [await send(api, room, alice, f"shared {i}") for i in range(5)]
    await put_state(api, room, alice, "m.room.history_visibility", {"history_visibility": "joined"})
    for i in range(80):
        await send(api, room, alice, f"hidden {i}")
    await join(api, room, bob)
    late = [await send(api, room, alice, f"late {i}") for i in range(3)]
    events, pages = await walk(api, room, bob, dir="b", limit=5)
    assert bodies(events) == ["late 2", "late 1", "late 0"] + [f"shared {i}" for i in range(4, -1, -1)]
    assert set(late + early) <= set(ids(events))
    assert any(p["chunk"] == [] and "end" in p for p in pages)  # the scan limit was hit
    # Going forward the same way.
    forward, _ = await walk(api, room, bob, dir="f", limit=5)
    assert ids(forward) == list(reversed(ids(events)))
