"""Outliers written in bulk (a joined room's state and auth chain), on both engines:
new and known state keys, events given twice or already stored, and every row read
back as it was written."""

from __future__ import annotations

from typing import Any

import orjson

from federation.events import add_hashes_and_signature, compute_event_id
from tests.conftest import ClientFactory

ROOM = "!bulk:elsewhere.example"


def _event(hs: Any, n: int, **fields: Any) -> dict[str, Any]:
    event = {
        "room_id": ROOM, "sender": "@owner:elsewhere.example", "origin_server_ts": 1_700_000_000_000 + n,
        "depth": n, "prev_events": [], "auth_events": [], "content": {"n": n}, **fields,
    }
    event = add_hashes_and_signature(event, "10", hs.config.server_name, hs.signing_key)
    event["event_id"] = compute_event_id(event, "10")
    return event


async def test_outliers_in_bulk(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    hs = (await make_api(**db_overrides)).hs
    room = await hs.received_events.ensure_room(ROOM, "10", "@owner:elsewhere.example")
    create = _event(hs, 1, type="m.room.create", state_key="", content={"creator": "@owner:elsewhere.example"})
    await hs.received_events.persist_outliers(room, [create])  # stored before the batch
    members = [
        _event(hs, 10 + i, type="m.room.member", state_key=f"@u{i}:elsewhere.example",
               content={"membership": "join"})
        for i in range(1200)  # more than one chunk of keys and of rows
    ]
    message = _event(hs, 5, type="m.room.message", content={"body": "not state"})
    await hs.received_events.persist_outliers(room, [create, *members, message, members[3]])

    stored = await hs.event_store.get_events([create["event_id"], message["event_id"],
                                              *(m["event_id"] for m in members)])
    assert len(stored) == 1202 and all(e.outlier and e.stream_ordering is None for e in stored.values())
    assert len({e.nid for e in stored.values()}) == 1202
    # The rows as written, under the nids the cache was given.
    rows = await hs.db.fetchall(
        "SELECT event_id, event_nid, json, state_key_nid IS NULL FROM events WHERE room_nid = ?", (room.room_nid,)
    )
    assert {r[0]: (r[1], orjson.loads(r[2]), bool(r[3])) for r in rows} == {
        k: (e.nid, e.event, e.state_key is None) for k, e in stored.items()
    }
    # Each member's state key got one nid of its own, found again by a later lookup.
    keys = {("m.room.member", m["state_key"]) for m in members}
    nids = await hs.db.write(lambda txn: hs.state_store.key_nids(txn, keys))
    assert set(nids) == keys and len(set(nids.values())) == len(keys)
