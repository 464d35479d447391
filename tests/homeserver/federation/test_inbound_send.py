"""Inbound transactions between two real servers over TLS: a remote user's events,
signed by their server, enter our room; forgeries and replays do not."""

from __future__ import annotations

from typing import Any

from federation.events import build_event, pdu_json, select_auth_event_ids
from homeserver.rooms.creation import create_room
from homeserver.server import HomeServer
from homeserver.storage.rooms import RoomRecord
from tests.homeserver.federation.servers import Pair, ServerSpec


async def _state_ids(hs: HomeServer, room: RoomRecord) -> dict[tuple[str, str], str]:
    nids = await hs.room_service.current_state_ids(room)
    by_nid = await hs.event_store.get_events_by_nid(nids.values())
    return {k: by_nid[n].event_id for k, n in nids.items()}


async def _remote_event(
    hs: HomeServer, room: RoomRecord, spec: ServerSpec, sender: str, event_type: str,
    content: dict[str, Any], state_key: str | None = None, signing_key: Any = None,
) -> dict[str, Any]:
    head = await hs.room_service.head(room)
    prev = list((await hs.event_store.get_events_by_nid(head.extremities)).values())
    partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
    if state_key is not None:
        partial["state_key"] = state_key
    return build_event(
        room.room_version, room_id=room.room_id, sender=sender, event_type=event_type, content=content,
        prev_events=[e.event_id for e in prev],
        auth_events=select_auth_event_ids(partial, await _state_ids(hs, room), room.room_version),
        depth=max(e.event["depth"] for e in prev) + 1, origin_server_ts=hs.clock.time_ms(),
        state_key=state_key, signing_key=signing_key or spec.signing_key, server_name=spec.name,
    )


async def test_remote_events_through_send(pair: Pair) -> None:
    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    alice, bob = pair.alice_id, pair.bob_id
    room = await a.room_store.get_room(await create_room(a, alice, {"preset": "public_chat"}))
    assert room is not None

    async def send(txn: str, *pdus: dict[str, Any], edus: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return await b.federation_client.put_json(
            a_spec.name, f"/_matrix/federation/v1/send/{txn}",
            {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(),
             "pdus": [pdu_json(p) for p in pdus], "edus": edus or []},
        )

    join = await _remote_event(a, room, b_spec, bob, "m.room.member", {"membership": "join"}, bob)
    answer = await send("t1", join)
    assert answer == {"pdus": {join["event_id"]: {}}}
    assert (await a.room_store.membership_of(room.room_nid, bob))[0] == "join"

    hello = await _remote_event(a, room, b_spec, bob, "m.room.message", {"body": "hello A"})
    assert (await send("t2", hello))["pdus"] == {hello["event_id"]: {}}
    # A replayed transaction gets the same answer and stores nothing twice.
    assert (await send("t2", hello))["pdus"] == {hello["event_id"]: {}}
    msgs = await a.event_store.room_stream(room.room_nid, from_pos=a.room_service.stream.current,
                                           to_pos=None, backwards=True, limit=5)
    assert [e.event_id for e in msgs].count(hello["event_id"]) == 1

    # Forged: signed with a key that is not B's.
    from federation.events import signing_key_from_seed

    forged = await _remote_event(a, room, b_spec, bob, "m.room.message", {"body": "forged"},
                                 signing_key=signing_key_from_seed(b"\x09" * 32, b_spec.key_id.split(":")[1]))
    answer = await send("t3", forged)
    assert "signature" in answer["pdus"][forged["event_id"]]["error"].lower()
    assert await a.event_store.get_event(forged["event_id"]) is None

    # Tampered content: the content hash no longer matches, so it is stored redacted.
    tampered = await _remote_event(a, room, b_spec, bob, "m.room.message", {"body": "original"})
    tampered = {**tampered, "content": {"body": "changed in transit"}}
    answer = await send("t4", tampered)
    stored = await a.event_store.get_event(answer and next(iter(answer["pdus"])))
    assert stored is not None and stored.event["content"] == {}

    # Failing the auth rules: Bob may not change the power levels.
    grab = await _remote_event(a, room, b_spec, bob, "m.room.power_levels", {"users": {bob: 100}}, "")
    answer = await send("t5", grab)
    assert answer["pdus"][grab["event_id"]]["error"].startswith("Rejected")
    levels = await a.room_service.current_state_event(room, ("m.room.power_levels", ""))
    assert bob not in levels.event["content"].get("users", {})

    # An unknown room, and a user of another server in an EDU, are refused quietly.
    other = dict(hello, room_id="!nowhere:" + a_spec.name)
    answer = await send("t6", other, edus=[
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": bob, "typing": True}},
        {"edu_type": "m.typing", "content": {"room_id": room.room_id, "user_id": alice, "typing": True}},
    ])
    assert list(answer["pdus"].values()) == [{"error": "Unknown room"}]
    typing = a.typing.typing_events_since(room.room_id, 0)
    assert typing is not None and typing["content"]["user_ids"] == [bob]
