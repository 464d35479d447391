"""unread_thread_notifications in /sync: counts split between the main timeline and
each thread, moved by threaded read receipts, when the room filter asks."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import send, uid, user
from tests.homeserver.relations.helpers import reply_in_thread, send_event

THREADED = quote(json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}}))


async def _room_entry(api: Api, token: str, room: str, threaded: bool = True) -> dict[str, Any]:
    body = await api.get(f"sync?filter={THREADED}" if threaded else "sync", token=token)
    return body["rooms"]["join"][room]


def _c(n: int, h: int = 0) -> dict[str, int]:
    return {"notification_count": n, "highlight_count": h}


async def test_counts_per_thread_and_threaded_receipts(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=carol)  # three members: not a one-to-one room
    root = await send(api, room, alice, "root")
    r1 = await reply_in_thread(api, room, alice, root, "one")
    await send_event(api, room, alice, "m.room.message", {
        "msgtype": "m.text", "body": "two", "m.mentions": {"user_ids": [uid("bob")]},
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    })
    main2 = await send(api, room, carol, "main two")
    entry = await _room_entry(api, bob, room)
    assert entry["unread_notifications"] == _c(2)  # root and "main two"
    assert entry["unread_thread_notifications"] == {root: _c(2, 1)}
    # Without the filter flag: one count for everything, no per-thread part.
    plain = await _room_entry(api, bob, room, threaded=False)
    assert plain["unread_notifications"] == _c(4, 1)
    assert "unread_thread_notifications" not in plain

    # A receipt in the thread reads the thread only, up to its event.
    await api.post(f"rooms/{room}/receipt/m.read/{r1}", {"thread_id": root}, token=bob)
    entry = await _room_entry(api, bob, room)
    assert entry["unread_notifications"] == _c(2)
    assert entry["unread_thread_notifications"] == {root: _c(1, 1)}
    # A receipt on the main timeline reads the main timeline only.
    await api.post(f"rooms/{room}/receipt/m.read/{main2}", {"thread_id": "main"}, token=bob)
    entry = await _room_entry(api, bob, room)
    assert entry["unread_notifications"] == _c(0)
    assert entry["unread_thread_notifications"] == {root: _c(1, 1)}
    # An unthreaded receipt reads everything before it.
    later = await send(api, room, carol, "later")
    await reply_in_thread(api, room, carol, root, "three")
    await api.post(f"rooms/{room}/receipt/m.read/{later}", {}, token=bob)
    entry = await _room_entry(api, bob, room)
    assert entry["unread_notifications"] == _c(0)
    assert entry["unread_thread_notifications"] == {root: _c(1)}
