"""Layered state snapshots: any sequence of changes materialises exactly, chains stay
bounded, and storage per change does not grow with the size of the state."""

from __future__ import annotations

import random
from pathlib import Path

from homeserver.storage.migrations import migrate
from homeserver.storage.sqlite import SqliteDatabase
from homeserver.storage.state import MAX_CHAIN_LEN, StateStore


async def test_random_histories_materialise_exactly(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "s.db"), synchronous="normal")
    await db.open()
    await migrate(db)
    try:
        store = StateStore(db)
        rng = random.Random(7)
        expected: dict[int, dict[int, int]] = {}
        # A tree of snapshots: each new one branches from a random earlier one.
        snapshot, length = await db.write(lambda txn: store.create_snapshot(txn, 1, None, {1: 1}))
        expected[snapshot] = {1: 1}
        for i in range(400):
            parent = rng.choice(list(expected)) if rng.random() < 0.2 else snapshot
            changes: dict[int, int | None] = {}
            for _ in range(rng.randint(1, 3)):
                key = rng.randint(1, 60)
                changes[key] = None if rng.random() < 0.1 else 1000 + i
            snapshot, length = await db.write(
                lambda txn, s=store, p=parent, c=changes: s.create_snapshot(txn, 1, p, c)
            )
            assert length < MAX_CHAIN_LEN
            state = dict(expected[parent])
            for k, v in changes.items():
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
            expected[snapshot] = state
        # A fresh store (empty cache) reads every snapshot back exactly.
        fresh = StateStore(db)
        for nid, state in expected.items():
            assert await fresh.get_state(nid) == state, nid
        rows = (await db.fetchone("SELECT max(chain_len) FROM state_snapshots"))[0]
        assert rows < MAX_CHAIN_LEN
    finally:
        await db.close()


async def test_rows_per_change_independent_of_state_size(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "s.db"), synchronous="normal")
    await db.open()
    await migrate(db)
    try:
        store = StateStore(db)

        async def rows() -> int:
            return (await db.fetchone("SELECT count(*) FROM state_deltas"))[0]

        big = {k: k for k in range(1, 2001)}
        snapshot, _ = await db.write(lambda txn: store.create_snapshot(txn, 1, None, big))
        before = await rows()
        for i in range(200):  # the same few keys change again and again
            snapshot, _ = await db.write(
                lambda txn, s=snapshot, i=i: store.create_snapshot(txn, 1, s, {i % 5 + 1: 5000 + i})
            )
        per_change = (await rows() - before) / 200
        # A copy of the state every MAX_CHAIN_LEN changes would cost 2000/16 = 125 rows a change.
        assert per_change < 5, per_change
        assert (await store.get_state(snapshot))[1] == 5000 + 195
    finally:
        await db.close()


async def test_cached_children_share_their_parent_state(tmp_path: Path) -> None:
    """Snapshots cached as a parent + changes (each local state event) read back like
    the database has them, and a big room's history costs its state once plus the
    changed keys, not a copy per snapshot; a small cache bound evicts, still exact."""
    db = SqliteDatabase(str(tmp_path / "s.db"), synchronous="normal")
    await db.open()
    await migrate(db)
    try:
        members = {k: k for k in range(1, 3001)}
        for bound in (100_000, 5_000):
            store = StateStore(db, cache_entries=bound)
            snapshot, length = await db.write(lambda txn, s=store: s.create_snapshot(txn, 1, None, members))
            store.remember_snapshot(snapshot, length, dict(members))
            expected = {snapshot: dict(members)}
            rng = random.Random(bound)
            for i in range(600):  # joins, leaves, profile changes: one key each
                changes: dict[int, int | None] = {rng.randint(1, 3300): 10_000 + i}
                parent = snapshot
                snapshot, length = await db.write(
                    lambda txn, s=store, p=parent, c=changes: s.create_snapshot(txn, 1, p, c)
                )
                await store.remember_child(snapshot, length, parent, changes)
                expected[snapshot] = {**expected[parent], **changes}  # type: ignore[dict-item]
                assert store.cache_stats()["entries"] <= bound
            if bound == 100_000:
                # 601 full copies would be 1.8 million entries; a new base is made once a
                # delta passes sqrt(2 * 3,000) = 77 keys: 8 bases and their deltas here.
                assert store.cache_stats()["snapshots"] == 601
                assert store.cache_stats()["entries"] < 60_000
            else:
                assert store.cache_stats()["snapshots"] < 601  # the bound evicted
            fresh = StateStore(db)
            for nid, state in expected.items():
                assert await store.get_state(nid) == state == await fresh.get_state(nid), nid
                keys = [1, 2, 3001, 3299]
                assert await store.get_entries(nid, keys) == {k: state[k] for k in keys if k in state}
            assert (await store.preload(list(expected)[-5:])) == {n: expected[n] for n in list(expected)[-5:]}
            for nid in expected:
                store.forget_snapshot(nid)
            assert store.cache_stats()["entries"] == 0
    finally:
        await db.close()


async def test_state_keys_cache_is_bounded_and_reads_back_what_it_forgot(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "s.db"), synchronous="normal")
    await db.open()
    await migrate(db)
    try:
        keys = [("m.room.member", f"@u{i}:test") for i in range(3000)]
        nids = await db.write(lambda txn: StateStore(db).key_nids(txn, keys))
        store = StateStore(db, key_entries=1000)
        for key in keys:
            store.remember_key(key, nids[key])
        assert len(store._keys_by_nid) == len(store._key_nids) == 1000
        assert store.known_key_nid(keys[0]) is None  # the oldest were forgotten
        assert store.known_key_nid(keys[-1]) == nids[keys[-1]]
        # Asked for more than it keeps: every key is answered, read or remembered.
        assert await store.keys_for(set(nids.values())) == {n: k for k, n in nids.items()}
        assert await store.lookup_key_nid(keys[0]) == nids[keys[0]]
        assert len(store._keys_by_nid) == len(store._key_nids) == 1000
    finally:
        await db.close()
