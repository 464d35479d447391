"""Invites between Accord and stock Synapse, both ways, in room versions 1, 2, 5, 9, 10, 11 and 12
(and our `PUT /v1/invite`, for servers without v2, in versions 1 and 2):
a Synapse user invites ours and ours invites a Synapse user; each invite is seen with its
stripped state, accepted (then both sides talk) or rejected (then the inviting side sees
the leave)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.rooms.creation import create_room
from tests.interop.test_federation_basics import Accord, accord, bob  # noqa: F401  (fixtures)

from .synapse import SynapseClient, timeline_events

pytestmark = pytest.mark.asyncio(loop_scope="module")
VERSIONS = ["1", "2", "5", "9", "10", "11", "12"]


async def _our_membership(acc: Accord, room_id: str, user_id: str, wanted: str) -> Any:
    async with asyncio.timeout(20):
        while True:
            room = await acc.hs.room_store.get_room(room_id)
            if room is not None:
                current = await acc.hs.room_store.membership_of(room.room_nid, user_id)
                if current is not None and current[0] == wanted:
                    return room, current
            await asyncio.sleep(0.1)


async def _our_message(acc: Accord, room_id: str, body: str) -> dict[str, Any]:
    room = await acc.hs.room_store.get_room(room_id)
    assert room is not None
    async with asyncio.timeout(20):
        while True:
            events = await acc.hs.event_store.room_stream(
                room.room_nid, from_pos=acc.hs.room_service.stream.current, to_pos=None, backwards=True, limit=50
            )
            for e in events:
                if e.type == "m.room.message" and e.event["content"].get("body") == body:
                    return e.event
            await asyncio.sleep(0.1)


def _synapse_membership(sync: dict[str, Any], room_id: str, user_id: str) -> str | None:
    """The user's latest membership in this sync's timeline of the room."""
    found = None
    for ev in timeline_events(sync, room_id):
        if ev["type"] == "m.room.member" and ev.get("state_key") == user_id:
            found = str(ev["content"].get("membership"))
    return found


async def _synapse_accepts(
    acc: Accord, peer: SynapseClient, room_id: str, invite: dict[str, Any], name: str, text: str
) -> None:
    """Synapse countersigned the invite before we persisted it; its user sees the invite
    with the room's name, joins, and what they say reaches us."""
    assert set(invite["signatures"]) == {acc.name, peer.user_id.partition(":")[2]}
    sync = await peer.sync_until(lambda s: room_id in s.get("rooms", {}).get("invite", {}))
    state = {e["type"]: e for e in sync["rooms"]["invite"][room_id]["invite_state"]["events"]}
    assert state["m.room.name"]["content"] == {"name": name}
    assert await peer.join(room_id) == room_id
    await _our_membership(acc, room_id, peer.user_id, "join")
    await peer.send_text(room_id, text)
    await _our_message(acc, room_id, text)


@pytest.mark.parametrize("version", VERSIONS)
async def test_synapse_invites_ours_and_we_accept(accord: Accord, bob: SynapseClient, version: str) -> None:  # noqa: F811
    room_id = await bob.create_room(preset="private_chat", room_version=version, name=f"Invite v{version}")
    await bob.invite(room_id, accord.alice)
    room, (_, event_nid, _) = await _our_membership(accord, room_id, accord.alice, "invite")
    # What our user's client is shown of a room this server is not in yet.
    stripped = await accord.hs.room_store.invite_state(event_nid)
    assert stripped is not None
    by_type = {e["type"]: e for e in stripped}
    assert by_type["m.room.name"]["content"] == {"name": f"Invite v{version}"}
    assert by_type["m.room.create"]["content"].get("room_version", "1") == version
    invite = (await accord.hs.event_store.get_events_by_nid([event_nid]))[event_nid]
    assert invite.sender == bob.user_id and invite.outlier

    assert await accord.hs.membership.join(room, accord.alice) == room_id
    await bob.sync_until(lambda s: _synapse_membership(s, room_id, accord.alice) == "join")
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None
    await accord.hs.room_service.create_event(
        room, accord.alice, "m.room.message", {"msgtype": "m.text", "body": f"thanks {version}"}
    )
    await bob.sync_until(lambda s: any(
        e.get("content", {}).get("body") == f"thanks {version}" for e in timeline_events(s, room_id)))
    await bob.send_text(room_id, f"welcome {version}")
    assert (await _our_message(accord, room_id, f"welcome {version}"))["sender"] == bob.user_id


