"""Remote join of a large room: how long until the joining user can send and read.

A room with N members (2,000 by default) is built on an Accord server and on a Synapse,
each with its own users (plus a few messages). Then fresh joining servers join them:

  accord<-synapse   a user of a fresh Accord joins the Synapse room
  accord<-accord    a user of the same fresh Accord joins the Accord room
  synapse<-synapse  a user of a fresh Synapse joins the Synapse room: the baseline
                    (Synapse joins with partial state, MSC3706, when the resident
                    server offers `omit_members`, which Synapse does)
  synapse<-accord   the same Synapse joins the Accord room (partial state too: Accord
                    serves `omit_members`), for information

Each join is timed from the client's POST /join until its first message is sent and
GET /messages returns the timeline with it. `--baseline CHECKOUT` adds joins from an
Accord running another checkout's code (`before<-...`), to compare two versions in one run. Before the measured joins each joining server
joins a small room of each resident server, so the first contact (key fetches) is not
billed to the large join. Each repetition adds fresh joining servers (earlier ones keep
running: the rooms hold their events, signed with their keys); the servers settle
(idle CPU) between joins, so that Synapse finishing a partial-state join in the
background is not billed to the next one. The machine is shared: compare the ratios.

Usage: scripts/bench_join.py [--quick] [--members N] [--reps N] [--no-synapse] [--profile]
                             [--baseline CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import aiohttp  # noqa: E402
from bench_federation import (  # noqa: E402
    MatrixClient,
    Peer,
    _q,
    _synapse_python,
    accord_server,
    new_user,
    settle,
    synapse_server,
)
from bench_scale import _top_functions  # noqa: E402

from tests.tls_ca import TestCA  # noqa: E402

TARGET_RATIO = 3.0  # Synapse's join time over Accord's


async def build_room(session: aiohttp.ClientSession, host: Peer, members: int) -> tuple[str, MatrixClient]:
    """A public room of `members` users of `host` (joined a few at a time) with a few messages."""
    owner = await new_user(session, host, "owner")
    room = await owner.create_room(preset="public_chat", name="large room", topic="join benchmark")
    sem = asyncio.Semaphore(8)

    async def member() -> None:
        async with sem:
            user = await new_user(session, host, "member")
            for attempt in itertools.count():
                try:
                    await user.call("POST", f"/rooms/{_q(room)}/join", {})
                    return
                except RuntimeError:
                    if attempt >= 5:
                        raise
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(member() for _ in range(members - 1)))
    for i in range(20):
        await owner.send_text(room, f"before the join {i}")
    return room, owner


async def small_room(session: aiohttp.ClientSession, host: Peer) -> str:
    owner = await new_user(session, host, "small")
    return await owner.create_room(preset="public_chat")


async def timed_join(user: MatrixClient, room: str, via: str) -> tuple[float, float, float]:
    """Milliseconds from POST /join until a sent message is read back with /messages:
    the total, and of it the join request and the send."""
    t0 = time.perf_counter()
    await user.join(room, via)
    t1 = time.perf_counter()
    body = f"hello from {user.user_id}"
    await user.send_text(room, body)
    t2 = time.perf_counter()
    while True:
        page = await user.call("GET", f"/rooms/{_q(room)}/messages", params={"dir": "b", "limit": "20"})
        if any(e.get("content", {}).get("body") == body for e in page.get("chunk", [])):
            return (time.perf_counter() - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000
        await asyncio.sleep(0.01)


def _py_spy(pid: int, dest: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("(py-spy is not installed: no profile)")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", "600", "--rate", "1000", "--format", "raw", "--output", str(dest),
         "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def bench(args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    root = Path(tempfile.mkdtemp(prefix="accord-bench-join-"))
    ca = TestCA(root / "ca")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    python = None if args.no_synapse else _synapse_python()
    times: dict[str, list[tuple[float, float, float]]] = {"accord<-accord": []}
    if args.baseline:
        times["before<-accord"] = []
    if python:
        times["accord<-synapse"] = []
        if args.baseline:
            times["before<-synapse"] = []
        times["synapse<-synapse"] = []
        times["synapse<-accord"] = []
    ips = (f"127.0.0.{n}" for n in itertools.count(20))
    try:
        async with contextlib.AsyncExitStack() as stack:
            s = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)))
            hosts = [accord_server(root, ca, next(ips), s)]
            if python:
                hosts.append(synapse_server(root, ca, next(ips), python))
            residents = await asyncio.gather(*(stack.enter_async_context(cm) for cm in hosts))
            t0 = time.monotonic()
            built = await asyncio.gather(*(build_room(s, h, args.members) for h in residents))
            print(f"  (rooms of {args.members} members built in {time.monotonic() - t0:.0f} s)")
            rooms = {h.kind: (h, room) for h, (room, _) in zip(residents, built, strict=True)}
            smalls = {h.kind: await small_room(s, h) for h in residents}
            everyone = list(residents)
            for rep in range(args.reps):
                # Earlier joiners keep running: the rooms hold their events, signed with their keys.
                starting = {"accord": accord_server(root, ca, next(ips), s)}
                if args.baseline:
                    starting["before"] = accord_server(root, ca, next(ips), s, repo=args.baseline)
                if python:
                    starting["synapse"] = synapse_server(root, ca, next(ips), python)
                fresh = await asyncio.gather(*(stack.enter_async_context(cm) for cm in starting.values()))
                everyone += fresh
                by_kind = dict(zip(starting, fresh, strict=True))
                # First contact (keys, TLS) with each resident, outside the measurement.
                for joiner in fresh:
                    for kind, (host, _) in rooms.items():  # (by kind of resident)
                        user = await new_user(s, joiner, "warm")
                        await user.join(smalls[kind], host.name)
                runs = [("accord<-accord", "accord", "accord")]
                if args.baseline:
                    runs.append(("before<-accord", "before", "accord"))
                if python:
                    runs.append(("accord<-synapse", "accord", "synapse"))
                    if args.baseline:
                        runs.append(("before<-synapse", "before", "synapse"))
                    runs.append(("synapse<-synapse", "synapse", "synapse"))
                    runs.append(("synapse<-accord", "synapse", "accord"))  # partial state from us (omit_members)
                for label, joiner_kind, host_kind in runs:
                    await settle(everyone, within=30.0)
                    joiner, (host, room) = by_kind[joiner_kind], rooms[host_kind]
                    user = await new_user(s, joiner, "joiner")
                    spies = []
                    if args.profile and joiner_kind == "accord" and rep == args.reps - 1:
                        spies.append(_py_spy(joiner.pid, root / f"{label}.raw"))
                        if host.kind == "accord":  # the resident's side of the join too
                            spies.append(_py_spy(host.pid, root / f"{label} (resident).raw"))
                        await asyncio.sleep(0.5)
                    ms, join_ms, send_ms = await timed_join(user, room, host.name)
                    for spy in spies:
                        if spy is not None:
                            spy.send_signal(signal.SIGINT)
                            spy.wait(60)
                    times[label].append((ms, join_ms, send_ms))
                    print(f"  rep {rep + 1}: {label} {ms:.0f} ms (POST /join {join_ms:.0f}, send {send_ms:.0f})")
                if args.profile:
                    for raw in sorted(root.glob("*.raw")):
                        if raw.stat().st_size:
                            print(f"  {raw.stem}:")
                            _top_functions(raw)
                        raw.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return times


def report(times: dict[str, list[tuple[float, float, float]]], members: int) -> None:
    print(f"remote join of a room of {members} members (median of {len(times['accord<-accord'])}; ms):"
          " until the first send and /messages with it; of it, the POST /join")
    med = {k: statistics.median(t for t, _, _ in v) for k, v in times.items() if v}
    base = med.get("synapse<-synapse")
    for label, value in med.items():
        join = statistics.median(j for _, j, _ in times[label])
        line = f"  {label:20s}{value:10.0f}{join:10.0f}"
        if base and not label.startswith("synapse<-"):
            line += f"   synapse/ours {base / value:5.2f}x (target >= {TARGET_RATIO:.0f}x:"
            line += f" {'met' if base / value >= TARGET_RATIO else 'MISSED'})"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="500 members, one repetition")
    ap.add_argument("--members", type=int, default=None, help="members of each large room (default 2000)")
    ap.add_argument("--reps", type=int, default=None, help="fresh joining servers, one join each (default 3)")
    ap.add_argument("--no-synapse", action="store_true", help="Accord only")
    ap.add_argument("--profile", action="store_true", help="py-spy the joining Accord (and an Accord resident) in the last repetition")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="also join from an Accord running another checkout's code (before<-...), same run")
    args = ap.parse_args()
    args.members = args.members or (500 if args.quick else 2000)
    args.reps = args.reps or (1 if args.quick else 3)
    t0 = time.monotonic()
    report(asyncio.run(bench(args)), args.members)
    print(f"  (join benchmark took {time.monotonic() - t0:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
