"""An incremental sync skips the user's rooms with nothing new without computing an
entry for each (RoomEventsStream._not_quiet): what it leaves out must be exactly the
rooms that had nothing to say. A room with no new event still has an entry when a
stream that lives in rooms (typing, receipts, room account data) moved in it, and
membership changes since the token are still sent."""

from __future__ import annotations

from urllib.parse import quote

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    leave,
    room_with_bob,
    send,
    uid,
)


async def _rooms(api: Api) -> tuple[str, str, list[str]]:
    """alice's and bob's tokens and three rooms of alice's that bob joined."""
    alice, bob, first = await room_with_bob(api)
    rooms = [first, await create(api, alice, preset="public_chat"), await create(api, alice, preset="public_chat")]
    for room in rooms[1:]:
        await join(api, room, bob)
    return alice, bob, rooms


async def _since(api: Api, token: str) -> str:
    await api.hs.presence.drain()
    return str((await api.get("sync?timeout=0", token=token))["next_batch"])


async def test_only_rooms_with_news_have_entries(api: Api) -> None:
    alice, bob, (busy, quiet, other) = await _rooms(api)
    await send(api, other, alice, "before the token")
    since = await _since(api, bob)
    await send(api, busy, alice, "hello")
    body = await api.get(f"sync?since={since}&timeout=0", token=bob)
    assert set(body["rooms"]["join"]) == {busy}
    assert [e["content"]["body"] for e in body["rooms"]["join"][busy]["timeline"]["events"]] == ["hello"]


async def test_a_room_without_events_keeps_its_streams_parts(api: Api) -> None:
    alice, bob, (busy, typed, marked) = await _rooms(api)
    read = await send(api, marked, alice, "to be read")
    since = await _since(api, bob)
    await send(api, busy, alice, "hello")
    await api.put(f"rooms/{typed}/typing/{quote(uid('alice'))}", {"typing": True, "timeout": 10_000}, token=alice)
    await api.hs.typing.drain()
    await api.post(f"rooms/{marked}/receipt/m.read/{quote(read)}", {}, token=alice)
    await api.put(f"user/{quote(uid('bob'))}/rooms/{typed}/account_data/m.test", {"n": 1}, token=bob)
    body = await api.get(f"sync?since={since}&timeout=0", token=bob)
    joined = body["rooms"]["join"]
    assert set(joined) == {busy, typed, marked}
    assert joined[typed]["timeline"]["events"] == []
    assert [e["type"] for e in joined[typed]["ephemeral"]["events"]] == ["m.typing"]
    assert [e["type"] for e in joined[typed]["account_data"]["events"]] == ["m.test"]
    assert [e["type"] for e in joined[marked]["ephemeral"]["events"]] == ["m.receipt"]
    assert joined[marked]["account_data"]["events"] == []


async def test_membership_changes_since_the_token_are_sent(api: Api) -> None:
    alice, bob, (left_before, left_after, _) = await _rooms(api)
    await leave(api, left_before, bob)
    invited = await create(api, alice)
    since = await _since(api, bob)
    await leave(api, left_after, bob)
    await invite(api, invited, alice, "bob")
    body = await api.get(f"sync?since={since}&timeout=0", token=bob)
    assert set(body["rooms"].get("leave", {})) == {left_after}
    assert set(body["rooms"].get("invite", {})) == {invited}
    assert not body["rooms"].get("join")
