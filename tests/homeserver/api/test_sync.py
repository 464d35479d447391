"""GET /sync: initial and incremental syncs, long-polling, gaps and membership sections."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from tests.conftest import Api


async def _user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_initial_sync_and_prev_batch(api: Api) -> None:
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {"name": "Room"}, token=alice))["room_id"]
    sent = [
        (await api.put(f"rooms/{room}/send/m.room.message/{i}", {"body": str(i)}, token=alice))["event_id"]
        for i in range(15)
    ]
    body = await api.get("sync", token=alice)
    joined = body["rooms"]["join"][room]
    timeline = joined["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == sent[-10:]
    assert timeline["limited"] is True
    # The state before the timeline is complete, and nothing in it repeats the timeline.
    state_types = set(_types(joined["state"]["events"]))
    assert {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= state_types
    # prev_batch continues exactly where the timeline starts.
    older = await api.get(f"rooms/{room}/messages?dir=b&limit=5&from={timeline['prev_batch']}", token=alice)
    assert [e["event_id"] for e in older["chunk"]] == list(reversed(sent[:5]))
    assert joined["summary"]["m.joined_member_count"] == 1
    assert body["next_batch"].startswith("s")


async def test_incremental_sync_only_new_and_empty_when_idle(api: Api) -> None:
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    other = (await api.post("createRoom", {}, token=alice))["room_id"]
    token = (await api.get("sync", token=alice))["next_batch"]
    idle = await api.get(f"sync?since={token}", token=alice)
    assert "rooms" not in idle and idle["next_batch"] == token
    new = (await api.put(f"rooms/{room}/send/m.room.message/x", {"body": "new"}, token=alice))["event_id"]
    body = await api.get(f"sync?since={token}", token=alice)
    assert list(body["rooms"]["join"]) == [room]  # the untouched room is not sent
    timeline = body["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == [new] and timeline["limited"] is False
    assert body["rooms"]["join"][room]["state"]["events"] == []
    assert other not in body["rooms"]["join"]


async def test_long_poll_wakes_on_message_and_times_out(api: Api) -> None:
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    token = (await api.get("sync", token=alice))["next_batch"]
    waiting = asyncio.ensure_future(api.get(f"sync?since={token}&timeout=20000", token=alice))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await api.put(f"rooms/{room}/send/m.room.message/1", {"body": "wake"}, token=alice)
    body = await asyncio.wait_for(waiting, 5)
    assert body["rooms"]["join"][room]["timeline"]["events"][0]["content"] == {"body": "wake"}
    quiet = await api.get(f"sync?since={body['next_batch']}&timeout=200", token=alice)
    assert "rooms" not in quiet and quiet["next_batch"] == body["next_batch"]


async def test_gap_state_after_limited_timeline(api: Api) -> None:
    """State changed inside a gap the timeline skips is sent in `state`."""
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"preset": "public_chat", "name": "Old"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    token = (await api.get("sync", token=bob))["next_batch"]
    await api.put(f"rooms/{room}/state/m.room.name", {"name": "New"}, token=alice)
    for i in range(12):
        await api.put(f"rooms/{room}/send/m.room.message/{i}", {"body": str(i)}, token=alice)
    body = await api.get(f"sync?since={token}", token=bob)
    joined = body["rooms"]["join"][room]
    assert joined["timeline"]["limited"] is True
    assert len(joined["timeline"]["events"]) == 10
    assert [(e["type"], e["content"]) for e in joined["state"]["events"]] == [("m.room.name", {"name": "New"})]


async def test_reconnect_with_last_token_misses_nothing(api: Api) -> None:
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    token = (await api.get("sync", token=alice))["next_batch"]
    sent = [
        (await api.put(f"rooms/{room}/send/m.room.message/{i}", {"body": str(i)}, token=alice))["event_id"]
        for i in range(25)
    ]
    flt = orjson.dumps({"room": {"timeline": {"limit": 100}}}).decode()
    body = await api.get(f"sync?since={token}&filter={flt}", token=alice)
    timeline = body["rooms"]["join"][room]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == sent and timeline["limited"] is False


async def test_invite_then_join_then_leave_sections(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"name": "Secret"}, token=alice))["room_id"]
    token = (await api.get("sync", token=bob))["next_batch"]
    await api.post(f"rooms/{room}/invite", {"user_id": "@bob:test.local"}, token=alice)
    body = await api.get(f"sync?since={token}", token=bob)
    stripped = body["rooms"]["invite"][room]["invite_state"]["events"]
    by_type = {e["type"]: e for e in stripped}
    assert by_type["m.room.name"]["content"] == {"name": "Secret"}
    assert by_type["m.room.member"]["content"]["membership"] == "invite"
    assert "m.room.power_levels" not in by_type
    await api.post(f"rooms/{room}/join", {}, token=bob)
    body = await api.get(f"sync?since={body['next_batch']}", token=bob)
    joined = body["rooms"]["join"][room]
    # A room joined since the token comes with its full state.
    assert "m.room.create" in _types(joined["state"]["events"]) + _types(joined["timeline"]["events"])
    assert "invite" not in body["rooms"]
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    after_leave = await api.put(f"rooms/{room}/send/m.room.message/late", {"body": "after"}, token=alice)
    body = await api.get(f"sync?since={body['next_batch']}", token=bob)
    left = body["rooms"]["leave"][room]
    ids = [e["event_id"] for e in left["timeline"]["events"]]
    assert after_leave["event_id"] not in ids
    assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"
    # A fresh initial sync hides left rooms unless asked for them.
    assert room not in (await api.get("sync", token=bob)).get("rooms", {}).get("leave", {})
    flt = orjson.dumps({"room": {"include_leave": True}}).decode()
    assert room in (await api.get(f"sync?filter={flt}", token=bob))["rooms"]["leave"]


async def test_filters_and_lazy_loading(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    carol = await _user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=carol)
    for i in range(3):
        await api.put(f"rooms/{room}/send/m.room.message/{i}", {"body": str(i)}, token=bob)
    await api.put(f"rooms/{room}/send/org.example.other/1", {}, token=bob)
    flt = {"room": {"timeline": {"limit": 2, "types": ["m.room.message"]},
                    "state": {"lazy_load_members": True}}}
    body = await api.get(f"sync?filter={orjson.dumps(flt).decode()}", token=alice)
    joined = body["rooms"]["join"][room]
    assert _types(joined["timeline"]["events"]) == ["m.room.message", "m.room.message"]
    members = {e["state_key"] for e in joined["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {"@alice:test.local", "@bob:test.local"}  # carol sent nothing shown


async def test_sync_errors(api: Api) -> None:
    alice = await _user(api, "alice")
    for query, errcode in (
        ("since=garbage", "M_INVALID_PARAM"),
        ("since=s1_x", "M_INVALID_PARAM"),
        ("timeout=soon", "M_INVALID_PARAM"),
        ("set_presence=busy", "M_INVALID_PARAM"),
        ("full_state=maybe", "M_INVALID_PARAM"),
    ):
        _, err = await api.request("GET", f"sync?{query}", token=alice, expect=400)
        assert err["errcode"] == errcode, query
    _, err = await api.request("GET", "sync", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_query_strings_parsed_once_answer_as_parsed_each_time(api: Api) -> None:
    """A query string is parsed once (the readers of a busy room renew their polls with
    the same one) and then answers as if parsed again: each request still authenticated,
    its presence set, its filter its own; a query string with an invalid parameter is
    refused every time, never kept."""
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    since = (await api.get("sync", token=alice))["next_batch"]
    await api.put(f"rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "hi"}, token=alice)
    query = f"since={since}&timeout=0&set_presence=unavailable"
    first = await api.get(f"sync?{query}", token=alice)
    again = await api.get(f"sync?{query}", token=bob)  # the same query string, another user
    for body in (first, again):
        assert [e["content"]["body"] for e in body["rooms"]["join"][room]["timeline"]["events"]] == ["hi"]
    assert "transaction_id" in first["rooms"]["join"][room]["timeline"]["events"][0]["unsigned"]  # alice sent it
    assert "transaction_id" not in again["rooms"]["join"][room]["timeline"]["events"][0]["unsigned"]
    bob_id = (await api.get("account/whoami", token=bob))["user_id"]
    status = await api.get(f"presence/{bob_id}/status", token=alice)
    assert status["presence"] == "unavailable"
    _, err = await api.request("GET", f"sync?{query}", expect=401)  # no token: refused as ever
    assert err["errcode"] == "M_MISSING_TOKEN"
    for bad in (f"since={since}&timeout=0&use_state_after=maybe", f"since={since}&timeout=0&full_state=maybe"):
        for _ in range(2):
            _, err = await api.request("GET", f"sync?{bad}", token=alice, expect=400)
            assert err["errcode"] == "M_INVALID_PARAM", bad


async def test_one_message_wakes_exactly_its_rooms_members(api: Api) -> None:
    """200 clients long-poll; a message in one room wakes only that room's 20 members."""
    users: list[tuple[str, str]] = []
    for i in range(200):
        reg = await api.hs.registration.create_account(f"@u{i}:test.local", None, login=True)
        users.append((reg["user_id"], reg["access_token"]))
    rooms = []
    for r in range(10):
        owner = users[r * 20]
        room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner[1]))["room_id"]
        for _, token in users[r * 20 + 1 : r * 20 + 20]:
            await api.post(f"rooms/{room}/join", {}, token=token)
        rooms.append(room)
    tokens = {}
    for user_id, token in users:
        tokens[user_id] = (await api.get("sync", token=token))["next_batch"]
    # Each first sync brought its user online, which is news for the room-mates who synced
    # earlier: catch everyone up once, so the long-polls below start with nothing pending.
    for user_id, token in users:
        tokens[user_id] = (await api.get(f"sync?since={tokens[user_id]}", token=token))["next_batch"]

    # 200 simultaneous connections: more than a default client connection pool holds.
    # The long-polls never time out within the test: only a wake-up answers them.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def poll(user_id: str, token: str) -> dict[str, Any]:
        url = api.client.make_url(f"/_matrix/client/v3/sync?since={tokens[user_id]}&timeout=120000")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
            return await r.json()

    async def until(check: Any, within: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not check():
            assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)

    polls: dict[str, asyncio.Future[dict[str, Any]]] = {}
    for start in range(0, 200, 50):  # connect in waves: the test server's listen backlog is 128
        polls.update({u: asyncio.ensure_future(poll(u, t)) for u, t in users[start : start + 50]})
        await until(lambda n=start + 50: api.hs.notifier.waiting_users() == n)
    before = api.hs.notifier.wakeups
    await api.put(f"rooms/{rooms[3]}/send/m.room.message/ping", {"body": "ping"}, token=users[60][1])
    # Waking is synchronous, in the send: exactly the room's 20 members were woken.
    assert api.hs.notifier.wakeups - before == 20
    members = {u for u, _ in users[60:80]}
    for user_id in members:
        body = await asyncio.wait_for(polls.pop(user_id), 30)
        assert rooms[3] in body["rooms"]["join"]
    # The other 180 still wait; a message in each of their rooms answers them with
    # that room only.
    for r, room in enumerate(rooms):
        if r != 3:
            await api.put(f"rooms/{room}/send/m.room.message/release", {"body": "release"}, token=users[r * 20][1])
    for i, (user_id, _) in enumerate(users):
        if user_id in polls:
            body = await asyncio.wait_for(polls[user_id], 30)
            assert set(body["rooms"]["join"]) == {rooms[i // 20]}, user_id
    assert api.hs.notifier.wakeups - before == 200  # each once
    await session.close()


async def test_stopping_answers_long_polls_at_once(api: Api) -> None:
    """A stopping server answers its waiting /sync requests instead of holding the stop
    until their timeout (the listeners wait for requests in flight); found with
    matrix-js-sdk, whose client leaves a 30 s poll behind when it goes."""
    alice = await _user(api, "alice")
    token = (await api.get("sync", token=alice))["next_batch"]
    poll = asyncio.ensure_future(api.get(f"sync?since={token}&timeout=600000", token=alice))
    for _ in range(3000):  # until the request waits
        if api.hs.notifier.waiting_users():
            break
        await asyncio.sleep(0.02)
    api.hs.notifier.close()
    body = await asyncio.wait_for(poll, 120)  # far below the poll's own ten minutes
    assert body["next_batch"] == token
    # A poll arriving while the server stops does not wait either.
    later = await asyncio.wait_for(api.get(f"sync?since={token}&timeout=600000", token=alice), 120)
    assert later["next_batch"] == token


async def test_profile_change_is_no_new_join(api: Api) -> None:
    """A joined member's new display name is a membership event, but the room goes
    on from the token: the next incremental sync carries just that event, unlimited,
    not the room re-sent as if newly joined. A leave and rejoin is a new join."""
    alice, bob = await _user(api, "alice"), await _user(api, "bob")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    for i in range(3):
        await api.put(f"rooms/{room}/send/m.room.message/p{i}", {"msgtype": "m.text", "body": f"m{i}"}, token=alice)
    first = await api.get("sync", token=bob)
    await api.put("profile/@bob:test.local/displayname", {"displayname": "Bobby"}, token=bob)
    await api.put("profile/@bob:test.local/displayname", {"displayname": "Robert"}, token=bob)
    later = await api.get(f"sync?since={first['next_batch']}", token=bob)
    entry = later["rooms"]["join"][room]
    names = [e["content"]["displayname"] for e in entry["timeline"]["events"]]
    assert _types(entry["timeline"]["events"]) == ["m.room.member", "m.room.member"] and names == ["Bobby", "Robert"]
    assert entry["timeline"]["limited"] is False and entry["state"]["events"] == []
    # Leaving and joining again since the token: the room is sent whole.
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=bob)
    rejoined = (await api.get(f"sync?since={later['next_batch']}", token=bob))["rooms"]["join"][room]
    assert {e["type"] for e in rejoined["state"]["events"]} >= {"m.room.create", "m.room.power_levels"}
    assert [e["content"].get("body") for e in rejoined["timeline"]["events"]
            if e["type"] == "m.room.message"] == ["m0", "m1", "m2"]
