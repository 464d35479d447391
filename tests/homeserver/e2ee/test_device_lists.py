"""Device lists: /sync's device_lists (changed after another user's login or
device deletion, after mark_changed, after sharing a new encrypted room; left
after the last shared encrypted room is left), GET /keys/changes, wake-ups, and
an idle incremental sync reading nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    leave,
    room_with_bob,
    uid,
    user,
)

ENCRYPTION = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


async def _sync(api: Api, token: str, since: str | None = None) -> tuple[dict[str, Any], str]:
    await api.hs.device_lists.drain()
    body = await api.get("sync" + (f"?since={since}" if since else ""), token=token)
    return body.get("device_lists", {}), body["next_batch"]


async def test_changed_after_login_and_mark_changed(api: Api) -> None:
    alice, bob, _room = await room_with_bob(api)
    carol = await user(api, "carol")
    _, since = await _sync(api, alice)
    _, carol_since = await _sync(api, carol)
    await api.login("bob", device_id="NEWDEVICE")
    lists, since = await _sync(api, alice, since)
    assert lists == {"changed": [uid("bob")], "left": []}
    # carol shares no room with bob: nothing for her.
    lists, carol_since = await _sync(api, carol, carol_since)
    assert lists == {}
    await api.hs.device_lists.mark_changed(uid("bob"))
    lists, since = await _sync(api, alice, since)
    assert lists == {"changed": [uid("bob")], "left": []}
    # The user's own changes are theirs to see too.
    _, bob_since = await _sync(api, bob)
    await api.hs.device_lists.mark_changed(uid("bob"))
    lists, _ = await _sync(api, bob, bob_since)
    assert lists["changed"] == [uid("bob")]


async def test_changed_after_device_deletion(api: Api) -> None:
    alice, _bob, _room = await room_with_bob(api)
    second = (await api.login("bob", device_id="SECOND"))["access_token"]
    _, since = await _sync(api, alice)
    await api.post("logout", {}, token=second)
    lists, _ = await _sync(api, alice, since)
    assert lists == {"changed": [uid("bob")], "left": []}


async def test_encrypted_room_join_and_leave(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    room = await create(api, alice, initial_state=[ENCRYPTION])
    _, a_since = await _sync(api, alice)
    _, b_since = await _sync(api, bob)
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    lists, a_since = await _sync(api, alice, a_since)
    assert lists == {"changed": [uid("bob")], "left": []}
    lists, b_since = await _sync(api, bob, b_since)
    assert lists == {"changed": [uid("alice")], "left": []}
    await leave(api, room, bob)
    lists, a_since = await _sync(api, alice, a_since)
    assert lists == {"changed": [], "left": [uid("bob")]}
    lists, b_since = await _sync(api, bob, b_since)
    assert lists == {"changed": [], "left": [uid("alice")]}


async def test_still_sharing_another_encrypted_room_is_not_left(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    rooms = [await create(api, alice, initial_state=[ENCRYPTION]) for _ in range(2)]
    for room in rooms:
        await invite(api, room, alice, "bob")
        await join(api, room, bob)
    _, since = await _sync(api, alice)
    await leave(api, rooms[0], bob)
    lists, since = await _sync(api, alice, since)
    assert lists == {}
    await leave(api, rooms[1], bob)
    lists, _ = await _sync(api, alice, since)
    assert lists == {"changed": [], "left": [uid("bob")]}


async def test_room_becoming_encrypted(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    _, since = await _sync(api, alice)
    await api.put(f"rooms/{room}/state/m.room.encryption/", ENCRYPTION["content"], token=alice)
    lists, _ = await _sync(api, alice, since)
    assert lists == {"changed": [uid("bob")], "left": []}


async def test_keys_changes(api: Api) -> None:
    alice, _bob, _room = await room_with_bob(api)
    _, start = await _sync(api, alice)
    await api.hs.device_lists.mark_changed(uid("bob"))
    _, end = await _sync(api, alice, start)
    await api.hs.device_lists.mark_changed(uid("alice"))
    body = await api.get(f"keys/changes?from={start}&to={end}", token=alice)
    assert body == {"changed": [uid("bob")], "left": []}
    body = await api.get(f"keys/changes?from={end}&to={end}", token=alice)
    assert body == {"changed": [], "left": []}
    err = (await api.request("GET", f"keys/changes?from={start}", token=alice, expect=400))[1]
    assert err["errcode"] == "M_MISSING_PARAM"
    err = (await api.request("GET", f"keys/changes?from=nope&to={end}", token=alice, expect=400))[1]
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_change_wakes_room_mates(api: Api) -> None:
    alice, _bob, _room = await room_with_bob(api)
    _, since = await _sync(api, alice)
    waiting = asyncio.ensure_future(api.get(f"sync?since={since}&timeout=20000", token=alice))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await api.hs.device_lists.mark_changed(uid("bob"))
    body = await asyncio.wait_for(waiting, 5)
    assert body["device_lists"]["changed"] == [uid("bob")]


async def test_idle_sync_reads_no_device_lists(api: Api) -> None:
    alice, _bob, _room = await room_with_bob(api)
    _, since = await _sync(api, alice)
    store = api.hs.device_lists.store

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an idle sync read the device-list stream")

    store.changes = refuse  # type: ignore[method-assign]
    store.room_mates = refuse  # type: ignore[method-assign]
    store.encrypted_room_members = refuse  # type: ignore[method-assign]
    _, again = await _sync(api, alice, since)
    assert again == since
    # Other streams moving (a message) does not make this one read either.
    await api.put(f"rooms/{_room}/send/m.room.message/x", {"body": "hi"}, token=alice)
    await _sync(api, alice, since)


async def test_a_window_too_long_reports_every_room_mate(api: Api, monkeypatch: Any) -> None:
    from homeserver.e2ee import device_lists

    monkeypatch.setattr(device_lists, "_MAX_WINDOW_ROWS", 2)
    alice, _bob, _room = await room_with_bob(api)
    _, since = await _sync(api, alice)
    for _ in range(3):
        await api.hs.device_lists.mark_changed(uid("alice"))
    lists, _ = await _sync(api, alice, since)
    assert lists == {"changed": [uid("alice"), uid("bob")], "left": []}
