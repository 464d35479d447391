"""The joining server checks the state a resident server hands over against the auth
rules, not only its signatures: a resident that slips in a state event its own user
had no right to send (signed by it, so every signature holds) is refused, and the join
goes nowhere. Two real servers over TLS; A's send_join answer is doctored."""

from __future__ import annotations

from typing import Any

import pytest

from federation.events import (
    add_hashes_and_signature,
    compute_event_id,
    get_room_version,
    pdu_json,
    select_auth_event_ids,
)
from federation.events.room_versions import RoomVersion
from homeserver.federation.pdu_checks import auth_chain_failures
from tests.homeserver.federation.servers import Pair

PL = ("m.room.power_levels", "")


def _forged_levels(pair: Pair, room_id: str, rv: RoomVersion, state: dict[Any, Any], mallory: str) -> dict[str, Any]:
    """A power-levels event by a user of A who is not even in the room, giving
    themself everything: well formed, hashed and signed by A."""
    levels = state[PL].event
    event: dict[str, Any] = {
        "type": "m.room.power_levels", "state_key": "", "room_id": room_id, "sender": mallory,
        "content": {**levels["content"], "users": {**levels["content"]["users"], mallory: 100}},
        "depth": levels["depth"] + 1, "prev_events": [levels["event_id"]],
        "origin_server_ts": levels["origin_server_ts"] + 1,
    }
    event["auth_events"] = select_auth_event_ids(event, {k: e.event_id for k, e in state.items()}, rv)
    event = add_hashes_and_signature(event, rv, pair.a_spec.name, pair.a.signing_key)
    return {**event, "event_id": compute_event_id(event, rv)}


async def test_a_resident_handing_over_unauthorised_state_is_refused(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, a_spec, alice, bob = pair.a, pair.b, pair.a_spec, pair.alice, pair.bob
    room_id = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    room = await a.room_store.get_room(room_id)
    assert room is not None
    rv = get_room_version(room.room_version)
    state = await a.room_service.state_events(await a.room_service.current_state_ids(room))
    mallory = f"@mallory:{a_spec.name}"
    forged = _forged_levels(pair, room_id, rv, state, mallory)

    honest = a.federated_joins.send_join

    async def doctored(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = await honest(*args, **kwargs)
        answer["state"] = [
            pdu_json(forged, rv) if (p["type"], p.get("state_key")) == PL else p for p in answer["state"]
        ]
        return answer

    monkeypatch.setattr(a.federated_joins, "send_join", doctored)
    status, err = await bob.raw("POST", f"/join/{room_id}?server_name={a_spec.name}", {})
    assert status >= 400, (status, err)
    print("refused join:", status, err)
    on_b = await b.room_store.get_room(room_id)
    membership = await b.room_store.membership_of(on_b.room_nid, pair.bob_id) if on_b is not None else None
    assert membership is None or membership[0] != "join"

    # The honest answer is accepted, and B's power levels are A's real ones.
    monkeypatch.setattr(a.federated_joins, "send_join", honest)
    assert await bob.call("POST", f"/join/{room_id}?server_name={a_spec.name}", {}) == {"room_id": room_id}
    levels = await bob.call("GET", f"/rooms/{room_id}/state/m.room.power_levels")
    assert mallory not in levels["users"]


def test_chain_failures_propagate_and_cycles_fail() -> None:
    """The pure check: an event citing a failed or missing one fails; a cycle fails."""
    rv = get_room_version("10")
    create = {"type": "m.room.create", "state_key": "", "room_id": "!r:x", "sender": "@a:x",
              "content": {"room_version": "10", "creator": "@a:x"}, "auth_events": [], "prev_events": [], "depth": 1,
              "event_id": "$create"}
    # Joined without citing the create event: fails rule 2 / the membership rules.
    bad_join = {"type": "m.room.member", "state_key": "@b:x", "room_id": "!r:x", "sender": "@b:x",
                "content": {"membership": "join"}, "auth_events": [], "prev_events": ["$create"],
                "depth": 2, "event_id": "$bad"}
    cites_bad = {"type": "m.room.name", "state_key": "", "room_id": "!r:x", "sender": "@b:x",
                 "content": {"name": "n"}, "auth_events": ["$create", "$bad"], "prev_events": ["$bad"],
                 "depth": 3, "event_id": "$name"}
    cites_missing = {**cites_bad, "auth_events": ["$create", "$nowhere"], "event_id": "$name2"}
    loop_a = {**cites_bad, "auth_events": ["$create", "$loop_b"], "event_id": "$loop_a"}
    loop_b = {**cites_bad, "auth_events": ["$create", "$loop_a"], "event_id": "$loop_b"}
    events = {e["event_id"]: e for e in (create, bad_join, cites_bad, cites_missing, loop_a, loop_b)}
    failures = auth_chain_failures(events, {}, create, rv)
    assert "$create" not in failures
    assert set(failures) == {"$bad", "$name", "$name2", "$loop_a", "$loop_b"}
    assert "$bad" in failures["$name"] and "missing" in failures["$name2"]
