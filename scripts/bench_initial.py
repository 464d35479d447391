"""Initial sync and memory: the same client workload against Accord and, when installed,
Synapse, in the same run (servers started as scripts/bench_servers.py starts them).

- initial sync of a reader in 50 rooms of 100 messages each (10 x 20 with --quick);
- initial sync of a user in 1,000 rooms of a few messages each (200 with --quick);
- resident memory of the server process: right after start-up, its peak during the
  first workload (the figure issue 19 names "under the benchmark") and after the second
  (read from /proc, the same way for both servers).

Each initial sync is repeated and the median reported, with the server CPU it took; the
first of the repeats is also reported apart ("first"): Accord keeps each room's initial
section for the next initial sync of any of its members (sync/initial_sections.py), so the
first times the computation and the median times the kept sections. A single first
sync is a noisy figure (its CPU is read in clock ticks), so "uncached" repeats it: a message
is sent into every room before each of UNCACHED more initial syncs, so none finds a
current section (the first initial sync after the rooms changed, the common case of a
busy organization), and reports their median wall time and mean server CPU.
The repeats differ in their `timeout=` (see `bench_servers.initial_sync_path`): Synapse
keeps each /sync answer for two minutes keyed on the whole request, timeout included, so
identical repeats would time its cache, not its sync; the figure "same request again" times
that cache (one repeat of the last request) to show the difference.
`--profile` runs Accord under py-spy (when installed in the venv) during repeated
initial syncs of the many-rooms user and prints its top functions.
`--baseline CHECKOUT` measures another checkout (main's code) first, in the same run.
Usage: scripts/bench_initial.py [--quick] [--no-synapse] [--profile] [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import _py_spy, _top_functions  # noqa: E402
from bench_servers import Client, Server, initial_sync_path, registered, report, run_beside_synapse  # noqa: E402

REPEATS = 7
UNCACHED = 5


async def _fill(owner: Client, member: Client, rooms: int, events: int, tag: str) -> list[str]:
    """`rooms` rooms made by `owner`, joined by `member`, each with `events` messages."""
    # Few creations at once: one creator's rooms made in the same millisecond can collide
    # on their room IDs (v12 IDs are the create event's hash) and get a 409.
    sem = asyncio.Semaphore(4)

    async def one(r: int) -> str:
        async with sem:
            rid = (await owner.call("POST", "/createRoom", {"preset": "public_chat", "name": f"{tag} {r}"}))["room_id"]
            await member.call("POST", f"/rooms/{rid}/join", {})
            for e in range(events):
                await owner.call("PUT", f"/rooms/{rid}/send/m.room.message/{tag}{r}_{e}",
                                 {"msgtype": "m.text", "body": f"message {e} in room {r}"})
            return str(rid)

    return list(await asyncio.gather(*(one(r) for r in range(rooms))))


async def message_every_room(owner: Client, room_ids: list[str], txn: str) -> None:
    """One message from `owner` into each room (four at a time), under transaction ID `txn`."""
    sem = asyncio.Semaphore(4)

    async def touch(rid: str) -> None:
        async with sem:
            await owner.call("PUT", f"/rooms/{rid}/send/m.room.message/{txn}",
                             {"msgtype": "m.text", "body": f"change {txn}"})

    await asyncio.gather(*(touch(rid) for rid in room_ids))


async def _uncached_syncs(
    server: Server, owner: Client, client: Client, room_ids: list[str], tag: str
) -> tuple[float, float]:
    """Median wall time and mean server CPU (ms) of UNCACHED initial syncs, each after a
    message into every room (so no room's kept section is current)."""
    times, cpus = [], []
    for i in range(UNCACHED):
        await message_every_room(owner, room_ids, f"{tag}u{i}")
        await asyncio.sleep(0.3)  # what the sends set off in the background settles first
        gc.collect()
        cpu0 = server.cpu()
        t0 = time.perf_counter()
        await client.call("GET", initial_sync_path(100 + i))
        times.append((time.perf_counter() - t0) * 1000)
        cpus.append((server.cpu() - cpu0) * 1000)
    return statistics.median(times), statistics.mean(cpus)


async def _initial_syncs(
    server: Server, client: Client, rooms: int, peak: list[float]
) -> tuple[float, float, float, float, float]:
    """Median wall time and mean server CPU (ms) of REPEATS initial syncs, each a distinct
    request, then the wall time of the last request sent again (a response cache's), and
    the wall time and server CPU of the first of the repeats."""
    times = []
    cpu0 = server.cpu()
    first_cpu = 0.0
    for i in range(REPEATS):
        gc.collect()  # the client's own collections stay out of the timed requests
        t0 = time.perf_counter()
        body = await client.call("GET", initial_sync_path(i))
        times.append((time.perf_counter() - t0) * 1000)
        if i == 0:
            first_cpu = (server.cpu() - cpu0) * 1000
        assert len(body["rooms"]["join"]) == rooms, len(body["rooms"]["join"])
        peak.append(server.rss())
    cpu = (server.cpu() - cpu0) * 1000 / REPEATS
    gc.collect()
    t0 = time.perf_counter()
    await client.call("GET", initial_sync_path(REPEATS - 1))
    return statistics.median(times), cpu, (time.perf_counter() - t0) * 1000, times[0], first_cpu


async def run_initial(
    server: Server, small: tuple[int, int], many: int, profile: Path | None
) -> dict[str, float]:
    out: dict[str, float] = {"rss_idle_mb": server.idle_rss}
    peak = [server.idle_rss]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        owner, reader, member = await registered(s, server.url, "initial_owner", "initial_reader", "initial_member")
        rooms, events = small
        history_rooms = await _fill(owner, reader, rooms, events, "h")
        peak.append(server.rss())
        (out["history_initial_sync_ms"], out["history_initial_cpu_ms"], out["history_same_request_ms"],
         out["history_first_ms"], out["history_first_cpu_ms"]) = await _initial_syncs(server, reader, rooms, peak)
        out["history_uncached_ms"], out["history_uncached_cpu_ms"] = await _uncached_syncs(
            server, owner, reader, history_rooms, "h"
        )
        out["rss_load_mb"] = max(peak)
        t0 = time.perf_counter()
        many_rooms = await _fill(owner, member, many, 3, "m")
        out["many_rooms_setup_s"] = time.perf_counter() - t0
        peak.append(server.rss())
        (out["many_rooms_initial_sync_ms"], out["many_rooms_initial_cpu_ms"], out["many_rooms_same_request_ms"],
         out["many_rooms_first_ms"], out["many_rooms_first_cpu_ms"]) = await _initial_syncs(server, member, many, peak)
        out["many_rooms_uncached_ms"], out["many_rooms_uncached_cpu_ms"] = await _uncached_syncs(
            server, owner, member, many_rooms, "m"
        )
        if profile is not None and server.name == "accord":
            spy = _py_spy(server.proc.pid, 600, profile)
            if spy is not None:
                await asyncio.sleep(1)
                for i in range(15):
                    await member.call("GET", initial_sync_path(REPEATS + i))
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
                spy.wait(30)
    out["rss_many_rooms_mb"] = max(peak)
    return out


async def bench(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    small = (10, 20) if args.quick else (50, 100)
    many = 200 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="accord-bench-initial-profile-") as tmp:
        raw = Path(tmp) / "initial.raw" if args.profile else None
        results = await run_beside_synapse(
            "accord-bench-initial-", not args.no_synapse,
            lambda server: run_initial(server, small, many, raw), baseline=args.baseline, abba=args.abba,
        )
        for name, res in results:
            print(f"{name}: " + ", ".join(f"{k}={v:.2f}" for k, v in res.items()), flush=True)
        if raw is not None and raw.exists():
            _top_functions(raw)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-synapse", action="store_true")
    ap.add_argument("--profile", action="store_true", help="py-spy Accord during the many-rooms initial syncs")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="also measure this checkout, first")
    ap.add_argument("--abba", action="store_true",
                    help="measure both checkouts twice, in both orders, and report the means")
    args = ap.parse_args()
    results = asyncio.run(bench(args))
    history = "10 rooms x 20 events" if args.quick else "50 rooms x 100 events"
    many = 200 if args.quick else 1000
    report("initial sync and memory (ratio = accord/synapse):", results, [
        (f"initial sync, {history} (ms)", "history_initial_sync_ms"),
        ("  server CPU per initial sync (ms)", "history_initial_cpu_ms"),
        ("  the same request again (ms)", "history_same_request_ms"),
        ("  the first of the repeats (ms)", "history_first_ms"),
        ("    its server CPU (ms)", "history_first_cpu_ms"),
        ("  uncached: after a message in every room (ms)", "history_uncached_ms"),
        ("    its server CPU (ms)", "history_uncached_cpu_ms"),
        (f"initial sync, {many} rooms (ms)", "many_rooms_initial_sync_ms"),
        (f"  server CPU per initial sync, {many} rooms (ms)", "many_rooms_initial_cpu_ms"),
        ("  the same request again (ms)", "many_rooms_same_request_ms"),
        ("  the first of the repeats (ms)", "many_rooms_first_ms"),
        ("    its server CPU (ms)", "many_rooms_first_cpu_ms"),
        ("  uncached: after a message in every room (ms)", "many_rooms_uncached_ms"),
        ("    its server CPU (ms)", "many_rooms_uncached_cpu_ms"),
        ("RSS idle (MB)", "rss_idle_mb"),
        (f"RSS peak, {history} (MB)", "rss_load_mb"),
        (f"RSS peak, after the {many} rooms too (MB)", "rss_many_rooms_mb"),
    ])


if __name__ == "__main__":
    main()
