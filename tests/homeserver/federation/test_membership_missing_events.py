"""send_join and send_leave whose event names prev or auth events the resident server
does not have: the request is invalid (400 M_BAD_JSON, as the spec's send_join
describes), never a 500. Two real servers over TLS; B plays a careless or hostile peer."""

from __future__ import annotations

from typing import Any

import pytest

from federation.client import RemoteError, quote_path_segment
from federation.events import add_hashes_and_signature, compute_event_id, pdu_json
from homeserver.rooms.creation import create_room
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import Pair

MISSING = "$" + "A" * 43


async def _send_tampered(
    b: HomeServer, a_name: str, room_id: str, user_id: str, membership: str, field: str
) -> RemoteError:
    """make_<membership> on A, then send_<membership> of that event with `field`
    pointing at an event nobody has; returns A's refusal."""
    client = b.federation_client
    assert client is not None
    room_q, user_q = quote_path_segment(room_id), quote_path_segment(user_id)
    query = None if membership == "leave" else {"ver": ["12"]}
    made = await client.get_json(a_name, f"/_matrix/federation/v1/make_{membership}/{room_q}/{user_q}", query=query)
    template: dict[str, Any] = made["event"]
    event = {k: template[k] for k in ("type", "room_id", "sender", "state_key", "depth", "prev_events",
                                      "auth_events", "origin_server_ts")}
    event["content"] = {"membership": membership}
    event[field] = [*event[field], MISSING]
    event = add_hashes_and_signature(event, made["room_version"], b.config.server_name, b.signing_key)
    event_id = compute_event_id(event, made["room_version"])
    with pytest.raises(RemoteError) as caught:
        await client.put_json(
            a_name, f"/_matrix/federation/v2/send_{membership}/{room_q}/{quote_path_segment(event_id)}",
            pdu_json(event),
        )
    return caught.value


async def test_send_join_and_leave_naming_unknown_events(pair: Pair) -> None:
    a, b, a_spec = pair.a, pair.b, pair.a_spec
    alice, bob = pair.alice_id, pair.bob_id
    room_id = await create_room(a, alice, {"preset": "public_chat"})
    room = await a.room_store.get_room(room_id)
    assert room is not None

    for field in ("auth_events", "prev_events"):
        err = await _send_tampered(b, a_spec.name, room_id, bob, "join", field)
        assert (err.status, err.errcode) == (400, "M_BAD_JSON"), (field, err)
    assert await a.room_store.membership_of(room.room_nid, bob) is None

    # A proper join still works; then the same for a leave.
    await b.federated_joins.join_remote(bob, room_id, [a_spec.name])
    assert (await a.room_store.membership_of(room.room_nid, bob))[0] == "join"
    for field in ("auth_events", "prev_events"):
        err = await _send_tampered(b, a_spec.name, room_id, bob, "leave", field)
        assert (err.status, err.errcode) == (400, "M_BAD_JSON"), (field, err)
    assert (await a.room_store.membership_of(room.room_nid, bob))[0] == "join"
