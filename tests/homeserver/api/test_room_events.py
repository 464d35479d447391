"""GET /rooms/{roomId}/event/{eventId}, the deprecated GET /events/{eventId} and
GET /v1/rooms/{roomId}/timestamp_to_event."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, FakeClock
from tests.homeserver.api.reading_helpers import (
    create,
    errcode,
    join,
    send,
    set_visibility,
    uid,
    user,
)


async def test_get_event(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    other = await create(api, alice)
    event_id = await send(api, room, alice, "hello")
    event = await api.get(f"rooms/{room}/event/{event_id}", token=alice)
    assert event["event_id"] == event_id and event["room_id"] == room
    assert event["sender"] == uid("alice") and event["type"] == "m.room.message"
    assert event["content"] == {"msgtype": "m.text", "body": "hello"}
    assert isinstance(event["origin_server_ts"], int) and event["unsigned"]["age"] >= 0
    assert "transaction_id" in event["unsigned"]
    # Federation fields stay on the server.
    for key in ("prev_events", "auth_events", "depth", "hashes", "signatures"):
        assert key not in event
    # The same event through another room, or an unknown one: not found.
    assert await errcode(api, f"rooms/{other}/event/{event_id}", alice, 404) == "M_NOT_FOUND"
    assert await errcode(api, f"rooms/{room}/event/$unknown", alice, 404) == "M_NOT_FOUND"


async def test_get_redacted_event(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    event_id = await send(api, room, alice, "oops", extra="data")
    redaction = (await api.put(f"rooms/{room}/redact/{event_id}/r", {"reason": "typo"}, token=alice))["event_id"]
    event = await api.get(f"rooms/{room}/event/{event_id}", token=alice)
    assert event["content"] == {}
    because = event["unsigned"]["redacted_because"]
    assert because["event_id"] == redaction and because["type"] == "m.room.redaction"
    assert because["content"]["reason"] == "typo"
    redaction_event = await api.get(f"rooms/{room}/event/{redaction}", token=alice)
    assert redaction_event["redacts"] == event_id


async def test_world_readable_event_for_outsiders(api: Api) -> None:
    alice = await user(api, "alice")
    mallory = await user(api, "mallory")
    room = await create(api, alice)
    private = await send(api, room, alice, "private")
    await set_visibility(api, room, alice, "world_readable")
    public = await send(api, room, alice, "public")
    assert (await api.get(f"rooms/{room}/event/{public}", token=mallory))["content"]["body"] == "public"
    assert await errcode(api, f"rooms/{room}/event/{private}", mallory, 404) == "M_NOT_FOUND"
    # World readable rooms are readable as a whole too.
    assert (await api.get(f"rooms/{room}/state/m.room.history_visibility", token=mallory)) == {
        "history_visibility": "world_readable"
    }


async def test_deprecated_get_event_by_id(api: Api) -> None:
    """GET /events/{eventId}: the event as /rooms/{roomId}/event gives it, found
    without the room; 404 for unknown events and events the user may not see."""
    alice = await user(api, "alice")
    mallory = await user(api, "mallory")
    room = await create(api, alice)
    event_id = await send(api, room, alice, "hello")
    event = await api.get(f"events/{event_id}", token=alice)
    assert event == await api.get(f"rooms/{room}/event/{event_id}", token=alice) | {"unsigned": event["unsigned"]}
    assert event["room_id"] == room and event["content"]["body"] == "hello"
    assert await errcode(api, f"events/{event_id}", mallory, 404) == "M_NOT_FOUND"
    assert await errcode(api, "events/$unknown", alice, 404) == "M_NOT_FOUND"
    # A version 12 room's create event has no room_id: its room is its own ID.
    v12 = await create(api, alice, room_version="12")
    create_id = "$" + v12[1:]
    assert (await api.get(f"events/{create_id}", token=alice))["type"] == "m.room.create"
    status, _ = await api.request("GET", f"events/{create_id}", expect=None)
    assert status == 401


def _ts_path(room: str, ts: int, direction: str) -> str:
    return f"/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={ts}&dir={direction}"


async def _timed_room(make_api: Any, clock: FakeClock) -> tuple[Api, str, str, list[tuple[str, int]]]:
    api = await make_api(clock=clock)
    alice = await user(api, "alice")
    room = await create(api, alice, preset="public_chat")
    sent = []
    for i in range(5):
        clock.advance(10_000)
        sent.append((await send(api, room, alice, str(i)), clock.now_ms))
    return api, alice, room, sent


async def test_timestamp_to_event(make_api: Any, clock: FakeClock) -> None:
    api, alice, room, sent = await _timed_room(make_api, clock)
    (e0, t0), (e1, t1), (e2, t2), (e3, t3), (e4, t4) = sent
    assert await api.get(_ts_path(room, t2, "f"), token=alice) == {"event_id": e2, "origin_server_ts": t2}
    assert await api.get(_ts_path(room, t2, "b"), token=alice) == {"event_id": e2, "origin_server_ts": t2}
    assert (await api.get(_ts_path(room, t2 + 1, "f"), token=alice))["event_id"] == e3
    assert (await api.get(_ts_path(room, t2 - 1, "b"), token=alice))["event_id"] == e1
    assert (await api.get(_ts_path(room, t0 - 5000, "b"), token=alice))["event_id"] != e0  # createRoom's events
    _, err = await api.request("GET", _ts_path(room, t4 + 1, "f"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", _ts_path(room, 0, "b"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_timestamp_to_event_skips_what_the_user_may_not_see(make_api: Any, clock: FakeClock) -> None:
    api, alice, room, sent = await _timed_room(make_api, clock)
    await set_visibility(api, room, alice, "joined")
    clock.advance(10_000)
    hidden = await send(api, room, alice, "hidden")
    bob = await user(api, "bob")
    clock.advance(10_000)
    await join(api, room, bob)
    clock.advance(10_000)
    seen = await send(api, room, alice, "seen")
    hidden_ts = (await api.get(f"rooms/{room}/event/{hidden}", token=alice))["origin_server_ts"]
    found = await api.get(_ts_path(room, hidden_ts, "f"), token=bob)
    joined = await api.get(f"rooms/{room}/state/m.room.member/{uid('bob')}?format=event", token=bob)
    assert found["event_id"] == joined["event_id"]  # not the hidden message
    # Going back from just before bob joined, the newest event he may see is the
    # change to "joined" (visible under the history it ended).
    back = await api.get(_ts_path(room, hidden_ts, "b"), token=bob)
    change = await api.get(f"rooms/{room}/state/m.room.history_visibility?format=event", token=bob)
    assert back["event_id"] == change["event_id"]
    assert seen


async def test_timestamp_to_event_errors(make_api: Any, clock: FakeClock) -> None:
    api, alice, room, _ = await _timed_room(make_api, clock)
    mallory = await user(api, "mallory")
    base = f"/_matrix/client/v1/rooms/{room}/timestamp_to_event"
    for query, status, code in (
        ("?dir=f", 400, "M_MISSING_PARAM"), ("?ts=1", 400, "M_MISSING_PARAM"),
        ("?ts=abc&dir=f", 400, "M_INVALID_PARAM"), ("?ts=1&dir=x", 400, "M_INVALID_PARAM"),
        ("?ts=1.5&dir=f", 400, "M_INVALID_PARAM"),
    ):
        assert await errcode(api, base + query, alice, status) == code, query
    assert await errcode(api, _ts_path(room, 1, "f"), mallory, 403) == "M_FORBIDDEN"
    assert await errcode(api, _ts_path("!nope:test.local", 1, "f"), alice, 403) == "M_FORBIDDEN"
    # Only under the v1 prefix.
    _, err = await api.request("GET", f"/_matrix/client/v3/rooms/{room}/timestamp_to_event?ts=1&dir=f",
                               token=alice, expect=404)
    assert err["errcode"] == "M_UNRECOGNIZED"
