"""Pushers and delivery to a push gateway (written to the Push Gateway API, HTTPS on
loopback with the test CA), on both database engines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LOOPBACK_OUTBOUND, Api, running_api
from tests.homeserver.api.reading_helpers import send, uid, user
from tests.homeserver.push.gateway import PushGateway
from tests.tls_ca import TestCA


def push_config(ca: TestCA, **push: Any) -> dict[str, Any]:
    return {
        "outbound": LOOPBACK_OUTBOUND,
        "federation": {"enabled": False, "ca_bundle_path": str(ca.ca_path)},
        "push": {"retry_base_s": 0.05, "retry_cap_s": 0.2, **push},
    }


def pusher_body(url: str, pushkey: str = "key-1", **extra: Any) -> dict[str, Any]:
    data = {"url": url, **extra.pop("data", {})}
    return {
        "kind": "http", "app_id": "org.example.app", "pushkey": pushkey, "app_display_name": "Example",
        "device_display_name": "Phone", "lang": "en", "data": data, **extra,
    }


@pytest.fixture
async def gateway(ca: TestCA) -> AsyncIterator[PushGateway]:
    gw = PushGateway(ca)
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
async def push_api(db_overrides: dict[str, Any], make_api: Any, ca: TestCA) -> Api:
    return await make_api(**db_overrides, **push_config(ca))  # type: ignore[no-any-return]


async def _room(api: Api) -> tuple[str, str, str, str]:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat", "name": "Ops"}, token=alice))["room_id"]
    for t in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=t)
    return room, alice, bob, carol


async def test_notification_reaches_gateway_with_counts_and_badge_update(push_api: Api, gateway: PushGateway) -> None:
    api = push_api
    room, alice, bob, carol = await _room(api)
    await api.post("pushers/set", pusher_body(gateway.url, data={"custom": 1}, profile_tag="tag1"), token=bob)
    (listed,) = (await api.get("pushers", token=bob))["pushers"]
    assert listed["data"] == {"url": gateway.url, "custom": 1} and listed["profile_tag"] == "tag1"

    first = await send(api, room, alice, "hello there")
    (note,) = await gateway.wait_for(1)
    assert note["event_id"] == first and note["room_id"] == room
    assert note["counts"] == {"unread": 1}
    assert note["type"] == "m.room.message" and note["sender"] == uid("alice")
    assert note["room_name"] == "Ops" and note["content"]["body"] == "hello there"
    assert note["prio"] == "low"
    (device,) = note["devices"]
    assert device["app_id"] == "org.example.app" and device["pushkey"] == "key-1"
    assert device["data"] == {"custom": 1}  # everything but the url
    assert device["tweaks"] == {}  # .m.rule.message: notify, no tweaks
    assert isinstance(device["pushkey_ts"], int)

    second = await send(api, room, carol, "ping", **{"m.mentions": {"user_ids": [uid("bob")]}})
    notes = await gateway.wait_for(2)
    assert notes[1]["event_id"] == second and notes[1]["counts"] == {"unread": 2} and notes[1]["prio"] == "high"
    assert notes[1]["devices"][0]["tweaks"] == {"highlight": True, "sound": "default"}

    # Bob reads everything on another device: the gateway gets a badge-only update.
    other = (await api.login("bob"))["access_token"]
    await api.post(f"rooms/{room}/receipt/m.read/{second}", {}, token=other)
    notes = await gateway.wait_for(3)
    badge = notes[2]
    assert "event_id" not in badge and badge["counts"] == {}  # zero counts are omitted
    assert badge["devices"][0]["pushkey"] == "key-1"
    # Alice's own message never notifies her, nor does anything reach bob's pusher for it twice.
    assert gateway.events() == [first, second]


async def test_event_id_only_format_and_rejected_pushkey(push_api: Api, gateway: PushGateway) -> None:
    api = push_api
    room, alice, bob, _ = await _room(api)
    await api.post("pushers/set", pusher_body(gateway.url, data={"format": "event_id_only"}), token=bob)
    event_id = await send(api, room, alice, "secret text")
    (note,) = await gateway.wait_for(1)
    assert set(note) == {"event_id", "room_id", "counts", "prio", "devices"}
    assert note["event_id"] == event_id and note["devices"][0]["data"] == {"format": "event_id_only"}

    # The gateway says the pushkey is dead: the pusher goes.
    gateway.rejected.add("key-1")
    await send(api, room, alice, "again")
    await gateway.wait_for(2)
    for _ in range(200):
        if not (await api.get("pushers", token=bob))["pushers"]:
            break
        await _tick()
    assert (await api.get("pushers", token=bob))["pushers"] == []


async def test_gateway_errors_are_retried_and_a_hanging_gateway_holds_up_nobody_else(
    db_overrides: dict[str, Any], make_api: Any, ca: TestCA, gateway: PushGateway,
) -> None:
    import asyncio

    api = await make_api(**db_overrides, **push_config(ca, timeout_s=120))
    slow = PushGateway(ca)
    await slow.start()
    try:
        room, alice, bob, carol = await _room(api)
        slow.hang = asyncio.Event()
        await api.post("pushers/set", pusher_body(slow.url, pushkey="slow"), token=carol)
        await api.post("pushers/set", pusher_body(gateway.url, pushkey="fast"), token=bob)
        gateway.fail_next = 2  # two 500s, then accepted
        event_id = await send(api, room, alice, "hi all")
        (note,) = await gateway.wait_for(1)
        assert note["event_id"] == event_id and gateway.requests == 3
        assert slow.received == [] and slow.requests == 1  # still hanging, and nobody waited for it
        slow.hang.set()
        (late,) = await slow.wait_for(1)
        assert late["event_id"] == event_id
    finally:
        await slow.stop()


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.05)


async def test_notifications_queued_while_gateway_down_survive_a_restart(
    db_overrides: dict[str, Any], tmp_path: Path, aiohttp_client: Any, ca: TestCA,
) -> None:
    gateway = PushGateway(ca)  # not started: down
    overrides = {**db_overrides, **push_config(ca)}
    async with running_api(tmp_path / "hs", aiohttp_client, **overrides) as api:
        room, alice, bob, _ = await _room(api)
        await api.post("pushers/set", pusher_body(gateway.url), token=bob)
        sent = [await send(api, room, alice, f"message {i}") for i in range(3)]
        rows = await api.hs.db.fetchall("SELECT COUNT(*) FROM push_queue")
        assert rows[0][0] == 3
    await gateway.start()
    try:
        async with running_api(tmp_path / "hs", aiohttp_client, **overrides) as api:
            notes = await gateway.wait_for(3)
            assert [n["event_id"] for n in notes] == sent
            for _ in range(200):
                if (await api.hs.db.fetchall("SELECT COUNT(*) FROM push_queue"))[0][0] == 0:
                    break
                await _tick()
            assert (await api.hs.db.fetchall("SELECT COUNT(*) FROM push_queue"))[0][0] == 0
            later = await send(api, room, alice, "after the restart")
            notes = await gateway.wait_for(4)
        assert gateway.events() == [*sent, later]  # each exactly once
    finally:
        await gateway.stop()


async def test_fan_out_to_many_pushers_with_each_ones_badge(push_api: Api, gateway: PushGateway) -> None:
    """One message to a room where every member has a pusher: delivered in bulk
    rounds, each member's notification still carries that member's own badge (their
    unread notifications over all their rooms, after their own read receipt)."""
    api = push_api
    alice = await user(api, "alice")
    big = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    side = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    names = [f"m{n}" for n in range(12)]
    tokens = {name: await user(api, name) for name in names}
    for name in names:
        await api.post(f"rooms/{big}/join", {}, token=tokens[name])
    for name in names[:6]:  # half are also in a side room, with one unread message there
        await api.post(f"rooms/{side}/join", {}, token=tokens[name])
    await send(api, side, alice, "side note")
    for name in names:
        await api.post("pushers/set", pusher_body(gateway.url, pushkey=name), token=tokens[name])
    first = await send(api, big, alice, "to all")
    notes = await gateway.wait_for(12)
    by_key = {n["devices"][0]["pushkey"]: n for n in notes}
    assert sorted(by_key) == sorted(names) and all(n["event_id"] == first for n in notes)
    assert {k: n["counts"]["unread"] for k, n in by_key.items()} == {
        name: 2 if name in names[:6] else 1 for name in names}
    # m0 reads the side room (its badge drops: a badge-only update), then a second message.
    side_event = (await api.get(f"rooms/{side}/messages?dir=b&limit=1", token=tokens["m0"]))["chunk"][0]["event_id"]
    await api.post(f"rooms/{side}/receipt/m.read/{side_event}", {}, token=tokens["m0"])
    update = (await gateway.wait_for(13))[12]
    assert "event_id" not in update and update["counts"] == {"unread": 1}
    second = await send(api, big, alice, "again")
    later = {n["devices"][0]["pushkey"]: n for n in (await gateway.wait_for(25))[13:]}
    assert all(n["event_id"] == second for n in later.values()) and len(later) == 12
    assert later["m0"]["counts"] == {"unread": 2} and later["m1"]["counts"] == {"unread": 3}
    assert later["m11"]["counts"] == {"unread": 2}
    assert gateway.events().count(first) == 12 and gateway.events().count(second) == 12