@pytest.mark.parametrize("version", VERSIONS)
async def test_we_invite_a_synapse_user_who_accepts(accord: Accord, bob: SynapseClient, version: str) -> None:  # noqa: F811
    room_id = await create_room(accord.hs, accord.alice, {
        "preset": "private_chat", "room_version": version, "name": f"Ours v{version}"})
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None
    invite = await accord.hs.membership.invite(room, accord.alice, bob.user_id)
    await _synapse_accepts(accord, bob, room_id, invite.event, f"Ours v{version}", f"hi from synapse {version}")
    await accord.hs.room_service.create_event(
        room, accord.alice, "m.room.message", {"msgtype": "m.text", "body": f"hi from accord {version}"}
    )
    await bob.sync_until(lambda s: any(
        e.get("content", {}).get("body") == f"hi from accord {version}" for e in timeline_events(s, room_id)))


@pytest.mark.parametrize("version", VERSIONS)
async def test_rejections_both_ways(accord: Accord, bob: SynapseClient, version: str) -> None:  # noqa: F811
    # Ours rejects an invite from Synapse: the leave goes through make_leave/send_leave.
    theirs = await bob.create_room(preset="private_chat", room_version=version)
    await bob.invite(theirs, accord.alice)
    room, (_, event_nid, _) = await _our_membership(accord, theirs, accord.alice, "invite")
    invite = (await accord.hs.event_store.get_events_by_nid([event_nid]))[event_nid]
    await accord.hs.membership.leave(room, accord.alice, reason="no thanks")
    await _our_membership(accord, theirs, accord.alice, "leave")
    async with asyncio.timeout(20):
        while True:
            member = await bob.state_event(theirs, "m.room.member", accord.alice)
            if member.get("membership") == "leave":
                break
            await asyncio.sleep(0.1)
    assert member.get("reason") == "no thanks"
    leave_nid = (await accord.hs.room_store.membership_of(room.room_nid, accord.alice))[1]  # type: ignore[index]
    assert leave_nid != invite.nid

    # A Synapse user rejects ours: we see the leave arrive in our room.
    ours = await create_room(accord.hs, accord.alice, {"preset": "private_chat", "room_version": version})
    our_room = await accord.hs.room_store.get_room(ours)
    assert our_room is not None
    await accord.hs.membership.invite(our_room, accord.alice, bob.user_id)
    await bob.sync_until(lambda s: ours in s.get("rooms", {}).get("invite", {}))
    await bob.leave(ours)
    await _our_membership(accord, ours, bob.user_id, "leave")


@pytest.mark.parametrize("version", ["1", "2"])
async def test_v1_invite_to_synapse(accord: Accord, bob: SynapseClient, version: str) -> None:  # noqa: F811
    """`PUT /v1/invite`, what we send to a server without the v2 endpoint (rooms of versions 1
    and 2 only): Synapse takes the bare event with the stripped state in its `unsigned`,
    countersigns it and answers `[200, {"event": ...}]`; the invite then works as any other."""
    room_id = await create_room(accord.hs, accord.alice, {
        "preset": "private_chat", "room_version": version, "name": f"Legacy invite v{version}"})
    room = await accord.hs.room_store.get_room(room_id)
    assert room is not None
    invites = accord.hs.federated_invites

    async def through_v1(event: dict[str, Any]) -> dict[str, Any]:
        return await invites.send_invite_v1(room, event)

    invite = await accord.hs.room_service.create_event(
        room, accord.alice, "m.room.member", {"membership": "invite"}, state_key=bob.user_id,
        before_persist=through_v1,
    )
    assert "invite_room_state" not in invite.event.get("unsigned", {})
    await _synapse_accepts(
        accord, bob, room_id, invite.event, f"Legacy invite v{version}", f"joined by a v1 invite {version}"
    )
