"""Typing notifications: PUT /rooms/{roomId}/typing/{userId}, expiry on the
server's clock, the typing stream /sync reads and who gets woken."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, ClientFactory, FakeClock
from tests.homeserver.api.reading_helpers import create, leave, room_with_bob, uid, user


async def _type(api: Api, room: str, token: str, name: str, body: dict[str, Any], expect: int = 200) -> Any:
    return (await api.request("PUT", f"rooms/{room}/typing/{uid(name)}", body, token=token, expect=expect))[1]


async def _settle(api: Api) -> None:
    # Wake-ups after expiry run as a task (the room's members are looked up first).
    await api.hs.typing.drain()


async def test_typing_start_stop_and_stream(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    typing = api.hs.typing
    start = typing.current_position()
    assert typing.typing_events_since(room, start) is None
    assert await _type(api, room, alice, "alice", {"typing": True, "timeout": 10_000}) == {}
    assert typing.current_position() == start + 1
    assert typing.typing_events_since(room, start) == {"type": "m.typing", "content": {"user_ids": [uid("alice")]}}
    assert typing.typing_events_since(room, start + 1) is None
    await _type(api, room, bob, "bob", {"typing": True, "timeout": 10_000})
    assert typing.typing_events_since(room, start)["content"]["user_ids"] == [uid("alice"), uid("bob")]
    # Refreshing "still typing" changes nothing anyone sees: no new position.
    pos = typing.current_position()
    await _type(api, room, alice, "alice", {"typing": True, "timeout": 20_000})
    assert typing.current_position() == pos
    await _type(api, room, alice, "alice", {"typing": False})
    assert typing.current_position() == pos + 1
    assert typing.typing_events_since(room, pos) == {"type": "m.typing", "content": {"user_ids": [uid("bob")]}}
    # Stopping when not typing is accepted and is no change.
    await _type(api, room, alice, "alice", {"typing": False})
    assert typing.current_position() == pos + 1


async def test_typing_errors(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    carol = await user(api, "carol")
    # Only for yourself.
    err = await _type(api, room, alice, "bob", {"typing": True}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Only in rooms you are joined to (unknown rooms answer the same).
    err = await _type(api, room, carol, "carol", {"typing": True}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    err = await _type(api, "!nope:test.local", alice, "alice", {"typing": True}, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Body validation.
    err = await _type(api, room, alice, "alice", {"timeout": 1000}, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    err = await _type(api, room, alice, "alice", {"typing": "yes"}, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    err = await _type(api, room, alice, "alice", {"typing": True, "timeout": "30s"}, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    err = await _type(api, room, alice, "alice", {"typing": True, "timeout": -1}, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    status, err = await api.request("PUT", f"rooms/{room}/typing/{uid('alice')}", {"typing": True}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert api.hs.typing.typing_users(room) == []


async def test_typing_expires_on_the_server_clock(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    alice, bob, room = await room_with_bob(api)
    typing = api.hs.typing
    await _type(api, room, alice, "alice", {"typing": True, "timeout": 5_000})
    await _type(api, room, bob, "bob", {"typing": True})  # no timeout: the 30 s default
    pos = typing.current_position()
    waiter = api.hs.notifier.register(uid("bob"))
    clock.advance(4_999)
    typing.expire()
    await _settle(api)
    assert typing.typing_users(room) == [uid("alice"), uid("bob")]
    assert not waiter.woken
    clock.advance(1)
    typing.expire()
    await _settle(api)
    assert typing.typing_users(room) == [uid("bob")]
    assert waiter.woken  # the timer's expiry wakes the room
    assert typing.typing_events_since(room, pos) == {"type": "m.typing", "content": {"user_ids": [uid("bob")]}}
    # A read alone expires lazily, too.
    clock.advance(25_000)
    assert typing.typing_events_since(room, pos) == {"type": "m.typing", "content": {"user_ids": []}}


async def test_typing_timeout_is_capped(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    alice, _, room = await room_with_bob(api)
    await _type(api, room, alice, "alice", {"typing": True, "timeout": 3_600_000})
    clock.advance(30_001)
    assert api.hs.typing.typing_users(room) == []


async def test_typing_wakes_members_only(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    carol = await user(api, "carol")
    await create(api, carol)  # carol is in another room of her own
    await api.hs.presence.drain()
    waiters = {name: api.hs.notifier.register(uid(name)) for name in ("alice", "bob", "carol")}
    await _type(api, room, alice, "alice", {"typing": True})
    assert waiters["alice"].woken and waiters["bob"].woken
    assert not waiters["carol"].woken


async def test_leaving_stops_typing(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    await _type(api, room, bob, "bob", {"typing": True})
    pos = api.hs.typing.current_position()
    await leave(api, room, bob)
    await _settle(api)
    assert api.hs.typing.typing_users(room) == []
    assert api.hs.typing.typing_events_since(room, pos) == {"type": "m.typing", "content": {"user_ids": []}}


async def test_initial_and_stale_positions(api: Api) -> None:
    alice, _, room = await room_with_bob(api)
    typing = api.hs.typing
    # Initial sync (0): an empty set is not worth sending, a non-empty one is.
    assert typing.typing_events_since(room, 0) is None
    await _type(api, room, alice, "alice", {"typing": True})
    await _type(api, room, alice, "alice", {"typing": False})
    assert typing.typing_events_since(room, 0) is None
    await _type(api, room, alice, "alice", {"typing": True})
    assert typing.typing_events_since(room, 0)["content"]["user_ids"] == [uid("alice")]
    # A token from before a restart (beyond the current position) is answered like 0.
    assert typing.typing_events_since(room, typing.current_position() + 100)["content"]["user_ids"] == [uid("alice")]
