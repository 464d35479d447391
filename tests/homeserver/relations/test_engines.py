"""The relations index on both database engines: its queries (thread summaries,
threads by activity, participation) and the migration's indexing of events stored
before it."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.storage.database import Txn
from homeserver.storage.migrations import v018_relations
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import ids, messages, room_with_bob, send, uid
from tests.homeserver.relations.helpers import (
    bundled,
    edit,
    get_event,
    react,
    redact,
    relations,
    reply_in_thread,
    send_event,
    threads,
)


@pytest.fixture
async def db_api(db_overrides: dict[str, Any], make_api: Any) -> Api:
    return await make_api(**db_overrides)  # type: ignore[no-any-return]


async def _rows(api: Api) -> list[tuple[Any, ...]]:
    rows = await api.hs.db.fetchall(
        "SELECT event_id, room_nid, relates_to_id, rel_type, event_type, sender, stream_ordering"
        " FROM event_relations ORDER BY stream_ordering"
    )
    return [tuple(r) for r in rows]


async def test_queries_and_migration_backfill(db_api: Api) -> None:
    api = db_api
    alice, bob, room = await room_with_bob(api)
    t1 = await send(api, room, alice, "t1")
    t2 = await send(api, room, bob, "t2")
    r1 = await reply_in_thread(api, room, bob, t1, "a")
    await reply_in_thread(api, room, alice, t2, "b")
    last = await reply_in_thread(api, room, alice, t1, "c")
    fixed = await edit(api, room, alice, t1, "t1!")
    gone = await react(api, room, bob, t1, "x")
    await redact(api, room, bob, gone)
    # A rich reply without rel_type is no relation the index keeps.
    await send_event(api, room, alice, "m.room.message", {
        "msgtype": "m.text", "body": "reply", "m.relates_to": {"m.in_reply_to": {"event_id": t1}},
    })
    thread = bundled(await get_event(api, room, t1, bob))["m.thread"]
    assert (thread["count"], thread["latest_event"]["event_id"], thread["current_user_participated"]) == (2, last, True)
    assert bundled(await get_event(api, room, t1, bob))["m.replace"]["event_id"] == fixed
    assert ids((await threads(api, room, alice))["chunk"]) == [t1, t2]
    assert ids((await threads(api, room, bob, include="participated"))["chunk"]) == [t1, t2]
    assert ids((await relations(api, room, t1, alice, "m.thread", dir="f"))["chunk"]) == [r1, last]
    deep = await react(api, room, alice, r1, "y")
    assert deep in ids((await relations(api, room, t1, alice, recurse="true"))["chunk"])
    related = await messages(api, room, alice, dir="b", limit=50,
                             filter={"related_by_senders": [uid("bob")], "related_by_rel_types": ["m.thread"]})
    assert ids(related["chunk"]) == [t1]
    await api.request("PUT", f"rooms/{room}/send/m.reaction/dup", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": r1, "key": "y"},
    }, token=alice, expect=400)

    # The migration indexes what was stored before it exactly as the writer does.
    written = await _rows(api)
    assert len(written) == 5

    async def redo(txn: Txn) -> None:
        await txn.execute("DELETE FROM event_relations")
        for sql in v018_relations.populate(api.hs.db.dialect):
            await txn.execute(sql)

    await api.hs.db.write(redo)
    assert await _rows(api) == written



async def test_nul_in_relations_is_never_a_server_error(db_api: Api) -> None:
    api = db_api
    alice, _, room = await room_with_bob(api)
    target = await send(api, room, alice, "target")
    for rel_type in ("m.thread", "m.annotation", "m.reference"):
        await send_event(api, room, alice, "m.room.message", {
            "msgtype": "m.text", "body": "x",
            "m.relates_to": {"rel_type": rel_type, "event_id": "$a\u0000b", "key": "k"},
        })
    await send_event(api, room, alice, "m.room.message", {
        "msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.\u0000", "event_id": target},
    })
    assert (await relations(api, room, target, alice))["chunk"] == []
    await relations(api, room, "$a%00b", alice, expect=404)
    await relations(api, room, target, alice, "m.th\x00read", expect=404)
