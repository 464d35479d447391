"""A message's auth events are those of the room's state it is built on: kept between
a sender's messages (homeserver/rooms/service.py `_auth_events`), they follow every
state change, so a sender the room's power levels now forbid is refused, and the next
allowed message cites the new power levels and the sender's new membership."""

from __future__ import annotations

from typing import Any

from tests.conftest import ClientFactory
from tests.homeserver.api.reading_helpers import send, uid, user


async def test_auth_events_follow_the_state(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room_id = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room_id}/join", {}, token=bob)

    async def auth_events(event_id: str) -> set[str]:
        stored = await api.hs.room_service.get_event(event_id)
        assert stored is not None
        return set(stored.event["auth_events"])

    def state_id(event: dict[str, Any]) -> str:
        return str(event["event_id"])

    first, second = await send(api, room_id, bob, "one"), await send(api, room_id, bob, "two")
    assert await auth_events(first) == await auth_events(second)

    levels = await api.get(f"rooms/{room_id}/state/m.room.power_levels/", token=alice)
    forbidding = state_id(await api.put(
        f"rooms/{room_id}/state/m.room.power_levels/", {**levels, "events": {"m.room.message": 50}}, token=alice
    ))
    status, body = await api.request(
        "PUT", f"rooms/{room_id}/send/m.room.message/refused", {"msgtype": "m.text", "body": "no"},
        token=bob, expect=None,
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert forbidding in await auth_events(await send(api, room_id, alice, "still allowed"))

    allowing = state_id(await api.put(
        f"rooms/{room_id}/state/m.room.power_levels/", {**levels, "events": {"m.room.message": 0}}, token=alice
    ))
    third = await send(api, room_id, bob, "three")
    assert allowing in await auth_events(third) and forbidding not in await auth_events(third)

    # bob's membership changes (a new display name): his next message cites the new one.
    renamed = state_id(await api.put(
        f"rooms/{room_id}/state/m.room.member/{uid('bob')}", {"membership": "join", "displayname": "B"},
        token=bob,
    ))
    assert renamed in await auth_events(await send(api, room_id, bob, "four"))
