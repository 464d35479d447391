"""send_join v2 with `omit_members=true`, served: the state without membership events
(but the heroes' of an unnamed room), `members_omitted`, `servers_in_room`, and an auth
chain without what the state holds. Two real servers over TLS; B asks as a server
joining with partial state would."""

from __future__ import annotations

from typing import Any

import pytest

from federation.client import RemoteError, quote_path_segment
from federation.events import add_hashes_and_signature, auth_event_ids, compute_event_id, pdu_json
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import Pair


async def _send_join(b: HomeServer, a_name: str, room_id: str, user_id: str, omit: str | None) -> Any:
    """make_join on A, sign the template as B, send_join v2 (with `omit_members=omit`)."""
    client = b.federation_client
    assert client is not None
    room_q = quote_path_segment(room_id)
    made = await client.get_json(
        a_name, f"/_matrix/federation/v1/make_join/{room_q}/{quote_path_segment(user_id)}", query={"ver": ["12"]}
    )
    event = {k: v for k, v in made["event"].items() if k != "content"}
    event["content"] = {"membership": "join"}
    event = add_hashes_and_signature(event, made["room_version"], b.config.server_name, b.signing_key)
    event_id = compute_event_id(event, made["room_version"])
    return await client.put_json(
        a_name, f"/_matrix/federation/v2/send_join/{room_q}/{quote_path_segment(event_id)}", pdu_json(event),
        query=None if omit is None else {"omit_members": omit},
    )


def _members(answer: dict[str, Any]) -> set[str]:
    return {e["state_key"] for e in answer["state"] if e["type"] == "m.room.member"}


def _ids(pdus: list[dict[str, Any]]) -> set[str]:
    return {compute_event_id(p, "12") for p in pdus}


async def test_send_join_omitting_members(pair: Pair) -> None:
    a, b, a_name, b_name = pair.a, pair.b, pair.a_spec.name, pair.b_spec.name
    alice, alice_id = pair.alice, pair.alice_id
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "room_version": "12"}))["room_id"]
    others = []
    for name in ("carol", "dave", "erin", "frank", "gina", "hank"):
        member = pair.client(pair.a_spec)
        others.append(await member.register(name))
        await member.call("POST", f"/rooms/{room}/join", {})

    # A value that is not a boolean is refused before anything is accepted.
    with pytest.raises(RemoteError) as caught:
        await _send_join(b, a_name, room, "@early:" + b_name, "yes")
    assert (caught.value.status, caught.value.errcode) == (400, "M_INVALID_PARAM")
    record = await a.room_store.get_room(room)
    assert record is not None
    assert await a.room_store.membership_of(record.room_nid, "@early:" + b_name) is None

    # Unnamed room: only the heroes' memberships (five, by user ID, the joiner not among them).
    answer = await _send_join(b, a_name, room, pair.bob_id, "true")
    assert answer["members_omitted"] is True
    assert answer["servers_in_room"] == [a_name]
    assert _members(answer) == set(sorted([alice_id, *others])[:5])
    state_types = {e["type"] for e in answer["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility"} <= state_types
    state_ids, chain_ids = _ids(answer["state"]), _ids(answer["auth_chain"])
    assert not state_ids & chain_ids  # nothing twice
    # Still complete: every auth event of the join and of every state event is here.
    for pdu in [answer["event"], *answer["state"]]:
        assert set(auth_event_ids(pdu)) <= state_ids | chain_ids
    assert (await a.room_store.membership_of(record.room_nid, pair.bob_id))[0] == "join"

    # A named room needs no heroes; the joined B server is now in the room.
    await alice.call("PUT", f"/rooms/{room}/state/m.room.name", {"name": "Named"})
    answer = await _send_join(b, a_name, room, "@second:" + b_name, "true")
    assert answer["members_omitted"] is True
    assert answer["servers_in_room"] == sorted([a_name, b_name])
    assert _members(answer) == set()

    # Not asked: the whole state, every member.
    answer = await _send_join(b, a_name, room, "@third:" + b_name, None)
    assert answer["members_omitted"] is False and "servers_in_room" not in answer
    assert _members(answer) == {alice_id, *others, pair.bob_id, "@second:" + b_name}
