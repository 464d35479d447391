"""Events another server ("remote.test") builds and signs, handed to the event
writer as if they had arrived over federation: how tests grow forks in a room's
DAG and remote members without running a second server."""

from __future__ import annotations

from typing import Any

from federation.events import (
    auth_types_for_event,
    build_event,
    get_room_version,
    select_auth_event_ids,
    signing_key_from_seed,
)
from homeserver.server import HomeServer
from homeserver.storage.rooms import RoomRecord

REMOTE_KEY = signing_key_from_seed(b"\x07" * 32, "r1")
REMOTE_SERVER = "remote.test"
REMOTE_USER = "@bob:remote.test"


async def state_ids(hs: HomeServer, room: RoomRecord, at: list[str] | None = None) -> dict[tuple[str, str], str]:
    """The current state (or the state after one event) as event IDs."""
    rs = hs.room_service
    if at is None:
        nids = await rs.current_state_ids(room)
    else:
        ev = await hs.event_store.get_event(at[0])
        assert ev is not None
        nids = await rs.state_ids_after(ev)
    by_nid = await hs.event_store.get_events_by_nid(nids.values())
    return {k: by_nid[n].event_id for k, n in nids.items()}


async def remote_event(
    hs: HomeServer, room: RoomRecord, event_type: str, content: dict[str, Any], *,
    state_key: str | None = None, prev: list[str] | None = None, sender: str = REMOTE_USER,
) -> dict[str, Any]:
    """An event as the remote server would build and sign it, on top of `prev`
    (default: our current extremities)."""
    rv = get_room_version(room.room_version)
    if prev is None:
        head = await hs.room_service.head(room)
        prev = [e.event_id for e in (await hs.event_store.get_events_by_nid(head.extremities)).values()]
    state = await state_ids(hs, room, at=prev[:1])
    partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
    if state_key is not None:
        partial["state_key"] = state_key
    assert auth_types_for_event(partial, rv)
    prev_events = await hs.event_store.get_events(prev)
    return build_event(
        rv, room_id=room.room_id, sender=sender, event_type=event_type, content=content,
        prev_events=prev, auth_events=select_auth_event_ids(partial, state, rv),
        depth=max(e.event["depth"] for e in prev_events.values()) + 1,
        origin_server_ts=hs.clock.time_ms(), state_key=state_key, signing_key=REMOTE_KEY,
        server_name=REMOTE_SERVER,
    )


async def receive(hs: HomeServer, room: RoomRecord, event: dict[str, Any]) -> str:
    """Persist a received event the way the federation receiver does (under the
    room's lock); its status: accepted, rejected, soft_failed, duplicate..."""
    async with hs.room_service.lock(room.room_id):
        return (await hs.received_events.persist(room, event)).status
