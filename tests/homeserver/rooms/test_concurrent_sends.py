"""Many sends into one room at once, on both engines.

On SQLite an event that changes no state is queued behind the room's previous one
before that one is committed (homeserver/rooms/persist.py, queue_local_event), so
the room's lock is not held across commits; on PostgreSQL it is. Either way the
room's events must form one line, in stream order, each citing the one before;
a retried transaction must answer with its first event; and an event built on a
queued one whose write fails must be built again, not lost or left citing nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.rooms.persist import ClientTxn
from tests.conftest import Api, ClientFactory
from tests.homeserver.api.reading_helpers import uid, user


async def _timeline(api: Api, room: str, token: str) -> list[dict[str, Any]]:
    page = await api.get(f"rooms/{room}/messages?dir=f&limit=1000", token=token)
    return list(page["chunk"])


async def _pdus(api: Api, event_ids: list[str]) -> list[dict[str, Any]]:
    stored = await api.hs.room_service.events.get_events(event_ids)
    return [stored[e].event for e in event_ids]


async def test_concurrent_sends_form_one_line(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    before = await _timeline(api, room, alice)

    async def send(i: int, token: str) -> str:
        body = {"msgtype": "m.text", "body": f"message {i}"}
        return str((await api.put(f"rooms/{room}/send/m.room.message/t{i}", body, token=token))["event_id"])

    async def topic() -> str:
        return str((await api.put(f"rooms/{room}/state/m.room.topic/", {"topic": "busy"}, token=alice))["event_id"])

    # 40 messages from two senders, a state event among them, and a retry of one
    # message's transaction while the first attempt may still be queued.
    jobs = [send(i, alice if i % 2 else bob) for i in range(40)]
    jobs.insert(20, topic())
    jobs.append(send(7, alice))
    ids = await asyncio.gather(*jobs)
    assert ids[-1] == ids[7]  # the retry of t7 answers with its first event
    sent = set(ids)
    assert len(sent) == 41

    timeline = await _timeline(api, room, alice)
    new = [e["event_id"] for e in timeline[len(before):]]
    assert set(new) == sent and len(new) == 41  # each once, in stream order
    pdus = await _pdus(api, [before[-1]["event_id"], *new])
    for prev, pdu in zip(pdus, pdus[1:], strict=False):
        assert pdu["prev_events"] == [prev["event_id"]]
        assert pdu["depth"] == prev["depth"] + 1
    head = await api.hs.room_service.head(await api.hs.room_service.get_room(room))
    stored_last = await api.hs.room_service.get_event(new[-1])
    assert stored_last is not None and head.extremities == [stored_last.nid]
    # bob's sync agrees: the topic is the room's, the messages all there.
    sync = await api.get("sync", token=bob)
    joined = sync["rooms"]["join"][room]
    assert any(e["type"] == "m.room.topic" for e in joined["state"]["events"] + joined["timeline"]["events"])


async def test_event_built_on_a_failed_queued_event_is_built_again(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    alice = await user(api, "alice")
    room_id = (await api.post("createRoom", {}, token=alice))["room_id"]
    first = (await api.put(f"rooms/{room_id}/send/m.room.message/once", {"msgtype": "m.text", "body": "1"},
                           token=alice))["event_id"]
    rooms = api.hs.room_service
    room = await rooms.get_room(room_id)
    device = (await api.get("account/whoami", token=alice))["device_id"]
    retried = ClientTxn(uid("alice"), device, f"send {room_id} m.room.message", "once")
    # A retry older than what is remembered in memory: only the database's unique key
    # catches it, when its write fails; the send queued behind it fails with it.
    rooms._recent_txns.clear()
    again, behind = await asyncio.gather(
        rooms.create_event(room, uid("alice"), "m.room.message", {"msgtype": "m.text", "body": "1"}, txn=retried),
        rooms.create_event(room, uid("alice"), "m.room.message", {"msgtype": "m.text", "body": "2"}),
    )
    assert again.event_id == first
    timeline = [e["event_id"] for e in await _timeline(api, room_id, alice)]
    assert timeline[-2:] == [first, behind.event_id]
    assert behind.event["prev_events"] == [first]
    head = await rooms.head(room)
    assert head.extremities == [behind.nid]


async def test_retry_beyond_the_remembered_sends_answers_its_first_event(
    db_overrides: dict[str, Any], make_api: ClientFactory, monkeypatch: Any
) -> None:
    # Only the latest sends' transactions are kept in memory; an older retry is answered
    # by the database's unique key with the same event, and nothing new is sent.
    monkeypatch.setattr("homeserver.rooms.service.RECENT_TXNS", 2)
    api = await make_api(**db_overrides)
    alice = await user(api, "alice")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    sent = [
        (await api.put(f"rooms/{room}/send/m.room.message/r{i}", {"msgtype": "m.text", "body": str(i)},
                       token=alice))["event_id"]
        for i in range(4)
    ]
    assert len(api.hs.room_service._recent_txns) == 2
    again = await api.put(f"rooms/{room}/send/m.room.message/r0", {"msgtype": "m.text", "body": "0"}, token=alice)
    assert again["event_id"] == sent[0]
    timeline = [e["event_id"] for e in await _timeline(api, room, alice) if e["type"] == "m.room.message"]
    assert timeline == sent


async def test_sends_clear_a_stored_resolved_head(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    """A room's stored resolved head (written when events from elsewhere leave it with
    several extremities) is stale once a local event cites them all: the first of a
    burst of sends drops it, the ones queued behind it have none left to drop, and
    each moves the room's one extremity on to itself."""
    api = await make_api(**db_overrides)
    alice = await user(api, "alice")
    room_id = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    room = await api.hs.room_service.find_room(room_id)
    assert room is not None
    snapshot = (await api.hs.room_service.heads.get(room)).snapshot
    assert snapshot is not None

    async def store_head(txn: Any) -> None:
        await txn.execute("INSERT INTO room_heads (room_nid, snapshot_nid) VALUES (?, ?)", (room.room_nid, snapshot))

    for burst in range(2):
        await api.hs.db.write(store_head)
        assert await api.hs.room_store.head_snapshot(room.room_nid) == snapshot
        sent = await asyncio.gather(*(
            api.put(f"rooms/{room_id}/send/m.room.message/b{burst}_{i}", {"msgtype": "m.text", "body": "x"}, token=alice)
            for i in range(10)
        ))
        assert await api.hs.room_store.head_snapshot(room.room_nid) is None
        # The room's one forward extremity is the last event written, moved along the burst.
        last = (await _timeline(api, room_id, alice))[-1]["event_id"]
        assert last in {s["event_id"] for s in sent}
        stored = await api.hs.room_service.get_event(last)
        assert stored is not None
        assert await api.hs.room_store.forward_extremities(room.room_nid) == [stored.nid]
