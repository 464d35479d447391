"""Unread notification counts in /sync follow push rules and reset with receipts."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api


async def _counts(api: Api, token: str, room: str) -> dict[str, int]:
    body = await api.get("sync", token=token)
    return body["rooms"]["join"][room]["unread_notifications"]


async def _send(api: Api, token: str, room: str, txn: str, content: dict[str, Any]) -> str:
    return (await api.put(f"rooms/{room}/send/m.room.message/{txn}", content, token=token))["event_id"]


async def test_counts_follow_rules_and_receipts(api: Api) -> None:
    alice = (await api.register("alice"))["access_token"]
    bob = (await api.register("bob"))["access_token"]
    carol = (await api.register("carol"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=carol)  # three members: not a one-to-one room
    assert await _counts(api, bob, room) == {"notification_count": 0, "highlight_count": 0}

    first = await _send(api, alice, room, "1", {"msgtype": "m.text", "body": "hello all"})
    await _send(api, alice, room, "2", {"msgtype": "m.notice", "body": "a bot notice"})  # never notifies
    await _send(api, alice, room, "3", {"msgtype": "m.text", "body": "ping",
                                         "m.mentions": {"user_ids": ["@bob:test.local"]}})
    await _send(api, bob, room, "4", {"msgtype": "m.text", "body": "my own"})  # own events never count
    assert await _counts(api, bob, room) == {"notification_count": 2, "highlight_count": 1}
    # Counts are cached per sync; a later event adds to them.
    await _send(api, carol, room, "5", {"msgtype": "m.text", "body": "more"})
    assert await _counts(api, bob, room) == {"notification_count": 3, "highlight_count": 1}

    # A read receipt moves the start: only what came after it counts.
    await api.post(f"rooms/{room}/receipt/m.read/{first}", {}, token=bob)
    assert await _counts(api, bob, room) == {"notification_count": 2, "highlight_count": 1}

    # With the master rule on, new events no longer notify (those already counted
    # stay, as rules apply when an event arrives).
    await api.put("pushrules/global/override/.m.rule.master/enabled", {"enabled": True}, token=bob)
    await _send(api, alice, room, "6", {"msgtype": "m.text", "body": "quiet",
                                         "m.mentions": {"user_ids": ["@bob:test.local"]}})
    assert await _counts(api, bob, room) == {"notification_count": 2, "highlight_count": 1}


async def test_one_to_one_rooms_notify(api: Api) -> None:
    alice = (await api.register("alice"))["access_token"]
    bob = (await api.register("bob"))["access_token"]
    room = (await api.post("createRoom", {"invite": ["@bob:test.local"], "is_direct": True}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await _send(api, alice, room, "1", {"msgtype": "m.text", "body": "hi"})
    assert (await _counts(api, bob, room))["notification_count"] == 1
