"""Search over federated rooms between two real servers: events received live and
history fetched by backfill are indexed on the receiving server like its own, a
redaction received over federation takes its event out of the index, and history
from before the join stays hidden under "joined" visibility."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.homeserver.federation.servers import Client, Pair, running_pair
from tests.tls_ca import TestCA


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA) -> AsyncIterator[Pair]:
    async with running_pair(tmp_path, ca) as p:
        yield p


async def _search(client: Client, term: str) -> list[str]:
    out = await client.call("POST", "/search", {"search_categories": {"room_events": {
        "search_term": term, "order_by": "recent", "filter": {"limit": 50},
    }}})
    return [r["result"]["content"].get("body") for r in out["search_categories"]["room_events"]["results"]]


async def _room(alice: Client, visibility: str, history: list[str]) -> str:
    room = (await alice.call("POST", "/createRoom", {
        "preset": "public_chat",
        "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                           "content": {"history_visibility": visibility}}],
    }))["room_id"]
    for i, text in enumerate(history):
        await alice.call("PUT", f"/rooms/{room}/send/m.room.message/h{i}", {"msgtype": "m.text", "body": text})
    return room


async def _paginate_all(client: Client, room: str) -> None:
    token = ""
    for _ in range(50):
        page = await client.call("GET", f"/rooms/{room}/messages?dir=b&limit=10{token}")
        if "end" not in page:
            return
        token = f"&from={page['end']}"


async def test_received_and_backfilled_events_are_searchable(pair: Pair) -> None:
    alice, bob = pair.alice, pair.bob
    room = await _room(alice, "shared", ["old gazelle story", "another old gazelle"])
    await bob.call("POST", f"/join/{room}?server_name={pair.a_spec.name}", {})
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/live", {"msgtype": "m.text", "body": "live gazelle news"})
    await bob.wait_for_message(room, "live gazelle news")
    await _paginate_all(bob, room)  # backfills the history from A (if reading it has not yet)
    assert await _search(bob, "gazelle") == ["live gazelle news", "another old gazelle", "old gazelle story"]
    old = await bob.call("POST", "/search", {"search_categories": {"room_events": {"search_term": "story"}}})
    stored = await pair.b.event_store.get_event(old["search_categories"]["room_events"]["results"][0]["result"]["event_id"])
    assert stored is not None and stored.stream_ordering is not None and stored.stream_ordering < 0  # backfilled
    # A redaction received over federation takes the event out of B's index.
    live = await alice.call("POST", "/search", {"search_categories": {"room_events": {"search_term": "live gazelle"}}})
    event_id = live["search_categories"]["room_events"]["results"][0]["result"]["event_id"]
    await alice.call("PUT", f"/rooms/{room}/redact/{event_id}/r1", {})
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/after", {"msgtype": "m.text", "body": "marker"})
    await bob.wait_for_message(room, "marker")
    assert await _search(bob, "gazelle") == ["another old gazelle", "old gazelle story"]


async def test_backfilled_history_hidden_under_joined_visibility(pair: Pair) -> None:
    alice, bob = pair.alice, pair.bob
    room = await _room(alice, "joined", ["secret ocelot plan"])
    await bob.call("POST", f"/join/{room}?server_name={pair.a_spec.name}", {})
    await _paginate_all(bob, room)
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/live", {"msgtype": "m.text", "body": "public ocelot"})
    await bob.wait_for_message(room, "public ocelot")
    assert await _search(bob, "ocelot") == ["public ocelot"]
    out: Any = await bob.call("POST", "/search", {"search_categories": {"room_events": {"search_term": "secret"}}})
    assert out["search_categories"]["room_events"]["results"] == []
    assert out["search_categories"]["room_events"]["count"] == 0


async def test_redaction_received_before_its_target_keeps_it_out_of_the_index(pair: Pair) -> None:
    from federation.events import pdu_json
    from homeserver.rooms.creation import create_room
    from tests.homeserver.federation.test_received_redactions import _remote_event

    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    room_id = await create_room(a, pair.alice_id, {"preset": "public_chat"})
    room = await a.room_store.get_room(room_id)
    assert room is not None
    txns = iter(range(100))

    async def send(*pdus: dict[str, Any]) -> None:
        answer = await b.federation_client.put_json(
            a_spec.name, f"/_matrix/federation/v1/send/s{next(txns)}",
            {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(), "pdus": [pdu_json(p) for p in pdus]},
        )
        assert answer == {"pdus": {p["event_id"]: {} for p in pdus}}

    bob = pair.bob_id
    await send(await _remote_event(a, room, b_spec, bob, "m.room.member", {"membership": "join"}, state_key=bob))
    message = await _remote_event(a, room, b_spec, bob, "m.room.message", {"msgtype": "m.text", "body": "oops capybara"})
    redaction = await _remote_event(a, room, b_spec, bob, "m.room.redaction", {}, redacts=message["event_id"])
    await send(redaction)
    await send(message)
    kept = await _remote_event(a, room, b_spec, bob, "m.room.message", {"msgtype": "m.text", "body": "fine capybara"})
    await send(kept)
    assert await _search(pair.alice, "capybara") == ["fine capybara"]
