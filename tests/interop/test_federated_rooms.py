"""Rooms shared between Accord and stock Synapse in every room version, 1 to 12, both ways:
Synapse creates a room and we join it over make_join/send_join, and we create one that Synapse
joins. In each, messages go both ways, a topic set by us and a name set by Synapse are each
the other's current state, and a redaction sent on one side is applied on the other (each
version's redaction algorithm and, from v11, `redacts` in the content).

The versions differ where it matters across servers: v1 and v2 event IDs named by the sending
server and `[event_id, hashes]` references, v1's state resolution, v3's hashed IDs, v5's key
validity, v6's strict canonical JSON, v7 knocking, v8/v9 restricted joins, v10 integer-only
power levels, v11's redaction and `redacts`, v12's room IDs from the create event. One Synapse
serves the module (conftest.py); each test only adds a room."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from federation.events import get_room_version
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.creation import create_room
from tests.interop.test_federation_basics import Accord, accord, bob, q  # noqa: F401  (fixtures)

from .synapse import MatrixError, SynapseClient, SynapseServer, timeline_events

pytestmark = pytest.mark.asyncio(loop_scope="module")
T = TypeVar("T")

VERSIONS = [str(n) for n in range(1, 13)]


async def _poll(probe: Callable[[], Awaitable[T | None]], what: str, within: float = 20.0) -> T:
    """`probe()` until it gives something: federation is asynchronous, so each side polls
    (briefly, no fixed sleeps) for what the other sent."""
    try:
        async with asyncio.timeout(within):
            while True:
                found = await probe()
                if found is not None:
                    return found
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not seen within {within}s: {what}") from None


def _levels(version: str, creator: str, joiner: str) -> dict[str, Any]:
    """Power for the joining user to set a topic; from v12 the creator is above all
    levels and must not be listed."""
    users = {joiner: 50} if version == "12" else {creator: 100, joiner: 50}
    return {"users": users}


async def _our_messages(acc: Accord, room_id: str) -> list[dict[str, Any]]:
    room = await acc.hs.room_store.get_room(room_id)
    assert room is not None
    events = await acc.hs.event_store.room_stream(
        room.room_nid, from_pos=acc.hs.room_service.stream.current, to_pos=None, backwards=True, limit=50
    )
    return [e.event for e in events if e.type == "m.room.message"]


async def _wait_ours(acc: Accord, room_id: str, body: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        return next((ev for ev in await _our_messages(acc, room_id) if ev["content"].get("body") == body), None)

    return await _poll(probe, f"message {body!r} at Accord")


async def _accord_name(acc: Accord, room: RoomRecord, name: str) -> None:
    async def probe() -> bool | None:
        ev = await acc.hs.room_service.current_state_event(room, ("m.room.name", ""))
        return True if ev is not None and ev.event["content"].get("name") == name else None

    await _poll(probe, f"name {name!r} in Accord's current state")


async def _accord_redacted(acc: Accord, event_id: str, redaction_id: str) -> None:
    """The event is marked redacted by that redaction and served without its content."""
    async def probe() -> bool | None:
        ev = (await acc.hs.event_store.get_events([event_id])).get(event_id)
        return True if ev is not None and ev.redacted_by == redaction_id else None

    await _poll(probe, f"redaction of {event_id} at Accord")


async def _synapse_topic(peer: SynapseClient, room_id: str, topic: str) -> None:
    async def probe() -> bool | None:
        try:
            content = await peer.state_event(room_id, "m.room.topic")
        except MatrixError as e:  # 404 until the first topic arrives
            assert e.status == 404, e
            return None
        return True if content.get("topic") == topic else None

    await _poll(probe, f"topic {topic!r} at Synapse")


async def _synapse_redacted(peer: SynapseClient, room_id: str, event_id: str, redaction_id: str) -> None:
    async def probe() -> dict[str, Any] | None:
        ev = await peer.event(room_id, event_id)
        because = ev.get("unsigned", {}).get("redacted_because", {})
        return ev if because.get("event_id") == redaction_id else None

    ev = await _poll(probe, f"redaction of {event_id} at Synapse")
    assert ev["content"] == {}


async def _accord_redact(acc: Accord, room: RoomRecord, event_id: str) -> str:
    """What PUT /redact does: `redacts` at the top level before v11, in the content since."""
    rv = get_room_version(room.room_version)
    content = {"reason": "interop"} | ({"redacts": event_id} if rv.redacts_in_content else {})
    stored = await acc.hs.room_service.create_event(
        room, acc.alice, "m.room.redaction", content, redacts=None if rv.redacts_in_content else event_id
    )
    return stored.event_id


async def _both_ways(acc: Accord, peer: SynapseClient, room_id: str, version: str) -> None:
    """Messages, a state change and a redaction from each side, each seen on the other.
    Both sides act at once in each step (the state changes are to different keys, so
    the fork they make resolves to both), which halves the wall time."""
    room = await acc.hs.room_store.get_room(room_id)
    assert room is not None and room.room_version == version

    ours, theirs = await asyncio.gather(
        acc.hs.room_service.create_event(
            room, acc.alice, "m.room.message", {"msgtype": "m.text", "body": f"hi synapse {version}"}),
        peer.send_text(room_id, f"hi accord {version}"),
    )
    _, seen = await asyncio.gather(
        peer.sync_until(lambda s: any(
            e.get("content", {}).get("body") == f"hi synapse {version}" for e in timeline_events(s, room_id))),
        _wait_ours(acc, room_id, f"hi accord {version}"),
    )
    assert seen["sender"] == peer.user_id

    await asyncio.gather(
        acc.hs.room_service.create_event(room, acc.alice, "m.room.topic", {"topic": f"ours {version}"}, state_key=""),
        peer.send_state(room_id, "m.room.name", {"name": f"theirs {version}"}),
    )
    await asyncio.gather(_synapse_topic(peer, room_id, f"ours {version}"), _accord_name(acc, room, f"theirs {version}"))

    ours_redaction, their_redaction = await asyncio.gather(
        _accord_redact(acc, room, ours.event_id), peer.redact(room_id, theirs, reason="interop")
    )
    await asyncio.gather(
        _synapse_redacted(peer, room_id, ours.event_id, ours_redaction),
        _accord_redacted(acc, theirs, their_redaction),
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_we_join_a_synapse_room(accord: Accord, bob: SynapseClient, synapse: SynapseServer, version: str) -> None:  # noqa: F811
    room_id = await bob.create_room(
        preset="public_chat", room_version=version, name=f"Synapse v{version}",
        power_level_content_override=_levels(version, bob.user_id, accord.alice),
    )
    await bob.send_text(room_id, "before alice")
    joined = await accord.hs.federated_joins.join_remote(accord.alice, room_id, [synapse.server_name])
    assert joined == room_id
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None and room.room_version == version
    name = await accord.hs.room_service.current_state_event(room, ("m.room.name", ""))
    assert name is not None and name.event["content"] == {"name": f"Synapse v{version}"}

    await _both_ways(accord, bob, room_id, version)
    # History from before our join comes by backfill from Synapse, fetched right after
    # the join (a backfill asked for now finds it done, or waits for it).
    await accord.hs.room_backfill.backfill(room, 20)
    before = await _wait_ours(accord, room_id, "before alice")
    assert before["sender"] == bob.user_id


@pytest.mark.parametrize("version", VERSIONS)
async def test_synapse_joins_our_room(accord: Accord, bob: SynapseClient, version: str) -> None:  # noqa: F811
    room_id = await create_room(
        accord.hs, accord.alice, {
            "preset": "public_chat", "name": "Accord room", "room_version": version,
            "power_level_content_override": _levels(version, accord.alice, bob.user_id),
        },
    )
    joined = await bob.join(room_id, via=[accord.name])
    assert joined == room_id
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None
    assert (await accord.hs.room_store.membership_of(room.room_nid, bob.user_id))[0] == "join"
    created = await bob.state_event(room_id, "m.room.create")
    assert created.get("room_version", "1") == version
    await _both_ways(accord, bob, room_id, version)
    # Synapse joined with partial state (we serve omit_members, and the room has a name, so
    # no membership came with the join); the rest it fetches from us after the join.
    async with asyncio.timeout(60):
        while True:
            members = await bob.request("GET", f"/rooms/{room_id}/joined_members")
            if set(members.get("joined", {})) == {accord.alice, bob.user_id}:
                break
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("version", ["1", "5"])
async def test_floats_in_old_versions_both_ways(accord: Accord, bob: SynapseClient, version: str) -> None:  # noqa: F811
    """Before v6 events may hold floats; Synapse accepts them from its clients and hashes
    them as Python writes them (`2.0`, `4.5`, `1e+100`). Each side's such event reaches
    the other whole: hash, signatures and the request's X-Matrix signature all agree."""
    room_id = await create_room(accord.hs, accord.alice, {"preset": "public_chat", "room_version": version})
    assert await bob.join(room_id, via=[accord.name]) == room_id
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None
    floats = {"rating": 4.5, "whole": 2.0, "huge": 1e100, "tiny": -2.5e-300}
    await bob.send(room_id, {"msgtype": "m.text", "body": f"theirs {version}", **floats})
    theirs = await _wait_ours(accord, room_id, f"theirs {version}")
    assert {k: theirs["content"][k] for k in floats} == floats  # not redacted for a hash mismatch
    await accord.hs.room_service.create_event(
        room, accord.alice, "m.room.message", {"msgtype": "m.text", "body": f"ours {version}", **floats}
    )
    sync = await bob.sync_until(lambda s: any(
        e.get("content", {}).get("body") == f"ours {version}" for e in timeline_events(s, room_id)))
    [ours] = [e for e in timeline_events(sync, room_id) if e["content"].get("body") == f"ours {version}"]
    assert {k: ours["content"][k] for k in floats} == floats


