"""Accord benchmark: storage group commit and the accounts hot paths.

Each figure is paired with a baseline from the same process, and the ratio is what
to compare between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from homeserver.config import parse_config  # noqa: E402
from homeserver.server import HomeServer  # noqa: E402
from homeserver.signing_key import write_new_signing_key  # noqa: E402
from homeserver.storage.sqlite import SqliteDatabase  # noqa: E402


async def bench_group_commit(tmp: str, n: int) -> dict[str, float]:
    """Rows/s when n writers arrive at once (group commit) vs. one commit per row."""
    db = SqliteDatabase(os.path.join(tmp, "bench.db"), synchronous="full")
    await db.open()
    await db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)")
    t0 = time.perf_counter()
    for i in range(n):  # baseline: each write waits for its own commit
        await db.execute("INSERT INTO kv VALUES (?, ?)", (f"s{i}", i))
    serial = n / (time.perf_counter() - t0)
    commits_before = db.commits
    t0 = time.perf_counter()
    await asyncio.gather(*(db.execute("INSERT INTO kv VALUES (?, ?)", (f"c{i}", i)) for i in range(n)))
    grouped = n / (time.perf_counter() - t0)
    commits = db.commits - commits_before
    await db.close()
    return {"serial_rows_per_s": serial, "grouped_rows_per_s": grouped, "grouped_commits": commits}


async def _timed(session: aiohttp.ClientSession, url: str, n: int, headers: dict[str, str]) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url, headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def bench_api(tmp: str, n: int) -> dict[str, float]:
    data = Path(tmp) / "hs"
    data.mkdir()
    write_new_signing_key(str(data / "signing.key"))
    config = parse_config({
        "server_name": "bench.local", "data_dir": str(data),
        "listeners": [{"port": 0, "resources": ["client"]}],
        "registration": {"policy": "open"}, "rate_limits": {"enabled": False},
    })
    hs = HomeServer(config)
    await hs.start()
    await hs.start_listeners()
    url = f"http://127.0.0.1:{hs.bound[0][2]}/_matrix/client"
    out: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as s:
            # Registrations arriving together: scrypt in threads plus group-committed inserts.
            async def register(i: int) -> None:
                body = {"username": f"u{i}", "password": "benchmark-password",
                        "auth": {"type": "m.login.dummy"}}
                async with s.post(f"{url}/v3/register", json=body) as r:
                    assert r.status == 200, await r.text()

            t0 = time.perf_counter()
            await asyncio.gather(*(register(i) for i in range(50)))
            out["registrations_per_s"] = 50 / (time.perf_counter() - t0)
            async with s.post(f"{url}/v3/login", json={
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "u0"},
                "password": "benchmark-password"}) as r:
                token = (await r.json())["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            await _timed(s, f"{url}/versions", 50, {})
            base = await _timed(s, f"{url}/versions", n, {})
            who = await _timed(s, f"{url}/v3/account/whoami", n, auth)
            out["versions_p50_ms"] = statistics.median(base)
            out["whoami_p50_ms"] = statistics.median(who)
            out["whoami_p99_ms"] = statistics.quantiles(who, n=100)[98]
            out["whoami_vs_versions"] = out["whoami_p50_ms"] / out["versions_p50_ms"]
    finally:
        await hs.stop()
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


async def _db_bytes(hs: HomeServer) -> int:
    rows = await hs.db.fetchall("PRAGMA page_count")
    size = await hs.db.fetchall("PRAGMA page_size")
    free = await hs.db.fetchall("PRAGMA freelist_count")
    return (rows[0][0] - free[0][0]) * size[0][0]


async def bench_room_storage(tmp: str, n: int) -> dict[str, float]:
    """Bytes added per message and per state change, and whether a state change
    costs more in a room with large state (it should not: snapshots are deltas)."""
    data = Path(tmp) / "rooms"
    data.mkdir()
    write_new_signing_key(str(data / "signing.key"))
    hs = HomeServer(parse_config({
        "server_name": "bench.local", "data_dir": str(data),
        "listeners": [{"port": 0, "resources": ["client"]}],
        "database": {"synchronous": "normal"},
    }))
    await hs.start()
    out: dict[str, float] = {}
    try:
        from homeserver.rooms.creation import create_room

        user = "@bench:bench.local"
        await hs.registration.create_account(user, "benchmark-password", login=False)
        room = await hs.room_store.get_room(await create_room(hs, user, {}))
        assert room is not None
        rs = hs.room_service

        async def measure(label: str, count: int, make: Callable[[int], Awaitable[object]]) -> None:
            before = await _db_bytes(hs)
            t0 = time.perf_counter()
            for i in range(count):
                await make(i)
            out[f"{label}_per_s"] = count / (time.perf_counter() - t0)
            out[f"{label}_bytes"] = (await _db_bytes(hs) - before) / count

        await measure("message", n, lambda i: rs.create_event(
            room, user, "m.room.message", {"msgtype": "m.text", "body": f"message number {i}"}))
        await measure("state_small", 100, lambda i: rs.create_event(
            room, user, "org.bench.small", {"v": i}, state_key="k"))
        await measure("state_grow", 500, lambda i: rs.create_event(
            room, user, "org.bench.key", {"v": i}, state_key=f"key{i}"))
        await measure("state_large", 100, lambda i: rs.create_event(
            room, user, "org.bench.small", {"v": i + 1000}, state_key="k"))
        out["state_entries"] = len(await rs.current_state_ids(room))
    finally:
        await hs.stop()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--no-synapse", action="store_true", help="(for bench_servers.py)")
    args = ap.parse_args()
    n = 200 if args.quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        gc = await bench_group_commit(tmp, n)
        print(f"storage: {n} single-row writes, synchronous=FULL")
        print(f"  one commit per write (baseline): {gc['serial_rows_per_s']:8.0f} rows/s")
        print(f"  {n} concurrent writers (group commit, {gc['grouped_commits']:.0f} commits): "
              f"{gc['grouped_rows_per_s']:8.0f} rows/s")
        print(f"  ratio grouped/baseline: {gc['grouped_rows_per_s'] / gc['serial_rows_per_s']:.1f}x")
        st = await bench_room_storage(tmp, n)
        print(f"room storage ({n} messages; state changes at ~10 and ~{st['state_entries']:.0f} state entries):")
        print(f"  message: {st['message_bytes']:.0f} bytes/event, {st['message_per_s']:.0f} events/s (one sender, sequential)")
        print(f"  state change, small state (baseline): {st['state_small_bytes']:.0f} bytes")
        print(f"  state change adding a key: {st['state_grow_bytes']:.0f} bytes")
        print(f"  state change, large state: {st['state_large_bytes']:.0f} bytes"
              f" ({st['state_large_bytes'] / st['state_small_bytes']:.2f}x the small-state baseline)")
        api = await bench_api(tmp, n)
        print("client API (in-process server, loopback HTTP):")
        print(f"  50 concurrent registrations: {api['registrations_per_s']:.0f}/s (scrypt N=16384)")
        print(f"  GET /versions p50 (baseline): {api['versions_p50_ms']:.3f} ms")
        print(f"  GET /account/whoami p50: {api['whoami_p50_ms']:.3f} ms, p99 {api['whoami_p99_ms']:.3f} ms")
        print(f"  ratio whoami/versions (cost of token auth): {api['whoami_vs_versions']:.2f}x")
        print(f"  max RSS of the benchmark process: {api['max_rss_mb']:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
