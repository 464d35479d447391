"""Receipts and read markers: POST /rooms/{roomId}/receipt/{type}/{eventId},
POST /rooms/{roomId}/read_markers, the receipt stream /sync reads, private
receipts, threads, and who gets woken."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.conftest import Api, ClientFactory, FakeClock, running_api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    room_with_bob,
    send,
    set_visibility,
    uid,
    user,
)


async def _receipt(
    api: Api, room: str, token: str, event_id: str, receipt_type: str = "m.read",
    body: Any = None, expect: int = 200,
) -> Any:
    path = f"rooms/{room}/receipt/{receipt_type}/{quote(event_id)}"
    return (await api.request("POST", path, body if body is not None else {}, token=token, expect=expect))[1]


async def _since(api: Api, room: str, pos: int, name: str) -> dict[str, Any]:
    found = await api.hs.receipts.receipts_since([room], pos, uid(name))
    return found.get(room, {}).get("content", {})


async def test_public_receipt_stream_and_wakeups(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    carol = await user(api, "carol")
    await create(api, carol)
    e1 = await send(api, room, alice, "one")
    receipts = api.hs.receipts
    start = await receipts.current_position()
    await api.hs.presence.drain()  # sending was activity: let its wake-ups pass
    waiters = {n: api.hs.notifier.register(uid(n)) for n in ("alice", "bob", "carol")}
    assert await _receipt(api, room, bob, e1) == {}
    assert waiters["alice"].woken and waiters["bob"].woken
    assert not waiters["carol"].woken
    assert await receipts.current_position() == start + 1
    for viewer in ("alice", "bob"):
        content = await _since(api, room, start, viewer)
        assert list(content) == [e1]
        assert set(content[e1]) == {"m.read"}
        assert list(content[e1]["m.read"]) == [uid("bob")]
        assert isinstance(content[e1]["m.read"][uid("bob")]["ts"], int)
        assert "thread_id" not in content[e1]["m.read"][uid("bob")]
    found = await receipts.receipts_since([room], start, uid("alice"))
    assert found[room]["type"] == "m.receipt"
    # Nothing new after the current position; rooms without receipts are skipped.
    assert await receipts.receipts_since([room], start + 1, uid("alice")) == {}
    assert await receipts.receipts_since(["!other:test.local"], 0, uid("alice")) == {}
    # A later receipt replaces the earlier one in the stream.
    e2 = await send(api, room, alice, "two")
    await _receipt(api, room, bob, e2)
    content = await _since(api, room, 0, "alice")
    assert list(content) == [e2]


async def test_private_receipts_only_reach_their_owner(make_api: ClientFactory, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    alice, bob, room = await room_with_bob(api)
    e1 = await send(api, room, alice, "one")
    start = await api.hs.receipts.current_position()
    await api.hs.presence.drain()  # sending was activity: let its wake-ups pass
    waiters = {n: api.hs.notifier.register(uid(n)) for n in ("alice", "bob")}
    await _receipt(api, room, bob, e1, "m.read.private")
    assert waiters["bob"].woken
    assert not waiters["alice"].woken
    assert await _since(api, room, start, "alice") == {}
    assert await _since(api, room, start, "bob") == {e1: {"m.read.private": {uid("bob"): {"ts": clock.now_ms}}}}
    # Private receipts clear notifications all the same.
    event = await api.hs.event_store.get_event(e1)
    assert await api.hs.receipts.read_up_to(uid("bob"), room) == event.stream_ordering


async def test_receipts_never_move_backwards(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    e1 = await send(api, room, alice, "one")
    e2 = await send(api, room, alice, "two")
    receipts = api.hs.receipts
    assert await receipts.read_up_to(uid("bob"), room) is None
    await _receipt(api, room, bob, e2)
    pos = await receipts.current_position()
    ordering2 = (await api.hs.event_store.get_event(e2)).stream_ordering
    assert await receipts.read_up_to(uid("bob"), room) == ordering2
    await _receipt(api, room, bob, e1)  # accepted, but the receipt stays at e2
    assert await receipts.receipts_since([room], pos, uid("alice")) == {}
    assert list(await _since(api, room, 0, "alice")) == [e2]
    assert await receipts.read_up_to(uid("bob"), room) == ordering2
    # The further of m.read and m.read.private counts for unread counts.
    e3 = await send(api, room, alice, "three")
    await _receipt(api, room, bob, e3, "m.read.private")
    assert await receipts.read_up_to(uid("bob"), room) == (await api.hs.event_store.get_event(e3)).stream_ordering
    # ...and a public receipt may lag behind the private one.
    await _receipt(api, room, bob, e2)
    content = await _since(api, room, 0, "bob")
    assert uid("bob") in content[e2]["m.read"] and uid("bob") in content[e3]["m.read.private"]


async def test_receipt_errors(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    carol = await user(api, "carol")
    other = await create(api, carol)
    e1 = await send(api, room, alice, "one")
    foreign = await send(api, other, carol, "elsewhere")
    err = await _receipt(api, room, bob, e1, "m.bogus", expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    # Not joined (and unknown rooms answer the same).
    err = await _receipt(api, room, carol, e1, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    err = await _receipt(api, "!nope:test.local", bob, e1, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # The event must exist in this room.
    err = await _receipt(api, room, bob, "$unknown", expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    err = await _receipt(api, room, bob, foreign, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    # thread_id: a non-empty string, and not for m.fully_read.
    for bad in ("", 5, None, "nonsense"):
        err = await _receipt(api, room, bob, e1, body={"thread_id": bad}, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", bad
    err = await _receipt(api, room, bob, e1, "m.fully_read", body={"thread_id": "main"}, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("POST", f"rooms/{room}/receipt/m.read/{quote(e1)}", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert await api.hs.receipts.receipts_since([room], 0, uid("alice")) == {}


async def test_receipt_needs_a_visible_event(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice)
    await set_visibility(api, room, alice, "joined")
    before = await send(api, room, alice, "before bob")
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    after = await send(api, room, alice, "after bob")
    err = await _receipt(api, room, bob, before, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    await _receipt(api, room, bob, after)


async def test_threaded_receipts(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    root = await send(api, room, alice, "root")
    reply = await send(api, room, alice, "in thread", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    edit = await send(
        api, room, alice, "* edit", **{"m.relates_to": {"rel_type": "m.replace", "event_id": reply}}
    )
    plain = await send(api, room, alice, "main timeline")
    await _receipt(api, room, bob, reply, body={"thread_id": root})
    await _receipt(api, room, bob, edit, body={"thread_id": root})  # in the thread through its target
    await _receipt(api, room, bob, root, body={"thread_id": root})
    await _receipt(api, room, bob, plain, body={"thread_id": "main"})
    await _receipt(api, room, bob, root, "m.read.private", body={"thread_id": "main"})
    for event_id, thread in ((reply, "main"), (plain, root), (edit, "main")):
        err = await _receipt(api, room, bob, event_id, body={"thread_id": thread}, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"
    content = await _since(api, room, 0, "alice")
    assert content[edit]["m.read"][uid("bob")]["thread_id"] == root
    assert content[plain]["m.read"][uid("bob")]["thread_id"] == "main"
    # A receipt inside a thread does not count for the main timeline's unread count.
    assert await api.hs.receipts.read_up_to(uid("bob"), room) == (await api.hs.event_store.get_event(plain)).stream_ordering


async def test_fully_read_through_receipt_endpoint(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    e1 = await send(api, room, alice, "one")
    e2 = await send(api, room, alice, "two")
    await api.hs.presence.drain()  # sending was activity: let its wake-ups pass
    waiters = {n: api.hs.notifier.register(uid(n)) for n in ("alice", "bob")}
    start = await api.hs.receipts.current_position()
    await _receipt(api, room, bob, e2, "m.fully_read")
    assert waiters["bob"].woken and not waiters["alice"].woken
    # Not a receipt: it is room account data.
    assert await api.hs.receipts.current_position() == start
    assert await api.hs.receipts.fully_read_marker(uid("bob"), room) == e2
    assert await api.hs.account_data.get_room(uid("bob"), room, "m.fully_read") == {"event_id": e2}
    # Never backwards.
    await _receipt(api, room, bob, e1, "m.fully_read")
    assert await api.hs.receipts.fully_read_marker(uid("bob"), room) == e2


async def test_read_markers(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    e1 = await send(api, room, alice, "one")
    e2 = await send(api, room, alice, "two")
    path = f"rooms/{room}/read_markers"
    assert await api.post(path, {"m.fully_read": e1, "m.read": e2, "m.read.private": e2}, token=bob) == {}
    assert await api.hs.receipts.fully_read_marker(uid("bob"), room) == e1
    assert set((await _since(api, room, 0, "bob"))[e2]) == {"m.read", "m.read.private"}
    assert set((await _since(api, room, 0, "alice"))[e2]) == {"m.read"}
    # m.fully_read is optional since v1.4.
    e3 = await send(api, room, alice, "three")
    await api.post(path, {"m.read": e3}, token=bob)
    assert list(await _since(api, room, 0, "alice")) == [e3]
    assert await api.hs.receipts.fully_read_marker(uid("bob"), room) == e1


async def test_read_markers_errors_change_nothing(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    carol = await user(api, "carol")
    e1 = await send(api, room, alice, "one")
    path = f"rooms/{room}/read_markers"
    _, err = await api.request("POST", path, {"m.fully_read": e1, "m.read": "$missing"}, token=bob, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    assert await api.hs.receipts.fully_read_marker(uid("bob"), room) is None
    _, err = await api.request("POST", path, {"m.read": 7}, token=bob, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("POST", path, {"m.read": e1}, token=carol, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("POST", path, data="not json", token=bob, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    assert await api.hs.receipts.receipts_since([room], 0, uid("bob")) == {}


async def test_receipts_survive_restart(tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]) -> None:
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        hs = api.hs
        alice, bob, room = await room_with_bob(api)
        e1 = await send(api, room, alice, "one")
        await _receipt(api, room, bob, e1)
        pos = await hs.receipts.current_position()
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        hs = api.hs
        assert await hs.receipts.current_position() == pos
        assert list(await _since(api, room, 0, "alice")) == [e1]
        e2 = await send(api, room, alice, "two")
        await _receipt(api, room, bob, e2)
        assert await hs.receipts.current_position() == pos + 1
        assert list(await _since(api, room, pos, "alice")) == [e2]