async def test_timestamp_to_event_both_ways(accord: Accord, bob: SynapseClient, synapse: SynapseServer) -> None:  # noqa: F811
    """Each side joins a room of the other's late, so the event nearest a time before the
    join is only on the other side: the client lookup on each asks the other over
    `/_matrix/federation/v1/timestamp_to_event`, and gets the other's event."""
    # Synapse asking us.
    ours_room = await create_room(accord.hs, accord.alice, {"preset": "public_chat"})
    room = await accord.hs.room_store.get_room(ours_room)
    assert room is not None
    early = await accord.hs.room_service.create_event(
        room, accord.alice, "m.room.message", {"msgtype": "m.text", "body": "early at Accord"})
    early_ts = early.event["origin_server_ts"]
    assert await bob.join(ours_room, via=[accord.name]) == ours_room
    theirs = await bob.request(
        "GET", f"/_matrix/client/v1/rooms/{q(ours_room)}/timestamp_to_event", params={"ts": str(early_ts), "dir": "f"})
    # Ours (the message, or an event of the room's creation in the same millisecond).
    assert theirs["origin_server_ts"] == early_ts
    answered = await accord.hs.event_store.get_event(theirs["event_id"])
    assert answered is not None and answered.room_nid == room.room_nid

    # Us asking Synapse.
    synapse_room = await bob.create_room(preset="public_chat")
    their_early = await bob.send_text(synapse_room, "early at Synapse")
    their_ts = (await bob.event(synapse_room, their_early))["origin_server_ts"]
    await accord.hs.federated_joins.join_remote(accord.alice, synapse_room, [synapse.server_name])
    answer = await accord.client.get_json(
        synapse.server_name, f"/_matrix/federation/v1/timestamp_to_event/{q(synapse_room)}",
        query={"ts": str(their_ts), "dir": "f"})
    assert answer["origin_server_ts"] == their_ts  # `their_early`, or a tie
    room = await accord.hs.room_store.get_room(synapse_room)
    assert room is not None
    viewer = accord.hs.visibility.viewer(accord.alice, room)
    found = await accord.hs.timestamp_lookup.nearest(room, their_ts, False, viewer.can_see)
    assert found is not None and found.answer() == answer
    held = await accord.hs.event_store.get_event(found.event_id)  # backfilled for the client to read on from
    assert held is not None and held.stream_ordering is not None
