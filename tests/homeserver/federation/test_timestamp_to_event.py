"""`GET /_matrix/federation/v1/timestamp_to_event/{roomId}` between two of our servers,
and the client endpoint asking the room's other servers when our own answer may be
incomplete: B joined A's room late, so the events nearest a time before its join are
A's, and B's client gets A's answer (fetched, checked and backfilled by B) rather than
B's join."""

from __future__ import annotations

import urllib.parse

import pytest

from federation.client import RemoteError
from tests.homeserver.federation.servers import Pair

V1 = "/_matrix/federation/v1"


async def test_timestamp_to_event_across_servers(pair: Pair) -> None:
    a, b, a_spec = pair.a, pair.b, pair.a_spec
    room_id = (await pair.alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    first = await pair.alice.say(room_id, "first")
    await pair.alice.say(room_id, "second")
    first_ts = (await a.event_store.get_events([first]))[first].event["origin_server_ts"]
    q = urllib.parse.quote(room_id)

    async def ask_a(**query: str) -> object:
        return await b.federation_client.get_json(a_spec.name, f"{V1}/timestamp_to_event/{q}", query=query)

    # B's server is in no room of A's yet: the room is not readable to it.
    with pytest.raises(RemoteError) as refused:
        await ask_a(ts=str(first_ts), dir="f")
    assert refused.value.status == 403

    await pair.bob.call("POST", f"/join/{room_id}?server_name={a_spec.name}", {})
    answer = await ask_a(ts=str(first_ts), dir="f")
    assert isinstance(answer, dict) and answer["origin_server_ts"] == first_ts  # `first`, or a tie
    with pytest.raises(RemoteError) as none:
        await ask_a(ts=str(first_ts + 10**9), dir="f")
    assert (none.value.status, none.value.errcode) == (404, "M_NOT_FOUND")
    for query, errcode in (({"ts": "1"}, "M_MISSING_PARAM"), ({"dir": "f"}, "M_MISSING_PARAM"),
                           ({"ts": "1", "dir": "x"}, "M_INVALID_PARAM"), ({"ts": "soon", "dir": "f"}, "M_INVALID_PARAM")):
        with pytest.raises(RemoteError) as bad:
            await ask_a(**query)
        assert (bad.value.status, bad.value.errcode) == (400, errcode)

    # B holds the room from bob's join on: its nearest event going forward from
    # `first` is the join, next to history it lacks, so it asks A, whose answer is closer.
    ours = await pair.bob.call("GET", f"/_matrix/client/v1/rooms/{q}/timestamp_to_event?ts={first_ts}&dir=f")
    assert ours["origin_server_ts"] == first_ts
    assert ours["event_id"] in await a.event_store.get_events([ours["event_id"]])
    # ... and brought into B's timeline by backfill, so the client can read around it.
    context = await pair.bob.call("GET", f"/rooms/{q}/context/{urllib.parse.quote(ours['event_id'])}?limit=2")
    assert context["event"]["event_id"] == ours["event_id"]
    # Going back from now, B's newest event is a forward extremity: no need to ask.
    now = b.clock.time_ms()
    latest = await pair.bob.call("GET", f"/_matrix/client/v1/rooms/{q}/timestamp_to_event?ts={now}&dir=b")
    b_room = await b.room_store.get_room(room_id)
    assert b_room is not None
    head = await b.room_service.head(b_room)
    extremities = await b.event_store.get_events_by_nid(head.extremities)
    assert latest["event_id"] in {e.event_id for e in extremities.values()}


async def test_history_visibility_applies_to_the_asking_server(pair: Pair) -> None:
    """In a `joined` room, what was said before B's server had a member there is not B's
    to find: A answers with the nearest event B may see instead."""
    a, b, a_spec = pair.a, pair.b, pair.a_spec
    room_id = (await pair.alice.call("POST", "/createRoom", {
        "preset": "public_chat",
        "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}],
    }))["room_id"]
    hidden = await pair.alice.say(room_id, "before B")
    hidden_ts = (await a.event_store.get_events([hidden]))[hidden].event["origin_server_ts"]
    await pair.bob.call("POST", f"/join/{room_id}?server_name={a_spec.name}", {})
    q = urllib.parse.quote(room_id)
    answer = await b.federation_client.get_json(
        a_spec.name, f"{V1}/timestamp_to_event/{q}", query={"ts": str(hidden_ts), "dir": "f"})
    assert answer["event_id"] != hidden
    shown = (await a.event_store.get_events([answer["event_id"]]))[answer["event_id"]]
    assert shown.type == "m.room.member" and shown.state_key == pair.bob_id  # B's join, the first it may see
    # Going back, the room's first events (before its visibility was set, so under the
    # default `shared`) are B's to see; the message is not.
    back = await b.federation_client.get_json(
        a_spec.name, f"{V1}/timestamp_to_event/{q}", query={"ts": str(hidden_ts), "dir": "b"})
    assert back["event_id"] != hidden and back["origin_server_ts"] <= hidden_ts
    earlier = (await a.event_store.get_events([back["event_id"]]))[back["event_id"]]
    assert earlier.state_key is not None
