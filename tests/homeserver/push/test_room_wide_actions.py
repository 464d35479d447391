"""Room-wide push actions on both engines (migration v029): one row per event for
every member whose answer is the common evaluation, per-user rows as exceptions,
and local membership spans saying whom a room-wide row applies to. Counts, GET
/notifications, the e-mail notifier's reads, redactions, push delivery and the
migration of a database holding per-user rows only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.storage.database import Database, Txn
from homeserver.storage.migrations import all_migrations, migrate
from homeserver.storage.push_actions import PushActionStore
from tests.conftest import Api, open_empty_database
from tests.homeserver.api.reading_helpers import send, uid, user
from tests.homeserver.push.gateway import PushGateway
from tests.homeserver.push.test_pushers import gateway, push_config, pusher_body
from tests.tls_ca import TestCA

__all__ = ["gateway"]  # the fixture, shared with test_pushers


@pytest.fixture
async def db_api(db_overrides: dict[str, Any], make_api: Any) -> Api:
    return await make_api(**db_overrides)  # type: ignore[no-any-return]


@pytest.fixture
async def push_api(db_overrides: dict[str, Any], make_api: Any, ca: TestCA) -> Api:
    return await make_api(**db_overrides, **push_config(ca))  # type: ignore[no-any-return]


def _store(api: Api) -> PushActionStore:
    return api.hs.push_actions.store


async def _nid(api: Api, event_id: str) -> int:
    stored = await api.hs.event_store.get_event(event_id)
    assert stored is not None
    return stored.nid


async def _room_nid(api: Api, room_id: str) -> int:
    room = await api.hs.room_store.get_room(room_id)
    assert room is not None
    return room.room_nid


async def _stored(api: Api, event_id: str) -> tuple[int, list[tuple[str, int]]]:
    """(room-wide rows, sorted (user, notify) of the per-user rows) of one event."""
    nid = await _nid(api, event_id)
    wide = await api.hs.db.fetchall("SELECT 1 FROM event_push_room WHERE event_nid = ?", (nid,))
    own = await api.hs.db.fetchall("SELECT user_id, notify FROM event_push_actions WHERE event_nid = ?", (nid,))
    return len(wide), sorted((r[0], int(r[1])) for r in own)


async def _counts(api: Api, user_id: str, room: str) -> tuple[int, int]:
    return await _store(api).counts_for(user_id, await _room_nid(api, room), 0)


async def _unread(api: Api, token: str, room: str) -> dict[str, int]:
    sync = await api.get("sync", token=token)
    return sync["rooms"]["join"][room]["unread_notifications"]  # type: ignore[no-any-return]


async def test_counts_of_room_wide_rows_and_their_exceptions(db_api: Api) -> None:
    api = db_api
    names = ["alice", "bob", "carol", "dave", "erin", "frank"]
    tokens = {n: await user(api, n) for n in names}
    alice = tokens["alice"]
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    for n in ("bob", "carol", "dave", "erin"):
        await api.post(f"rooms/{room}/join", {}, token=tokens[n])
    # dave: a rule of his own that silences everything; erin ignores alice.
    await api.put("pushrules/global/override/mute", {"conditions": [], "actions": []}, token=tokens["dave"])
    await api.put(f"user/{uid('erin')}/account_data/m.ignored_user_list",
                  {"ignored_users": {uid("alice"): {}}}, token=tokens["erin"])

    hello = await send(api, room, alice, "hello")
    # One room-wide row; dave and erin (evaluated one by one, not notified) are
    # exceptions that hide it from them.
    assert await _stored(api, hello) == (1, [(uid("dave"), 0), (uid("erin"), 0)])
    ping = await send(api, room, alice, "ping", **{"m.mentions": {"user_ids": [uid("bob")]}})
    assert await _stored(api, ping) == (1, [(uid("bob"), 1), (uid("dave"), 0), (uid("erin"), 0)])

    assert await _counts(api, uid("alice"), room) == (0, 0)  # the sender
    assert await _counts(api, uid("bob"), room) == (2, 1)  # the mention highlights for bob alone
    assert await _counts(api, uid("carol"), room) == (2, 0)
    assert await _counts(api, uid("dave"), room) == (0, 0)
    assert await _counts(api, uid("erin"), room) == (0, 0)
    assert await _unread(api, tokens["bob"], room) == {"notification_count": 2, "highlight_count": 1}
    assert await _unread(api, tokens["carol"], room) == {"notification_count": 2, "highlight_count": 0}
    assert await _unread(api, tokens["erin"], room) == {"notification_count": 0, "highlight_count": 0}

    # erin's own messages notify alice (nobody ignores erin) through the room-wide row.
    from_erin = await send(api, room, tokens["erin"], "from erin")
    assert await _stored(api, from_erin) == (1, [(uid("dave"), 0)])
    assert await _counts(api, uid("alice"), room) == (1, 0)
    assert await _counts(api, uid("erin"), room) == (0, 0)

    # frank joins after all this: none of it counts for him; what follows does.
    await api.post(f"rooms/{room}/join", {}, token=tokens["frank"])
    assert await _counts(api, uid("frank"), room) == (0, 0)
    later = await send(api, room, alice, "later")
    assert await _counts(api, uid("frank"), room) == (1, 0)
    assert await _unread(api, tokens["frank"], room) == {"notification_count": 1, "highlight_count": 0}

    # carol leaves, misses a message, and comes back: the stored rows count while she
    # was in (counts_for from the start); her sync counts only since her return.
    await api.post(f"rooms/{room}/leave", {}, token=tokens["carol"])
    missed = await send(api, room, alice, "missed")
    await api.post(f"rooms/{room}/join", {}, token=tokens["carol"])
    back = await send(api, room, alice, "back")
    assert await _counts(api, uid("carol"), room) == (5, 0)  # all but the one she missed
    ids = [e["event"]["event_id"] for e in (await api.get("notifications", token=tokens["carol"]))["notifications"]]
    assert ids == [back, later, from_erin, ping, hello] and missed not in ids
    assert await _unread(api, tokens["carol"], room) == {"notification_count": 1, "highlight_count": 0}
    # The fan-out reads (push badges) and the multi-room read (initial sync) agree.
    room_nid = await _room_nid(api, room)
    many = await _store(api).counts_after(room_nid, {uid(n): 0 for n in names}, api.hs.event_persister.stream.current)
    assert {u: c for u, c in many.items() if c != (0, 0)} == {
        uid("alice"): (1, 0), uid("bob"): (6, 1), uid("carol"): (5, 0), uid("frank"): (3, 0),
    }
    rooms = await _store(api).counts_in_rooms(uid("bob"), {room_nid: 0}, api.hs.event_persister.stream.current)
    assert rooms == {room_nid: (6, 1)}
    threads = await _store(api).thread_counts(uid("bob"), room_nid, 0, api.hs.event_persister.stream.current, {})
    assert threads == {"main": (6, 1)}


async def test_notifications_and_email_reads_mix_both_kinds_in_order(db_api: Api) -> None:
    api = db_api
    alice, bob = await user(api, "alice"), await user(api, "bob")
    first_room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    second_room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    for room in (first_room, second_room):
        await api.post(f"rooms/{room}/join", {}, token=bob)
    sent = [
        await send(api, first_room, alice, "one"),
        await send(api, second_room, alice, "two", **{"m.mentions": {"user_ids": [uid("bob")]}}),
        await send(api, first_room, alice, "three"),
        await send(api, first_room, alice, "four bob"),  # bob's localpart: his own row
        await send(api, second_room, alice, "five"),
    ]
    assert [(await _stored(api, e))[0] for e in sent] == [1, 0, 1, 0, 1]

    page = await api.get("notifications", token=bob)
    assert [n["event"]["event_id"] for n in page["notifications"]] == sent[::-1]
    assert [n["room_id"] for n in page["notifications"]] == [second_room, first_room, first_room, second_room,
                                                              first_room]
    seen: list[str] = []
    token = ""
    while True:
        part = await api.get(f"notifications?limit=2{token}", token=bob)
        seen += [n["event"]["event_id"] for n in part["notifications"]]
        if "next_token" not in part:
            break
        token = f"&from={part['next_token']}"
    assert seen == sent[::-1]
    only = await api.get("notifications?only=highlight", token=bob)
    assert [n["event"]["event_id"] for n in only["notifications"]] == [sent[3], sent[1]]

    # The e-mail notifier reads oldest first from a position, in batches.
    rows = await _store(api).since(uid("bob"), 0, 10)
    assert [r.event_nid for r in rows] == [await _nid(api, e) for e in sent]
    assert all(r.user_id == uid("bob") for r in rows)
    after_second = await _store(api).since(uid("bob"), rows[1].stream_ordering, 2)
    assert [r.event_nid for r in after_second] == [rows[2].event_nid, rows[3].event_nid]
    assert await _store(api).since(uid("alice"), 0, 10) == []


async def test_redaction_removes_the_room_wide_notification_for_everyone(db_api: Api) -> None:
    api = db_api
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    for t in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=t)
    keep = await send(api, room, alice, "keep")
    gone = await send(api, room, alice, "gone", **{"m.mentions": {"user_ids": [uid("bob")]}})
    assert await _unread(api, bob, room) == {"notification_count": 2, "highlight_count": 1}
    assert await _unread(api, carol, room) == {"notification_count": 2, "highlight_count": 0}

    told: list[tuple[int, list[str]]] = []
    api.hs.push_actions.on_removed.append(lambda room_nid, users: told.append((room_nid, sorted(users))))
    await api.put(f"rooms/{room}/redact/{gone}/r1", {}, token=alice)
    assert told == [(await _room_nid(api, room), [uid("bob"), uid("carol")])]
    assert await _stored(api, gone) == (0, [])
    assert await _unread(api, bob, room) == {"notification_count": 1, "highlight_count": 0}
    assert await _unread(api, carol, room) == {"notification_count": 1, "highlight_count": 0}
    ids = [n["event"]["event_id"] for n in (await api.get("notifications", token=carol))["notifications"]]
    assert ids == [keep]


async def test_room_wide_notification_pushed_to_a_pusher(push_api: Api, gateway: PushGateway) -> None:
    api = push_api
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat", "name": "Ops"}, token=alice))["room_id"]
    for t in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=t)
    await api.post("pushers/set", pusher_body(gateway.url), token=bob)
    first = await send(api, room, alice, "to everyone")
    assert await _stored(api, first) == (1, [])  # nobody's own row: bob's push comes from the room-wide one
    (note,) = await gateway.wait_for(1)
    assert note["event_id"] == first and note["counts"] == {"unread": 1} and note["prio"] == "low"
    assert note["content"]["body"] == "to everyone" and note["devices"][0]["tweaks"] == {}
    # bob's own message notifies carol (no pusher) only: nothing more is pushed.
    await send(api, room, bob, "mine")
    second = await send(api, room, alice, "again")
    notes = await gateway.wait_for(2)
    assert notes[1]["event_id"] == second and notes[1]["counts"] == {"unread": 2}
    assert len(gateway.received) == 2


@pytest.fixture(params=["sqlite", "postgres"])
async def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database at the schema before room-wide rows (v028)."""
    async with open_empty_database(request.param, tmp_path / "old.db") as database:

        async def upto_v028(txn: Txn) -> None:
            await txn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for m in all_migrations():
                if m.version > 28:
                    break
                for stmt in m.module.statements(database.dialect):
                    await txn.execute(stmt)
            await txn.execute("INSERT INTO schema_version (version) VALUES (28)")

        await database.write(upto_v028)
        yield database


