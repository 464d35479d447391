"""Room state as layered snapshots.

A snapshot is a delta (keys added, replaced or removed) against a parent
snapshot, so storing the state after a state event costs one row per changed
key instead of a copy of the whole room state. Chains are cut at
MAX_CHAIN_LEN by writing a full snapshot, which bounds the rows read to
materialise any state.

Materialised snapshots are kept in a bounded LRU, in the same spirit: a snapshot
made by a local state event is cached as its parent's base state (shared, never
copied) plus the keys changed since that base, so a room of thousands of members
costs one full state and a few changed keys per state event instead of a full
copy each. A delta grown past about the square root of its base's size is folded
into a new base.
The bound is on state entries held (a base counted once however many snapshots
share it), which is what the memory grows with.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from homeserver.storage.database import Database, Txn, in_chunks, marks

MAX_CHAIN_LEN = 16
_KEY_CHUNK = 500  # state keys per read (SQLite allows 32,766 parameters, PostgreSQL 65,535)
# Cached snapshots are bounded by their entries (a big room's state is thousands of
# them, a small room's a dozen), so a server of many small rooms keeps them all.
DEFAULT_CACHE_ENTRIES = 100_000
DEFAULT_KEY_ENTRIES = 50_000
_MIN_DELTA = 16  # a delta of up to this many keys never forces a new base

StateKey = tuple[str, str]
# state as state_key_nid -> event_nid
NidState = dict[int, int]


class _Cached:
    """One cached snapshot: `base` (a full state, shared with other snapshots and never
    changed) with `delta` applied (key -> event, None for a key removed)."""

    __slots__ = ("length", "base", "delta")

    def __init__(self, length: int, base: NidState, delta: dict[int, int | None] | None = None) -> None:
        self.length = length
        self.base = base
        self.delta = delta

    def full(self) -> NidState:
        """The whole state: the base itself when there is no delta (not to be changed)."""
        if not self.delta:
            return self.base
        state = dict(self.base)
        for k, v in self.delta.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        return state

    def get(self, key: int) -> int | None:
        if self.delta is not None and key in self.delta:
            return self.delta[key]
        return self.base.get(key)


class StateStore:
    def __init__(
        self, db: Database, cache_entries: int = DEFAULT_CACHE_ENTRIES, key_entries: int = DEFAULT_KEY_ENTRIES
    ) -> None:
        self.db = db
        self.cache_entries = cache_entries
        self.key_entries = key_entries  # (type, state_key) <-> nid pairs kept, about 250 bytes each
        self._snapshots: OrderedDict[int, _Cached] = OrderedDict()
        # Bases by id(): how many cached snapshots share each (counted once in _entries).
        self._base_users: dict[int, int] = {}
        self._entries = 0  # state entries held in _snapshots, each base once
        self.snapshot_hits = 0
        self.snapshot_misses = 0
        self._key_nids: dict[StateKey, int] = {}
        self._keys_by_nid: dict[int, StateKey] = {}

    # --- state keys ---

    async def key_nid(self, txn: Txn, key: StateKey) -> int:
        """The compact ID of a (type, state_key), created on first use.

        Nothing read or written inside a write transaction is cached here: the
        transaction (or, with SQLite group commit, its whole batch) may still roll
        back and the IDs be handed out again. Callers call `remember_key` after
        the commit.
        """
        nid = self._key_nids.get(key)
        if nid is not None:
            return nid
        row = await txn.fetchone(
            "SELECT state_key_nid FROM state_keys WHERE event_type = ? AND state_key = ?", key
        )
        if row is None:
            row = await txn.fetchone(
                "INSERT INTO state_keys (event_type, state_key) VALUES (?, ?) RETURNING state_key_nid",
                key,
            )
            assert row is not None
        return int(row[0])

    async def key_nids(self, txn: Txn, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        """`key_nid` for many keys in a few statements (a large room's state has a key
        per member): one read per event type and chunk, one insert for the new ones,
        one read of what the insert made. Like `key_nid`, nothing is cached here."""
        keys = list(keys)
        out = {k: self._key_nids[k] for k in keys if k in self._key_nids}
        wanted: dict[str, list[str]] = {}
        for event_type, state_key in keys:
            if (event_type, state_key) not in out:
                wanted.setdefault(event_type, []).append(state_key)

        async def read() -> None:
            for event_type, state_keys in wanted.items():
                todo = sorted(set(state_keys) - {sk for (t, sk) in out if t == event_type})
                for chunk in in_chunks(todo, _KEY_CHUNK):
                    rows = await txn.fetchall(
                        "SELECT state_key, state_key_nid FROM state_keys WHERE event_type = ?"
                        f" AND state_key IN ({marks(chunk)})", [event_type, *chunk],
                    )
                    out.update(((event_type, str(sk)), int(nid)) for sk, nid in rows)

        await read()
        new = [(t, sk) for t, sks in wanted.items() for sk in dict.fromkeys(sks) if (t, sk) not in out]
        if new:
            await txn.executemany(
                "INSERT INTO state_keys (event_type, state_key) VALUES (?, ?) ON CONFLICT DO NOTHING", new
            )
            await read()
        return out

    def remember_key(self, key: StateKey, nid: int) -> None:
        self._remember_key(key, nid)

    def remember_snapshot(self, snapshot: int, chain_len: int, state: NidState) -> None:
        """Cache a snapshot the caller has just committed (the caller gives up `state`)."""
        self._put(snapshot, _Cached(chain_len, state))

    async def remember_child(
        self, snapshot: int, chain_len: int, parent: int, changes: Mapping[int, int | None]
    ) -> None:
        """Cache a snapshot just committed as `parent` + `changes`: over the parent's
        base when the parent is cached and the delta stays small, else in full."""
        cached = self._snapshots.get(parent)
        if cached is None:
            state = await self.get_state(parent)
            for k, v in changes.items():
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
            self._put(snapshot, _Cached(chain_len, state))
            return
        delta = dict(cached.delta or {})
        delta.update(changes)
        # Each snapshot's delta holds every change since its base, so a base serving d
        # snapshots costs about len(base) + d²/2 entries: d near sqrt(2 * len(base))
        # is the least per snapshot (77 keys for a state of 3,000).
        if len(delta) <= max(_MIN_DELTA, math.isqrt(2 * len(cached.base))):
            self._put(snapshot, _Cached(chain_len, cached.base, delta))
        else:
            self._put(snapshot, _Cached(chain_len, _Cached(0, cached.base, delta).full()))

    def forget_snapshot(self, snapshot: int) -> None:
        """Drop a snapshot from the cache (its room was purged)."""
        self._drop(self._snapshots.pop(snapshot, None))

    def _put(self, snapshot: int, entry: _Cached) -> None:
        self._drop(self._snapshots.pop(snapshot, None))
        self._snapshots[snapshot] = entry
        users = self._base_users.get(id(entry.base), 0)
        if users == 0:
            self._entries += len(entry.base)
        self._base_users[id(entry.base)] = users + 1
        self._entries += len(entry.delta or ())
        while self._entries > self.cache_entries and len(self._snapshots) > 1:
            self._drop(self._snapshots.popitem(last=False)[1])

    def _drop(self, entry: _Cached | None) -> None:
        if entry is None:
            return
        self._entries -= len(entry.delta or ())
        users = self._base_users[id(entry.base)] - 1
        if users:
            self._base_users[id(entry.base)] = users
        else:
            del self._base_users[id(entry.base)]
            self._entries -= len(entry.base)

    def cache_stats(self) -> dict[str, int]:
        return {
            "hits": self.snapshot_hits, "misses": self.snapshot_misses, "entries": self._entries,
            "snapshots": len(self._snapshots),
        }

    def _remember_key(self, key: StateKey, nid: int) -> None:
        """Remember a key both ways, forgetting the oldest beyond `key_entries` (a
        forgotten key is read again when asked: every caller treats the cache as a hint).
        Event types are few, so each is held once."""
        key = (sys.intern(key[0]), key[1])
        self._key_nids[key] = nid
        self._keys_by_nid[nid] = key
        while len(self._keys_by_nid) > self.key_entries:
            old_nid = next(iter(self._keys_by_nid))
            old_key = self._keys_by_nid.pop(old_nid)
            if self._key_nids.get(old_key) == old_nid:
                del self._key_nids[old_key]

    def known_key_nid(self, key: StateKey) -> int | None:
        """The key's nid if this process has seen it (no read; None says nothing)."""
        return self._key_nids.get(key)

    async def lookup_key_nid(self, key: StateKey) -> int | None:
        nid = self._key_nids.get(key)
        if nid is not None:
            return nid
        row = await self.db.fetchone(
            "SELECT state_key_nid FROM state_keys WHERE event_type = ? AND state_key = ?", key
        )
        if row is None:
            return None
        self._remember_key(key, int(row[0]))
        return int(row[0])

    async def keys_for(self, nids: set[int]) -> dict[int, StateKey]:
        missing = [n for n in nids if n not in self._keys_by_nid]
        out = {n: self._keys_by_nid[n] for n in nids if n in self._keys_by_nid}
        for chunk in in_chunks(missing):
            rows = await self.db.fetchall(
                "SELECT state_key_nid, event_type, state_key FROM state_keys WHERE state_key_nid IN "
                f"({marks(chunk)})",
                chunk,
            )
            for nid, t, sk in rows:
                out[int(nid)] = (t, sk)
                self._remember_key((t, sk), int(nid))
        return out

    # --- snapshots ---

    async def create_snapshot(
        self, txn: Txn, room_nid: int, parent: int | None, changes: Mapping[int, int | None]
    ) -> tuple[int, int]:
        """Write the state `parent` + `changes`; returns (snapshot ID, chain length)."""
        parent_len = 0
        rebase: tuple[int | None, NidState] | None = None  # (new parent, state to diff against)
        if parent is not None:
            parent_len, parent_state = await self._load(txn, parent, cache=False)
            if parent_len + 1 >= MAX_CHAIN_LEN:
                target = dict(parent_state)
                for k, v in changes.items():
                    if v is None:
                        target.pop(k, None)
                    else:
                        target[k] = v
                # Two levels: re-base on the chain's root (a full snapshot) while the
                # difference from it stays small; write a new full snapshot only once
                # it does not. This keeps chains short without copying large states
                # every MAX_CHAIN_LEN changes.
                root = await self._root_of(txn, parent)
                _, root_state = await self._load(txn, root, cache=False)
                delta: dict[int, int | None] = {
                    k: v for k, v in target.items() if root_state.get(k) != v
                }
                delta.update({k: None for k in root_state if k not in target})
                if len(delta) * 2 <= len(target):
                    rebase = (root, delta)  # type: ignore[assignment]
                else:
                    rebase = (None, target)
        if rebase is not None:
            new_parent, rows_state = rebase
            length = 0 if new_parent is None else 1
            row = await txn.fetchone(
                "INSERT INTO state_snapshots (room_nid, parent_nid, chain_len) VALUES (?, ?, ?)"
                " RETURNING snapshot_nid",
                (room_nid, new_parent, length),
            )
            assert row is not None
            rows: list[tuple[int, int, int | None]] = [(int(row[0]), k, v) for k, v in rows_state.items()]
        else:
            length = parent_len + 1 if parent is not None else 0
            row = await txn.fetchone(
                "INSERT INTO state_snapshots (room_nid, parent_nid, chain_len) VALUES (?, ?, ?)"
                " RETURNING snapshot_nid",
                (room_nid, parent, length),
            )
            assert row is not None
            rows = [(int(row[0]), k, v) for k, v in changes.items()]
        if rows:
            await txn.executemany(
                "INSERT INTO state_deltas (snapshot_nid, state_key_nid, event_nid) VALUES (?, ?, ?)",
                rows,
            )
        return int(row[0]), length

    @staticmethod
    async def _root_of(txn: Txn, snapshot: int) -> int:
        nid = snapshot
        while True:
            row = await txn.fetchone("SELECT parent_nid FROM state_snapshots WHERE snapshot_nid = ?", (nid,))
            if row is None or row[0] is None:
                return nid
            nid = int(row[0])

    async def get_entries(self, snapshot: int, key_nids: Iterable[int]) -> dict[int, int]:
        """Some keys of a snapshot (key nid -> event nid, absent keys left out), without
        copying the whole state as `get_state` does."""
        cached = self._snapshots.get(snapshot)
        if cached is not None:
            self.snapshot_hits += 1
            self._snapshots.move_to_end(snapshot)
            state = cached.base
            if cached.delta:
                found = ((k, cached.get(k)) for k in key_nids)
                return {k: e for k, e in found if e is not None}
        else:
            self.snapshot_misses += 1
            _, state = await self.db.read(lambda txn: self._load(txn, snapshot))
        return {k: state[k] for k in key_nids if k in state}

    async def get_state(self, snapshot: int) -> NidState:
        """The full state of a snapshot (a copy the caller may change)."""
        cached = self._snapshots.get(snapshot)
        if cached is not None:
            self.snapshot_hits += 1
            self._snapshots.move_to_end(snapshot)
            return dict(cached.base) if not cached.delta else cached.full()
        self.snapshot_misses += 1
        _, state = await self.db.read(lambda txn: self._load(txn, snapshot))
        return dict(state)

    async def preload(self, snapshots: Iterable[int]) -> dict[int, NidState]:
        """Materialise and cache many snapshots at once (an initial sync reads the state of
        every room of the user): their chains are walked level by level for all of them
        together and their deltas read in one statement per chunk, in one read
        transaction, where `_load` costs a few statements per snapshot. Returns their
        states, which the caller must not change."""
        out: dict[int, NidState] = {}
        missing: set[int] = set()
        for snapshot in snapshots:
            cached = self._snapshots.get(snapshot)
            if cached is not None:
                out[snapshot] = cached.full()
            else:
                missing.add(snapshot)
        self.snapshot_hits += len(out)
        self.snapshot_misses += len(missing)
        if missing:
            # Cached here, on the event loop, not in the engine's reading thread.
            for nid, (length, state) in (await self.db.read(lambda txn: self._materialise(txn, missing))).items():
                self.remember_snapshot(nid, length, state)
                out[nid] = state
        return out

    async def _materialise(self, txn: Txn, missing: set[int]) -> dict[int, tuple[int, NidState]]:
        parents: dict[int, int | None] = {}
        bases: dict[int, tuple[int, NidState]] = {}
        frontier = list(missing)
        while frontier:
            for chunk in in_chunks(frontier):
                rows = await txn.fetchall(
                    "SELECT snapshot_nid, parent_nid FROM state_snapshots WHERE snapshot_nid IN "
                    f"({marks(chunk)})",
                    chunk,
                )
                for nid, parent in rows:
                    parents[int(nid)] = None if parent is None else int(parent)
            unknown = [n for n in frontier if n not in parents]
            if unknown:
                raise KeyError(f"unknown state snapshot {unknown[0]}")
            up = {p for p in (parents[n] for n in frontier) if p is not None and p not in parents}
            # Cached ancestors are taken now: the cache may drop them before the build.
            frontier = []
            for p in up:
                hit = self._snapshots.get(p)
                if hit is not None:
                    bases[p] = (hit.length, hit.full())
                else:
                    frontier.append(p)
        deltas: dict[int, list[tuple[int, int | None]]] = {}
        for chunk in in_chunks(parents):
            rows = await txn.fetchall(
                "SELECT snapshot_nid, state_key_nid, event_nid FROM state_deltas WHERE snapshot_nid IN "
                f"({marks(chunk)})",
                chunk,
            )
            for snap, key, ev in rows:
                deltas.setdefault(int(snap), []).append((int(key), ev))
        built = bases

        def build(nid: int) -> tuple[int, NidState]:
            # Iterative: from the nearest known ancestor (cached, built, or the root) down.
            chain: list[int] = []
            node: int | None = nid
            base: tuple[int, NidState] = (-1, {})
            while node is not None:
                known = built.get(node)
                if known is not None:
                    base = known
                    break
                chain.append(node)
                node = parents[node]
            length, state = base
            for n in reversed(chain):
                state = dict(state)
                for k, e in deltas.get(n, ()):
                    if e is None:
                        state.pop(k, None)
                    else:
                        state[k] = int(e)
                length += 1
                built[n] = (length, state)
            return length, state

        return {nid: build(nid) for nid in missing}

    async def _load(self, txn: Txn, snapshot: int, cache: bool = True) -> tuple[int, NidState]:
        cached = self._snapshots.get(snapshot)
        if cached is not None:
            return cached.length, cached.full()
        chain: list[int] = []
        base: NidState = {}
        base_len = -1
        nid: int | None = snapshot
        while nid is not None:
            hit = self._snapshots.get(nid)
            if hit is not None:
                base_len, base = hit.length, hit.full()
                break
            chain.append(nid)
            row = await txn.fetchone(
                "SELECT parent_nid, chain_len FROM state_snapshots WHERE snapshot_nid = ?", (nid,)
            )
            if row is None:
                raise KeyError(f"unknown state snapshot {nid}")
            nid = row[0]
        state = dict(base)
        rows = await txn.fetchall(
            f"SELECT snapshot_nid, state_key_nid, event_nid FROM state_deltas WHERE snapshot_nid IN ({marks(chain)})",
            chain,
        ) if chain else []
        by_snapshot: dict[int, list[tuple[int, int | None]]] = {}
        for s, k, e in rows:
            by_snapshot.setdefault(int(s), []).append((int(k), e))
        for s in reversed(chain):  # root first
            for k, e in by_snapshot.get(s, []):
                if e is None:
                    state.pop(k, None)
                else:
                    state[k] = int(e)
        length = base_len + len(chain)
        if cache:
            self.remember_snapshot(snapshot, length, state)
        return length, state

