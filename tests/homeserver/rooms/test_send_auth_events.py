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


async def test_a_first_join_does_not_copy_the_whole_state(
    db_overrides: dict[str, Any], make_api: ClientFactory
) -> None:
    """A user's first join has a member key no room holds yet: its auth events are found
    by looking that key up, not by copying the room's whole state (a member per key)."""
    api = await make_api(**db_overrides)
    alice = await user(api, "alice")
    room_id = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    for name in ("bob", "carol"):
        await api.post(f"rooms/{room_id}/join", {}, token=await user(api, name))
    reader = api.hs.room_service.reader
    whole = reader.state_ids_at_snapshot
    copies = 0

    async def counted(snapshot: int | None) -> Any:
        nonlocal copies
        copies += 1
        return await whole(snapshot)

    reader.state_ids_at_snapshot = counted  # type: ignore[method-assign]
    dave = await user(api, "dave")
    await api.post(f"rooms/{room_id}/join", {}, token=dave)
    assert copies == 0
    state = await api.get(f"rooms/{room_id}/state", token=alice)
    join = next(ev for ev in state if ev["type"] == "m.room.member" and ev["state_key"] == uid("dave"))
    assert join["content"]["membership"] == "join"
    by_type = {ev["event_id"]: ev["type"] for ev in state}
    stored = await api.hs.room_service.get_event(join["event_id"])
    assert stored is not None
    # The join cites the room's power levels and join rules (and, before room version
    # 12, its create event), and no membership: dave had none.
    cited = sorted(by_type[e] for e in stored.event["auth_events"])
    assert [t for t in cited if t != "m.room.create"] == ["m.room.join_rules", "m.room.power_levels"]