async def test_migration_keeps_old_rows_and_fills_spans(old_db: Database) -> None:
    db = old_db

    async def fill(txn: Txn) -> None:
        await txn.executemany("INSERT INTO users (user_id, created_ts) VALUES (?, 0)",
                              [("@bob:hs",), ("@carol:hs",), ("@dan:hs",)])
        await txn.executemany(
            "INSERT INTO memberships (room_nid, user_id, membership, event_nid, stream_ordering) VALUES (?, ?, ?, ?, ?)",
            [(7, "@bob:hs", "join", 1, 10), (7, "@carol:hs", "leave", 2, 12), (7, "@remote:elsewhere", "join", 3, 11),
             (8, "@bob:hs", "join", 4, 13), (7, "@dan:hs", "invite", 5, 14)],
        )
        await txn.executemany(
            "INSERT INTO event_push_actions (user_id, room_nid, stream_ordering, event_nid, thread_id, highlight,"
            " actions, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [("@bob:hs", 7, 20, 100, "main", 0, '["notify"]', 1), ("@bob:hs", 7, 21, 101, "main", 1, '["notify"]', 2),
             ("@carol:hs", 7, 11, 99, "main", 0, '["notify"]', 0)],
        )

    await db.write(fill)
    assert await migrate(db) == all_migrations()[-1].version
    spans = await db.fetchall("SELECT user_id, room_nid, joined_at, left_at FROM local_member_spans ORDER BY room_nid")
    assert [tuple(r) for r in spans] == [("@bob:hs", 7, 10, None), ("@bob:hs", 8, 13, None)]
    store = PushActionStore(db)
    assert await store.counts_for("@bob:hs", 7, 0) == (2, 1)
    assert await store.counts_for("@carol:hs", 7, 0) == (1, 0)
    assert [r.event_nid for r in await store.page("@bob:hs", None, 10, False)] == [101, 100]
    assert (await store.get("@bob:hs", 101)) is not None

    # A room-wide row written after the migration reaches bob (joined) but not carol (left).
    async def write(txn: Txn) -> None:
        await PushActionStore.add_event(txn, 7, 30, 102, "main", 3, sender="@remote:elsewhere",
                                        room_wide=(False, ["notify"]), groups=[])

    await db.write(write)
    assert await store.counts_for("@bob:hs", 7, 0) == (3, 1)
    assert await store.counts_for("@carol:hs", 7, 0) == (1, 0)
    assert await store.counts_in_rooms("@bob:hs", {7: 20, 8: 0}, 100) == {7: (2, 1), 8: (0, 0)}


