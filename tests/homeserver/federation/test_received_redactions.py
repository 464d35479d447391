"""Redactions received over federation: the auth rules of room versions 3+ accept any
redaction, so the server itself decides whether one applies (the spec's "Handling
redactions"): when its sender's server sent the original too, or its sender has the
redact level. Otherwise the redacted event keeps its content."""

from __future__ import annotations

from typing import Any

import pytest

from federation.events import build_event, pdu_json, select_auth_event_ids
from homeserver.rooms.creation import create_room
from homeserver.server import HomeServer
from homeserver.storage.rooms import RoomRecord
from tests.homeserver.federation.servers import Pair, ServerSpec


async def _remote_event(
    hs: HomeServer, room: RoomRecord, spec: ServerSpec, sender: str, event_type: str,
    content: dict[str, Any], *, state_key: str | None = None, redacts: str | None = None,
) -> dict[str, Any]:
    """An event of ``spec``'s server on top of our room's current head."""
    head = await hs.room_service.head(room)
    prev = list((await hs.event_store.get_events_by_nid(head.extremities)).values())
    nids = await hs.room_service.current_state_ids(room)
    by_nid = await hs.event_store.get_events_by_nid(nids.values())
    state_ids = {k: by_nid[n].event_id for k, n in nids.items()}
    partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
    if state_key is not None:
        partial["state_key"] = state_key
    return build_event(
        room.room_version, room_id=room.room_id, sender=sender, event_type=event_type,
        content=content, prev_events=[e.event_id for e in prev],
        auth_events=select_auth_event_ids(partial, state_ids, room.room_version),
        depth=max(e.event["depth"] for e in prev) + 1, origin_server_ts=hs.clock.time_ms(),
        state_key=state_key, redacts=redacts, signing_key=spec.signing_key, server_name=spec.name,
    )


@pytest.mark.parametrize("version", ["10", "11"])  # `redacts` at the top level, then in content
async def test_remote_redactions_apply_only_when_allowed(pair: Pair, version: str) -> None:
    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    alice, bob = pair.alice_id, pair.bob_id
    room_id = await create_room(a, alice, {"preset": "public_chat", "room_version": version})
    room = await a.room_store.get_room(room_id)
    assert room is not None
    txns = iter(range(100))

    async def receive(event_type: str, content: dict[str, Any], **kw: Any) -> str:
        pdu = await _remote_event(a, room, b_spec, bob, event_type, content, **kw)
        answer = await b.federation_client.put_json(
            a_spec.name, f"/_matrix/federation/v1/send/t{next(txns)}",
            {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(), "pdus": [pdu_json(pdu)]},
        )
        assert answer == {"pdus": {pdu["event_id"]: {}}}
        return str(pdu["event_id"])

    async def redacted_by(event_id: str) -> str | None:
        stored = await a.event_store.get_event(event_id)
        assert stored is not None
        return stored.redacted_by

    await receive("m.room.member", {"membership": "join"}, state_key=bob)
    text = {"msgtype": "m.text", "body": "alice's"}
    alices = (await a.room_service.create_event(room, alice, "m.room.message", text)).event_id
    bobs = await receive("m.room.message", {"msgtype": "m.text", "body": "bob's"})

    # Bob (power 0, another server) redacting Alice's event: accepted, not applied.
    refused = await receive("m.room.redaction", {}, redacts=alices)
    assert await redacted_by(alices) is None
    assert (await a.event_store.get_event(refused)) is not None
    # His own event: his server sent both.
    own = await receive("m.room.redaction", {"reason": "mine"}, redacts=bobs)
    assert await redacted_by(bobs) == own
    # Once he has the redact level, Alice's event too.
    levels = await a.room_service.current_state_event(room, ("m.room.power_levels", ""))
    assert levels is not None
    content = levels.event["content"]
    await a.room_service.create_event(
        room, alice, "m.room.power_levels",
        {**content, "users": {**content["users"], bob: content.get("redact", 50)}}, state_key="",
    )
    allowed = await receive("m.room.redaction", {}, redacts=alices)
    assert await redacted_by(alices) == allowed


async def test_redaction_received_before_its_target_applies_when_the_target_arrives(pair: Pair) -> None:
    """Events of one transaction, or of two, may arrive out of order: a redaction
    whose target is not here yet is held (in the DAG, out of the timeline clients
    see) and applied, and shown, once the target arrives. A redaction that does not
    apply is never shown: clients would apply it themselves."""
    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    alice, bob = pair.alice_id, pair.bob_id
    room_id = await create_room(a, alice, {"preset": "public_chat"})
    room = await a.room_store.get_room(room_id)
    assert room is not None
    txns = iter(range(100))

    async def send(*pdus: dict[str, Any]) -> None:
        answer = await b.federation_client.put_json(
            a_spec.name, f"/_matrix/federation/v1/send/late{next(txns)}",
            {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(), "pdus": [pdu_json(p) for p in pdus]},
        )
        assert answer == {"pdus": {p["event_id"]: {} for p in pdus}}

    async def timeline() -> list[str]:
        events = await a.event_store.room_stream(room.room_nid, from_pos=0, to_pos=None, backwards=False,
                                                 limit=100)
        return [e.event_id for e in events]

    async def window_matches(since: int) -> int:
        """The room's recent-event window, told by the writer, answers like the
        database, without reading it (the held redaction took its place late)."""
        now = a.room_service.stream.current
        misses = a.recent_events.stats()["misses"]
        got = await a.recent_events.between(room.room_nid, since, now)
        want = await a.event_store.room_stream(room.room_nid, from_pos=since, to_pos=now, backwards=False, limit=100)
        assert got is not None and [e.event_id for e in got] == [e.event_id for e in want]
        assert a.recent_events.stats()["misses"] == misses
        return now

    await send(await _remote_event(a, room, b_spec, bob, "m.room.member", {"membership": "join"}, state_key=bob))
    since = a.room_service.stream.current
    assert await a.recent_events.between(room.room_nid, since - 1, since) is not None  # the window starts
    # Both built on the same head: the redaction does not need its target to be accepted.
    message = await _remote_event(a, room, b_spec, bob, "m.room.message", {"msgtype": "m.text", "body": "oops"})
    redaction = await _remote_event(a, room, b_spec, bob, "m.room.redaction", {}, redacts=message["event_id"])
    await send(redaction)
    held = await a.event_store.get_event(redaction["event_id"])
    assert held is not None and held.stream_ordering is None
    assert redaction["event_id"] not in await timeline()
    since = await window_matches(since)

    await send(message)
    since = await window_matches(since)
    target = await a.event_store.get_event(message["event_id"])
    assert target is not None and target.redacted_by == redaction["event_id"]
    a.event_store.forget(message["event_id"])
    from_db = await a.event_store.get_event(message["event_id"])
    assert from_db is not None and from_db.redacted_by == redaction["event_id"]
    assert (await timeline())[-2:] == [message["event_id"], redaction["event_id"]]

    # Bob may not redact Alice's event: the redaction is accepted but never shown.
    alices = await a.room_service.create_event(room, alice, "m.room.message", {"msgtype": "m.text", "body": "a"})
    refused = await _remote_event(a, room, b_spec, bob, "m.room.redaction", {}, redacts=alices.event_id)
    await send(refused)
    assert (await a.event_store.get_event(alices.event_id)).redacted_by is None  # type: ignore[union-attr]
    assert refused["event_id"] not in await timeline()
    assert refused["event_id"] in {
        e.event_id for e in (await a.event_store.get_events_by_nid((await a.room_service.head(room)).extremities)).values()
    }
