"""Events built by another server enter the DAG: accepted, rejected, soft-failed,
forks resolved into the current state, and all of it surviving a restart."""

from __future__ import annotations

from typing import Any

import pytest

from federation.events import resolve_state
from homeserver.federation.pdu_checks import MissingEventsError
from homeserver.rooms.creation import create_room
from tests.conftest import running_hs
from tests.homeserver.remote_events import REMOTE_USER
from tests.homeserver.remote_events import receive as _receive
from tests.homeserver.remote_events import remote_event as _remote_event
from tests.homeserver.remote_events import state_ids as _state_ids

ALICE = "@alice:test.local"
BOB = REMOTE_USER


@pytest.mark.parametrize("version", ["11", "12"])
async def test_remote_events_forks_and_restart(make_config, version: str) -> None:  # noqa: ANN001
    config = make_config()
    async with running_hs(config) as hs:
        await hs.registration.create_account(ALICE, "alice-password", login=False)
        room_id = await create_room(hs, ALICE, {"preset": "public_chat", "room_version": version})
        room = await hs.room_store.get_room(room_id)
        assert room is not None
        rs = hs.room_service

        join = await _remote_event(hs, room, "m.room.member", {"membership": "join"}, state_key=BOB)
        assert await _receive(hs, room, join) == "accepted"
        assert (await hs.room_store.membership_of(room.room_nid, BOB))[0] == "join"
        assert await _receive(hs, room, join) == "duplicate"
        hello = await _remote_event(hs, room, "m.room.message", {"body": "hello from afar"})
        assert await _receive(hs, room, hello) == "accepted"

        # Bob may not change power levels: rejected, and nothing changes.
        grab = await _remote_event(hs, room, "m.room.power_levels", {"users": {BOB: 100}}, state_key="")
        before = await _state_ids(hs, room)
        assert await _receive(hs, room, grab) == "rejected"
        assert await _state_ids(hs, room) == before

        # Alice lets Bob set the topic, then both change state concurrently: a fork.
        levels = (await rs.current_state_event(room, ("m.room.power_levels", ""))).event["content"]
        levels = {**levels, "users": {**levels.get("users", {}), BOB: 50}}
        await rs.create_event(room, ALICE, "m.room.power_levels", levels, state_key="")
        fork_base = [e.event_id for e in (await hs.event_store.get_events_by_nid((await rs.head(room)).extremities)).values()]
        await rs.create_event(room, ALICE, "m.room.name", {"name": "Named by Alice"}, state_key="")
        topic = await _remote_event(hs, room, "m.room.topic", {"topic": "Set by Bob"}, state_key="", prev=fork_base)
        assert await _receive(hs, room, topic) == "accepted"
        head = await rs.head(room)
        assert len(head.extremities) == 2
        current = await _state_ids(hs, room)
        assert current[("m.room.topic", "")] == topic["event_id"]
        assert ("m.room.name", "") in current
        # The stored current state is exactly what state resolution of the two branches gives.
        branch_states = []
        for nid in head.extremities:
            ev = (await hs.event_store.get_events_by_nid([nid]))[nid]
            branch_states.append(await _state_ids(hs, room, at=[ev.event_id]))
        needed = {e for s in branch_states for e in s.values()}
        loaded: dict[str, dict[str, Any]] = {}
        while needed - set(loaded):
            found = await hs.event_store.get_events(needed - set(loaded))
            for eid, ev in found.items():
                loaded[eid] = ev.event
                needed |= set(ev.event["auth_events"])
        assert resolve_state(version, branch_states, loaded) == current

        # A local event merges the fork: it cites both extremities.
        merged = await rs.create_event(room, ALICE, "m.room.message", {"body": "merge"})
        assert sorted(merged.event["prev_events"]) == sorted(
            e.event_id for e in (await hs.event_store.get_events_by_nid(head.extremities)).values()
        )

        # Bob is banned; a message he builds on an old branch still passes against the state
        # before it, but fails against the current state: soft-failed, never shown.
        old_branch = [topic["event_id"]]
        await rs.create_event(room, ALICE, "m.room.member", {"membership": "ban"}, state_key=BOB)
        sneaky = await _remote_event(hs, room, "m.room.message", {"body": "sneaky"}, prev=old_branch)
        assert await _receive(hs, room, sneaky) == "soft_failed"
        stored = await hs.event_store.get_event(sneaky["event_id"])
        assert stored is not None and stored.stream_ordering is None
        assert len((await rs.head(room)).extremities) == 1

        unknown = dict(hello, prev_events=["$missing"], event_id="$other")
        with pytest.raises(MissingEventsError) as exc:
            await _receive(hs, room, unknown)
        assert exc.value.event_ids == ["$missing"]
        final = await _state_ids(hs, room)

    async with running_hs(config) as hs:
        room = await hs.room_store.get_room(room_id)
        assert room is not None
        assert await _state_ids(hs, room) == final
        assert (await hs.room_store.membership_of(room.room_nid, BOB))[0] == "ban"


async def test_resolved_head_of_a_fork_survives_restart(make_config) -> None:  # noqa: ANN001
    config = make_config()
    async with running_hs(config) as hs:
        await hs.registration.create_account(ALICE, "alice-password", login=False)
        room_id = await create_room(hs, ALICE, {"preset": "public_chat"})
        room = await hs.room_store.get_room(room_id)
        assert room is not None
        rs = hs.room_service
        assert await _receive(hs, room, await _remote_event(hs, room, "m.room.member", {"membership": "join"}, state_key=BOB)) == "accepted"
        base = [e.event_id for e in (await hs.event_store.get_events_by_nid((await rs.head(room)).extremities)).values()]
        await rs.create_event(room, ALICE, "m.room.name", {"name": "Alice's"}, state_key="")
        bobs = await _remote_event(
            hs, room, "m.room.member", {"membership": "join", "displayname": "Bob"}, state_key=BOB, prev=base
        )
        assert await _receive(hs, room, bobs) == "accepted"
        assert len((await rs.head(room)).extremities) == 2
        forked = await _state_ids(hs, room)
        assert forked[("m.room.member", BOB)] == bobs["event_id"] and ("m.room.name", "") in forked
    async with running_hs(config) as hs:
        room = await hs.room_store.get_room(room_id)
        assert room is not None
        assert await _state_ids(hs, room) == forked
        assert len((await hs.room_service.head(room)).extremities) == 2