async def test_members_kept_across_membership_changes_match_a_fresh_read(db_api: Api) -> None:
    """A membership event patches the kept member list with its user's row instead of
    reading every member; after joins, a rename, a leave and a power level change the
    kept list (and the display names the mention rules read) is what a fresh read gives."""
    api = db_api
    index = api.hs.push_actions
    tokens = {n: await user(api, n) for n in ("alice", "bob", "carol", "dave")}
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=tokens["alice"]))["room_id"]
    room_nid = await _room_nid(api, room)
    await send(api, room, tokens["alice"], "first")  # the member list is now kept
    await api.post(f"rooms/{room}/join", {}, token=tokens["bob"])
    await api.post(f"rooms/{room}/join", {}, token=tokens["carol"])
    kept = index._rooms[room_nid]
    assert [u for u, _ in kept.local] == [uid("alice"), uid("bob"), uid("carol")] and kept.joined_count == 3
    await send(api, room, tokens["alice"], "hello")  # the mention rules read the names now
    await api.put(f"profile/{uid('carol')}/displayname", {"displayname": "Zed"}, token=tokens["carol"])
    await api.post(f"rooms/{room}/join", {}, token=tokens["dave"])
    await api.post(f"rooms/{room}/leave", {}, token=tokens["bob"])
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels/", token=tokens["alice"])
    await api.put(f"rooms/{room}/state/m.room.power_levels/", {**levels, "users_default": 1}, token=tokens["alice"])
    ping = await send(api, room, tokens["alice"], "ping zed")
    assert await _notified_highlights(api, ping) == {uid("carol"): 1, uid("dave"): 0}

    kept = index._rooms[room_nid]
    ctx = await api.hs.db.read(lambda txn: PushActionStore.room_context(txn, room_nid))
    fresh = sorted((u, nid) for u, m, nid in ctx.members if m == "join")
    assert kept.local == fresh and kept.nids == dict(fresh) and kept.members == {u for u, _ in fresh}
    assert kept.joined_count == 3 and kept.power_levels_nid == ctx.power_levels_nid
    assert kept.profiles is not None
    assert sorted(kept.profiles) == [
        (uid("alice"), "alice", "alice"), (uid("carol"), "zed", "carol"), (uid("dave"), "dave", "dave"),
    ]


async def _notified_highlights(api: Api, event_id: str) -> dict[str, int]:
    stored = await api.hs.event_store.get_event(event_id)
    assert stored is not None
    users = [r[0] for r in await api.hs.db.fetchall("SELECT user_id FROM users")]
    found = await _store(api).get_many((u, stored.nid) for u in users)
    return {u: int(row.highlight) for (u, _), row in found.items()}
