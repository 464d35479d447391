"""m.room.server_acl between two real servers: once A's room denies B, B's PDUs
are refused one by one, its typing and receipts for the room are dropped, and
its reads of the room (backfill, state, auth, missing events) get 403."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from federation.client import RemoteError
from federation.events import pdu_json
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import Pair
from tests.homeserver.federation.test_inbound_send import _remote_event


async def _delivered(hs: HomeServer, within: float = 10) -> None:
    """Wait until the server's sender has nothing left to send."""
    await hs.federation_sender.drain_intake()
    for _ in range(int(within / 0.02)):
        if not await hs.federation_sender.store.pending_destinations():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the sender did not deliver in time")


async def test_acl_denies_a_server(pair: Pair) -> None:
    a, b, a_spec, b_spec = pair.a, pair.b, pair.a_spec, pair.b_spec
    alice, bob, bob_id = pair.alice, pair.bob, pair.bob_id
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    sent = await bob.call("PUT", f"/rooms/{room}/send/m.room.message/ok", {"msgtype": "m.text", "body": "allowed"})
    await alice.wait_for_message(room, "allowed")
    record = await a.room_store.get_room(room)
    assert record is not None

    # Deny B (by host: ACLs ignore the port).
    await alice.call("PUT", f"/rooms/{room}/state/m.room.server_acl",
                     {"allow": ["*"], "deny": [b_spec.ip], "allow_ip_literals": True})

    # Through B's own client and sender: the message and typing never land on A.
    denied = await bob.call("PUT", f"/rooms/{room}/send/m.room.message/no",
                            {"msgtype": "m.text", "body": "denied"})
    await bob.call("PUT", f"/rooms/{room}/typing/{bob_id}", {"typing": True, "timeout": 30000})
    await bob.call("POST", f"/rooms/{room}/receipt/m.read/{sent['event_id']}", {})
    await _delivered(b)
    assert await a.event_store.get_event(denied["event_id"]) is None
    assert a.typing.typing_users(room) == []
    receipts = await a.db.fetchall("SELECT user_id FROM receipts WHERE room_id = ?", (room,))
    assert (bob_id,) not in [tuple(r) for r in receipts]

    # A direct transaction gets the reason back for the PDU.
    pdu = await _remote_event(a, record, b_spec, bob_id, "m.room.message", {"body": "direct"})
    answer = await b.federation_client.put_json(
        a_spec.name, "/_matrix/federation/v1/send/acl1",
        {"origin": b_spec.name, "origin_server_ts": b.clock.time_ms(), "pdus": [pdu_json(pdu)], "edus": [
            {"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob_id, "typing": True}},
        ]},
    )
    assert "server ACL" in answer["pdus"][pdu["event_id"]]["error"]
    assert await a.event_store.get_event(pdu["event_id"]) is None
    assert a.typing.typing_users(room) == []

    # Reads of the room: 403 M_FORBIDDEN.
    event_id = sent["event_id"]
    requests: list[tuple[str, str, dict[str, Any] | None, Any]] = [
        ("GET", f"/_matrix/federation/v1/backfill/{room}", {"v": event_id, "limit": "5"}, None),
        ("GET", f"/_matrix/federation/v1/state/{room}", {"event_id": event_id}, None),
        ("GET", f"/_matrix/federation/v1/state_ids/{room}", {"event_id": event_id}, None),
        ("GET", f"/_matrix/federation/v1/event_auth/{room}/{event_id}", None, None),
        ("POST", f"/_matrix/federation/v1/get_missing_events/{room}", None,
         {"earliest_events": [], "latest_events": [event_id], "limit": 5}),
        ("GET", f"/_matrix/federation/v1/event/{event_id}", None, None),
        ("GET", f"/_matrix/federation/v1/timestamp_to_event/{room}", {"ts": "0", "dir": "f"}, None),
    ]
    for method, path, query, body in requests:
        with pytest.raises(RemoteError) as err:
            await b.federation_client.request(method, a_spec.name, path, query=query, content=body)
        assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN"), path

    # A lifts the ACL: B is heard again.
    await alice.call("PUT", f"/rooms/{room}/state/m.room.server_acl", {"allow": ["*"]})
    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/lifted", {"msgtype": "m.text", "body": "lifted"})
    await bob.wait_for_message(room, "lifted")
    await bob.call("PUT", f"/rooms/{room}/send/m.room.message/back", {"msgtype": "m.text", "body": "back"})
    await alice.wait_for_message(room, "back")
