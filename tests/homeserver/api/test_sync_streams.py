"""Sync's stream providers: a stream is one provider registered with the sync
service (homeserver/sync/streams/), and the EDU registry routes each EDU type to
one handler (homeserver/federation/edus.py)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.federation.edus import EduRegistry, Submit
from homeserver.storage.rooms import RoomRecord
from homeserver.sync.streams import StreamProvider, SyncRequest
from homeserver.sync.tokens import SyncToken
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, user


class _ToDevice(StreamProvider):
    """A stand-in to-device stream: one message per position, for everyone."""

    key = "to_device"
    in_rooms = True

    def __init__(self) -> None:
        self.position = 0
        self.asked: list[tuple[int, int]] = []

    async def current_position(self) -> int:
        return self.position

    async def top_level(self, req: SyncRequest) -> dict[str, Any]:
        since, upto = req.since_pos(self.key), req.now.to_device
        self.asked.append((since, upto))
        events = [{"type": "m.test", "content": {"n": n}} for n in range(since + 1, upto + 1)]
        return {"to_device": {"events": events}} if events else {}

    async def room_part(self, req: SyncRequest, room: RoomRecord, membership: str) -> dict[str, list[dict[str, Any]]]:
        return {"ephemeral": [{"type": "m.test", "content": {}}]} if membership == "join" else {}


async def test_a_registered_stream_is_served_and_skipped_when_still(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    stream = _ToDevice()
    api.hs.sync.streams.append(stream)
    stream.position = 2
    await api.hs.presence.drain()  # alice's activity, before the token is read
    body = await api.get("sync", token=alice)
    assert SyncToken.parse(body["next_batch"]).to_device == 2
    assert [e["content"]["n"] for e in body["to_device"]["events"]] == [1, 2]
    assert {"type": "m.test", "content": {}} in body["rooms"]["join"][room]["ephemeral"]["events"]
    # Nothing moved: the stream is not asked again.
    asked = len(stream.asked)
    again = await api.get(f"sync?since={body['next_batch']}&timeout=0", token=alice)
    # (The device's key counts are in every response: homeserver/sync/streams/e2ee_key_counts.py.)
    again.pop("device_one_time_keys_count")
    again.pop("device_unused_fallback_key_types")
    assert again == {"next_batch": body["next_batch"]} and len(stream.asked) == asked
    # It moves: an incremental sync carries only what is new, and ends a long-poll.
    stream.position = 3
    later = await api.get(f"sync?since={body['next_batch']}&timeout=1000", token=alice)
    assert [e["content"]["n"] for e in later["to_device"]["events"]] == [3]


class _Edu:
    def __init__(self, edu_type: str) -> None:
        self.edu_type = edu_type
        self.received: list[tuple[str, dict[str, Any]]] = []

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        self.received.append((origin, content))

    def watch(self, submit: Submit) -> None:
        pass


async def test_edu_registry_routes_by_type_once() -> None:
    typing, receipts = _Edu("m.typing"), _Edu("m.receipt")
    registry = EduRegistry([typing, receipts])
    assert registry.handler("m.typing") is typing
    assert registry.handler("m.unknown") is None
    assert list(registry) == [typing, receipts]
    with pytest.raises(ValueError):
        registry.register(_Edu("m.typing"))
