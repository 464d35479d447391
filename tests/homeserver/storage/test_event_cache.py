"""The event cache never hands back an event in a place it has left: an outlier that a
backfill promotes into the timeline (it gets a stream position) while a reader had
cached its outlier row is read afresh by timeline reads, and dropped from the cache
rather than kept stale (a /messages during the backfill right after a join answered
500 on the stale copy). Real database, both engines."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.conftest import ClientFactory


async def test_timeline_reads_replace_a_stale_outlier_copy(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    room_id = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    event_id = (await api.put(f"rooms/{room_id}/send/m.room.message/t1", {"msgtype": "m.text", "body": "x"},
                              token=owner))["event_id"]
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    stored = await hs.event_store.get_event(event_id)
    assert stored is not None and stored.stream_ordering is not None
    # What a reader that read the row before the promotion committed left behind.
    hs.event_store.remember(dataclasses.replace(stored, stream_ordering=None, outlier=True))

    page = await hs.event_store.room_stream(
        room.room_nid, from_pos=hs.room_service.stream.current, to_pos=None, backwards=True, limit=5
    )
    found = next(e for e in page if e.event_id == event_id)
    assert found.stream_ordering == stored.stream_ordering and not found.outlier
    again = await hs.event_store.get_event(event_id)
    assert again is not None and again.stream_ordering == stored.stream_ordering
    # And /messages shows it.
    messages = await api.get(f"rooms/{room_id}/messages?dir=b&limit=5", token=owner)
    assert event_id in [e["event_id"] for e in messages["chunk"]]
