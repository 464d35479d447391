"""Many readers of one room: what their incremental syncs share is computed once,
and each still gets exactly its own answer (on both engines).

The unread counts of a busy room's readers come from the room's tally of recent
notifications (sync/room_tallies.py), read once per event for all of them; here
every reader's counts are checked, after every kind of event that moves them,
against a recount from the database.
"""

from __future__ import annotations

from typing import Any

from homeserver.sync.tokens import SyncToken
from homeserver.sync.unread import UnreadCounter
from tests.conftest import Api, ClientFactory

READERS = 4


async def _recount(api: Api, user_id: str, room_id: str, now: int) -> dict[str, int]:
    """The user's unread counts at `now`, counted afresh in the database."""
    hs = api.hs
    fresh = UnreadCounter(receipts=hs.receipts, store=hs.push_actions.store)
    room = await hs.room_store.get_room(room_id)
    assert room is not None
    m = next(m for m in await hs.sync.memberships(user_id) if m.room_id == room_id)
    return await fresh.counts(user_id, room, m.stream_ordering, now)


async def test_unread_counts_of_many_readers(make_api: ClientFactory, db_overrides: dict[str, Any]) -> None:
    api = await make_api(**db_overrides)
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    readers: list[dict[str, Any]] = []
    for i in range(READERS):
        account = await api.register(f"reader{i}")
        await api.post(f"rooms/{room}/join", {}, token=account["access_token"])
        readers.append(account)
    since = [(await api.get("sync", token=r["access_token"]))["next_batch"] for r in readers]

    async def send(token: str, txn: str, content: dict[str, Any]) -> str:
        return (await api.put(f"rooms/{room}/send/m.room.message/{txn}", content, token=token))["event_id"]

    async def everyone_syncs() -> None:
        for i, reader in enumerate(readers):
            body = await api.get(f"sync?since={since[i]}", token=reader["access_token"])
            since[i] = body["next_batch"]
            got = body["rooms"]["join"][room]["unread_notifications"]
            want = await _recount(api, reader["user_id"], room, SyncToken.parse(since[i]).events)
            assert got == want, (i, got, want)

    first = await send(owner, "a", {"msgtype": "m.text", "body": "hello"})
    await everyone_syncs()
    await send(owner, "b", {"msgtype": "m.notice", "body": "a notice: notifies nobody"})
    await send(owner, "c", {"msgtype": "m.text", "body": "to you", "m.mentions": {"user_ids": [readers[0]["user_id"]]}})
    await everyone_syncs()  # two events in one range
    await send(readers[1]["access_token"], "d", {"msgtype": "m.text", "body": "my own never counts for me"})
    await everyone_syncs()
    # A receipt moves one reader's start; a redaction removes everyone's row of an event.
    await api.post(f"rooms/{room}/receipt/m.read/{first}", {}, token=readers[2]["access_token"])
    await everyone_syncs()
    await api.put(f"rooms/{room}/redact/{first}/r1", {}, token=owner)
    await everyone_syncs()
    for n in range(3):
        await send(owner, f"e{n}", {"msgtype": "m.text", "body": f"more {n}"})
        await everyone_syncs()
    assert hs.unread.tallies is not None
    stats = hs.unread.tallies.stats()
    # Each event's rows were read once for the room: most readers counted from memory.
    assert stats["hits"] > stats["misses"], stats
    assert 'accord_cache_hits_total{cache="unread_room_tallies"}' in hs.metrics.render(hs)


async def test_a_reader_far_behind_counts_in_the_database(api: Api) -> None:
    """A token older than the room's tally: counted in the database, the same answer."""
    hs = api.hs
    owner = (await api.register("owner"))["access_token"]
    reader = await api.register("reader")
    late = await api.register("late")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=owner))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=late["access_token"])
    old = (await api.get("sync", token=late["access_token"]))["next_batch"]
    await api.post(f"rooms/{room}/join", {}, token=reader["access_token"])  # the tally starts after `old`
    since = (await api.get("sync", token=reader["access_token"]))["next_batch"]
    for n in range(4):
        await api.put(f"rooms/{room}/send/m.room.message/m{n}", {"msgtype": "m.text", "body": str(n)}, token=owner)
        since = (await api.get(f"sync?since={since}", token=reader["access_token"]))["next_batch"]
    assert hs.unread.tallies is not None
    misses = hs.unread.tallies.stats()["misses"]
    body = await api.get(f"sync?since={old}", token=late["access_token"])
    assert hs.unread.tallies.stats()["misses"] == misses + 1
    now = SyncToken.parse(body["next_batch"]).events
    assert body["rooms"]["join"][room]["unread_notifications"] == await _recount(api, late["user_id"], room, now)
    assert body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 4


def test_token_fields_all_written_and_compared() -> None:
    """`SyncToken.__str__` and `is_after` name the fields one by one (they run on every
    woken /sync): a field added to the token must be added to both."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(SyncToken)]
    token = SyncToken(**{name: i + 1 for i, name in enumerate(names)})
    assert SyncToken.parse(str(token)) == token
    for name in names:
        assert token.advance(**{name: getattr(token, name) + 1}).is_after(token), name
        assert not token.is_after(token.advance(**{name: getattr(token, name) + 1})), name
