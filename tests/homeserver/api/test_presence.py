"""Presence: PUT/GET /presence/{userId}/status, who may see it, timeouts on the
server's clock, the presence stream /sync reads, and persistence across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.presence import ACTIVE_WINDOW_MS, IDLE_AFTER_MS, SYNC_OFFLINE_AFTER_MS
from tests.conftest import Api, ClientFactory, FakeClock, running_api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    room_with_bob,
    send,
    uid,
    user,
)


def _path(name: str) -> str:
    return f"presence/{uid(name)}/status"


async def _settle(api: Api) -> None:
    await api.hs.presence.drain()


def _senders(events: list[dict[str, Any]]) -> list[str]:
    return [e["sender"] for e in events]


async def test_set_and_get_presence(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    alice, bob, _ = await room_with_bob(api)
    assert await api.put(_path("alice"), {"presence": "online", "status_msg": "Here"}, token=alice) == {}
    clock.advance(1234)
    got = await api.get(_path("alice"), token=bob)
    assert got == {"presence": "online", "status_msg": "Here", "last_active_ago": 1234, "currently_active": True}
    assert await api.get(_path("alice"), token=alice) == got
    # A new state without status_msg clears it; currently_active only goes with online.
    await api.put(_path("alice"), {"presence": "unavailable"}, token=alice)
    assert await api.get(_path("alice"), token=bob) == {"presence": "unavailable", "last_active_ago": 0}
    # Someone who never set anything is offline.
    assert await api.get(_path("bob"), token=alice) == {"presence": "offline"}


async def test_presence_errors(api: Api) -> None:
    alice, bob, _ = await room_with_bob(api)
    carol = await user(api, "carol")
    _, err = await api.request("PUT", _path("bob"), {"presence": "online"}, token=alice, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("PUT", _path("alice"), {"presence": "away"}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("PUT", _path("alice"), {"status_msg": "hi"}, token=alice, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("PUT", _path("alice"), {"presence": "online", "status_msg": 3}, token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    # Only those who share a room see presence; unknown users are 404.
    _, err = await api.request("GET", _path("alice"), token=carol, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("GET", _path("nobody"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", _path("alice"), expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert await api.get(_path("alice"), token=bob) == {"presence": "offline"}


async def test_presence_stream_only_reaches_room_sharers(api: Api) -> None:
    alice, bob, _ = await room_with_bob(api)
    carol = await user(api, "carol")
    await create(api, carol)
    presence = api.hs.presence
    start = await presence.current_position()
    waiters = {n: api.hs.notifier.register(uid(n)) for n in ("alice", "bob", "carol")}
    await api.put(_path("alice"), {"presence": "online", "status_msg": "Here"}, token=alice)
    assert waiters["alice"].woken and waiters["bob"].woken
    assert not waiters["carol"].woken
    assert await presence.current_position() == start + 1
    events = await presence.presence_since(uid("bob"), start)
    assert _senders(events) == [uid("alice")]
    assert events[0]["type"] == "m.presence"
    assert events[0]["content"]["presence"] == "online"
    assert events[0]["content"]["status_msg"] == "Here"
    assert _senders(await presence.presence_since(uid("alice"), start)) == [uid("alice")]
    assert await presence.presence_since(uid("carol"), start) == []
    assert await presence.presence_since(uid("bob"), start + 1) == []
    # Setting the same state again is no visible change.
    await api.put(_path("alice"), {"presence": "online", "status_msg": "Here"}, token=alice)
    assert await presence.current_position() == start + 1


async def test_sharing_a_room_later_shows_presence(api: Api) -> None:
    alice = await user(api, "alice")
    carol = await user(api, "carol")
    await api.put(_path("alice"), {"presence": "online"}, token=alice)
    assert await api.hs.presence.presence_since(uid("carol"), 0) == []
    room = await create(api, alice)
    await invite(api, room, alice, "carol")
    await join(api, room, carol)
    assert _senders(await api.hs.presence.presence_since(uid("carol"), 0)) == [uid("alice")]
    assert (await api.get(_path("alice"), token=carol))["presence"] == "online"


async def test_sync_activity(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    alice, bob, _ = await room_with_bob(api)
    presence = api.hs.presence
    await presence.sync_activity(uid("alice"), "offline")  # does not bring anyone online
    assert (await presence.get_presence(uid("alice")))["presence"] == "offline"
    start = await presence.current_position()
    waiter = api.hs.notifier.register(uid("bob"))
    await presence.sync_activity(uid("alice"), None)  # the default: online
    assert waiter.woken
    assert await presence.get_presence(uid("alice")) == {"presence": "online", "last_active_ago": 0, "currently_active": True}
    # Syncing again is no change.
    await presence.sync_activity(uid("alice"), "online")
    assert await presence.current_position() == start + 1
    await presence.sync_activity(uid("alice"), "unavailable")
    assert (await presence.get_presence(uid("alice")))["presence"] == "unavailable"
    # An idle user who keeps syncing stays idle; sending a message is activity.
    await presence.sync_activity(uid("alice"), "online")
    assert (await presence.get_presence(uid("alice")))["presence"] == "unavailable"


async def test_activity_and_timeouts(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    alice, bob, room = await room_with_bob(api)
    presence = api.hs.presence
    await presence.sync_activity(uid("alice"), "online")
    await presence.sync_activity(uid("bob"), "online")
    # currently_active ends a minute after the last activity.
    clock.advance(ACTIVE_WINDOW_MS + 1)
    assert sorted(presence.check_timeouts()) == [uid("alice"), uid("bob")]
    assert (await presence.get_presence(uid("alice")))["currently_active"] is False
    # Sending a message is activity: currently active again, and everyone in the room hears.
    pos = await presence.current_position()
    waiter = api.hs.notifier.register(uid("bob"))
    await send(api, room, alice, "hello")
    await _settle(api)
    assert waiter.woken
    assert await presence.get_presence(uid("alice")) == {"presence": "online", "last_active_ago": 0, "currently_active": True}
    assert _senders(await presence.presence_since(uid("bob"), pos)) == [uid("alice")]
    # More activity while currently active moves nothing anyone is sent.
    pos = await presence.current_position()
    clock.advance(10_000)
    await send(api, room, alice, "again")
    await _settle(api)
    assert await presence.current_position() == pos
    assert (await presence.get_presence(uid("alice")))["last_active_ago"] == 0
    # Idle timeout: online -> unavailable after 5 minutes without activity (still syncing).
    clock.advance(IDLE_AFTER_MS - 10_000)
    await presence.sync_activity(uid("alice"), "online")
    await presence.sync_activity(uid("bob"), "online")
    clock.advance(10_001)
    presence.check_timeouts()
    assert (await presence.get_presence(uid("alice")))["presence"] == "unavailable"
    # Offline once a user stops syncing.
    await presence.sync_activity(uid("alice"), "online")
    clock.advance(SYNC_OFFLINE_AFTER_MS - 1)
    await presence.sync_activity(uid("bob"), "online")
    clock.advance(2)
    presence.check_timeouts()
    assert (await presence.get_presence(uid("alice")))["presence"] == "offline"
    assert (await presence.get_presence(uid("bob")))["presence"] == "unavailable"
    # Coming back online through a sync.
    await presence.sync_activity(uid("alice"), "online")
    assert (await presence.get_presence(uid("alice")))["presence"] == "online"


async def test_initial_presence_leaves_out_offline_users(api: Api) -> None:
    alice, bob, _ = await room_with_bob(api)
    await api.put(_path("alice"), {"presence": "online"}, token=alice)
    await api.put(_path("bob"), {"presence": "online"}, token=bob)
    pos = await api.hs.presence.current_position()
    await api.put(_path("alice"), {"presence": "offline"}, token=alice)
    # Incrementally, going offline is news; in an initial sync it is noise.
    events = await api.hs.presence.presence_since(uid("bob"), pos)
    assert _senders(events) == [uid("alice")]
    assert events[0]["content"]["presence"] == "offline"
    assert _senders(await api.hs.presence.presence_since(uid("bob"), 0)) == [uid("bob")]


async def test_presence_disabled(api: Api) -> None:
    alice, bob, _ = await room_with_bob(api)
    api.hs.presence.enabled = False
    assert await api.put(_path("alice"), {"presence": "online", "status_msg": "x"}, token=alice) == {}
    assert await api.get(_path("alice"), token=bob) == {"presence": "offline"}
    await api.hs.presence.sync_activity(uid("alice"), "online")
    assert await api.hs.presence.presence_since(uid("bob"), 0) == []
    # Access checks still apply.
    _, err = await api.request("PUT", _path("bob"), {"presence": "online"}, token=alice, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_presence_survives_restart(tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]) -> None:
    clock = FakeClock()
    async with running_api(tmp_path / "hs", aiohttp_client, clock=clock, **db_overrides) as api:
        hs = api.hs
        alice, bob, _ = await room_with_bob(api)
        await api.put(_path("alice"), {"presence": "unavailable", "status_msg": "In a meeting"}, token=alice)
        await api.put(_path("bob"), {"presence": "online"}, token=bob)
        clock.advance(5_000)
        await hs.presence.sync_activity(uid("bob"), "online")
        await hs.presence.flush()  # what the batching timer does a few seconds later
        pos = await hs.presence.current_position()
    clock.advance(1_000)
    async with running_api(tmp_path / "hs", aiohttp_client, clock=clock, **db_overrides) as api:
        hs = api.hs
        assert await api.get(_path("alice"), token=bob) == {
            "presence": "unavailable", "status_msg": "In a meeting", "last_active_ago": 6_000,
        }
        assert (await api.get(_path("bob"), token=alice))["presence"] == "online"
        # The stream continues where it was, and an initial sync still sees both.
        assert await hs.presence.current_position() == pos
        assert sorted(_senders(await hs.presence.presence_since(uid("bob"), 0))) == [uid("alice"), uid("bob")]


async def test_joining_a_room_announces_presence_to_new_room_mates(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await api.put(_path("bob"), {"presence": "online", "status_msg": "new here"}, token=bob)
    room = await create(api, alice)
    await invite(api, room, alice, "bob")
    pos = await api.hs.presence.current_position()
    assert await api.hs.presence.presence_since(uid("alice"), pos) == []
    await join(api, room, bob)
    await _settle(api)
    events = await api.hs.presence.presence_since(uid("alice"), pos)
    assert _senders(events) == [uid("bob")]
    assert events[0]["content"]["status_msg"] == "new here"
