"""Benchmarks at an organization's scale, against Accord and (when installed) Synapse in the
same run: many readers of one room, and big accounts.

- fan-out: N clients long-polling /sync in one room while one sender posts M messages a
  second; the delay from each send until each reader's /sync answer carries it (p50/p99
  over every reader and message), and the server's CPU per /sync response delivered.
- initial sync of a user in many rooms (a 1,000-room account).
- the write path: concurrent sends into one room (64 in flight), and sequential sends
  into a room of 1,000 joined members and, on Accord only, of 10,000 (every member's
  push rules are the server's to evaluate on each send; Synapse's joins slow down so
  much as its room grows that 10,000 would take hours here). Accounts are registered with cheap password hashing on both
  servers (scrypt N=2, bcrypt 4 rounds): registration is not what is measured.

Both servers run as separate processes on loopback (scripts/bench_servers.py starts them),
so their CPU time is read from /proc the same way. `--profile` runs Accord under py-spy
(when installed in the venv) during the fan-out and prints its top functions.
`--members N` sets the big room's size, `--synapse-members N` the size measured on both.
The profile covers the sends only (not the accounts' set-up); `--profile-out` keeps
py-spy's collapsed stacks of the fan-out. Each run takes free ports, so checkouts can bench at once.
`--baseline DIR` runs a second Accord from another checkout (the code before a change) in
the same run, so a change is measured against it on the same noisy machine; with `--abba`
both run twice, in both orders (the server measured first in a run was measured slower,
whatever its code), and the means are reported. `--sends N` sets the sequential sends
measured at each size of the big room and ten times as many concurrent ones (default 300:
with 100, CPU read in 10 ms ticks moved a send's figure by 0.1 ms, and the concurrent
window was under a second; more give `--profile` more samples).
Usage: scripts/bench_scale.py [--quick] [--no-synapse] [--profile [--profile-out FILE]]
       [--only fanout|rooms|write] [--readers N] [--members N] [--synapse-members N] [--sends N]
       [--baseline DIR [--abba]]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_servers import (  # noqa: E402
    Client,
    Server,
    _pct,
    _synapse_python,
    free_ports,
    in_abba_order,
    incremental_sync_path,
    initial_sync_path,
    mean_of_rounds,
    registered,
    report,
    start_accord,
    start_synapse,
)


async def _register_all(s: aiohttp.ClientSession, url: str, prefix: str, n: int) -> list[Client]:
    clients = [Client(s, url) for _ in range(n)]
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with sem:
            await clients[i].register(f"{prefix}{i}")

    await asyncio.gather(*(one(i) for i in range(n)))
    return clients


class _LongPoll(asyncio.Protocol):
    """One reader's keep-alive HTTP/1.1 connection, sending GETs and reading whole
    responses (Content-Length or chunked): what a reader must do and nothing more."""

    def __init__(self, host: str, token: str) -> None:
        self.host = host
        self.token = token
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    @classmethod
    async def open(cls, url: str, token: str) -> _LongPoll:
        host = url.split("://", 1)[1]
        name, port = host.rsplit(":", 1)
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: cls(host, token), name, int(port))
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        found = _http_response(self.buf)
        if found is not None:
            self.waiter.set_result(found)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def get(self, target: str) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n\r\n".encode()
        )
        return await self.waiter


def _http_response(buf: bytearray) -> tuple[int, bytes] | None:
    """(status, body) of the whole response at the start of `buf` (taken out of it),
    or None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in lines[1:])}
    at = end + 4
    if "content-length" in fields:
        stop = at + int(fields["content-length"])
        if len(buf) < stop:
            return None
        body = bytes(buf[at:stop])
    elif fields.get("transfer-encoding") == "chunked":
        chunks = []
        while True:
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buf[at:line_end]).split(b";")[0], 16)
            if len(buf) < line_end + 2 + size + 2:
                return None
            chunks.append(bytes(buf[line_end + 2 : line_end + 2 + size]))
            at = line_end + 2 + size + 2
            if size == 0:
                break
        stop, body = at, b"".join(chunks)
    else:
        raise RuntimeError(f"a response without a length: {lines[0]}")
    del buf[:stop]
    return status, body


async def run_fanout(
    server: Server, readers: int, rate: float, seconds: float, profile_to: Path | None = None
) -> dict[str, float]:
    """`readers` users long-poll /sync in one room while one sender posts `rate` messages/s;
    `profile_to`: py-spy the server while the messages are sent (not the set-up)."""
    out: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
        sender = Client(s, server.url)
        await sender.register("fanout_sender")
        room = (await sender.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        clients = await _register_all(s, server.url, "fanout", readers)
        sem = asyncio.Semaphore(8)

        async def join(c: Client) -> str:
            async with sem:
                await c.call("POST", f"/rooms/{room}/join", {})
                return str((await c.call("GET", "/sync?timeout=0"))["next_batch"])

        tokens = await asyncio.gather(*(join(c) for c in clients))
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        responses = [0]
        stop = asyncio.Event()
        total = int(rate * seconds)

        async def read(c: Client, token: str) -> None:
            # The readers share this process and its cores with the server, so they are
            # made as cheap as a reader can be (aiohttp's client cost about what the
            # server does per response, and that doubled every server's figures): one
            # plain keep-alive connection each (_LongPoll). A reader's delivery time is
            # taken when its body is read and parsed; only then, after letting the
            # readers answered with it take theirs, does it send its next long poll.
            conn = await _LongPoll.open(server.url, c.token)
            try:
                seen = 0
                while seen < total and not stop.is_set():
                    status, raw = await conn.get(f"/_matrix/client/v3/sync?since={quote(token)}&timeout=30000")
                    if status != 200:
                        raise RuntimeError(f"GET /sync: {status} {raw[:200]!r}")
                    body = orjson.loads(raw)
                    now = time.perf_counter()
                    responses[0] += 1
                    token = body["next_batch"]
                    timeline = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
                    for e in timeline.get("events", []):
                        body_text = e.get("content", {}).get("body")
                        if e.get("type") == "m.room.message" and body_text in sent_at:
                            latencies.append((now - sent_at[body_text]) * 1000)
                            seen += 1
                    await asyncio.sleep(0)
            finally:
                conn.close()

        # Every reader waits in its long poll before the first message.
        tasks = [asyncio.ensure_future(read(c, t)) for c, t in zip(clients, tokens, strict=True)]
        await asyncio.sleep(2)
        spy = _py_spy(server.proc.pid, int(seconds) + 120, profile_to) if profile_to is not None else None
        cpu0 = server.cpu()
        client_cpu0 = time.process_time()
        responses[0] = 0
        t_start = time.perf_counter()
        for i in range(total):
            due = t_start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            text = f"fan-out {i}"
            sent_at[text] = time.perf_counter()
            await sender.call("PUT", f"/rooms/{room}/send/m.room.message/f{i}", {"msgtype": "m.text", "body": text})
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        except TimeoutError:
            stop.set()
        cpu = server.cpu() - cpu0
        client_cpu = time.process_time() - client_cpu0
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT, not SIGTERM
            spy.wait(60)
        for t in tasks:
            t.cancel()
        out["fanout_p50_ms"] = statistics.median(latencies) if latencies else float("nan")
        out["fanout_p99_ms"] = _pct(latencies, 99) if latencies else float("nan")
        out["fanout_delivered_pct"] = 100 * len(latencies) / (total * readers)
        out["fanout_responses"] = responses[0]
        out["fanout_cpu_per_response_ms"] = cpu * 1000 / max(1, responses[0])
        # The readers' own side (this process, on the same cores): when it costs as much
        # per response as the server, it is the client that sets the delivery figures.
        out["fanout_client_cpu_per_response_ms"] = client_cpu * 1000 / max(1, responses[0])
        # Not the request each reader started with (`/sync?timeout=0`): Synapse would
        # answer it from its response cache, as it was before the fan-out.
        t0 = time.perf_counter()
        await clients[0].call("GET", initial_sync_path(1))
        out["fanout_initial_sync_ms"] = (time.perf_counter() - t0) * 1000
    return out


async def run_many_rooms(server: Server, rooms: int) -> dict[str, float]:
    """Initial sync of a user joined to `rooms` rooms, each with a few messages."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        owner, member = await registered(s, server.url, "manyrooms_owner", "manyrooms_member")
        # Few creations at once: one creator's rooms made in the same millisecond can
        # collide on their room IDs (v12 IDs are the create event's hash) and get a 409.
        sem = asyncio.Semaphore(4)

        async def one(r: int) -> None:
            async with sem:
                rid = (await owner.call("POST", "/createRoom", {"preset": "public_chat", "name": f"r{r}"}))["room_id"]
                await member.call("POST", f"/rooms/{rid}/join", {})
                for e in range(3):
                    await owner.call("PUT", f"/rooms/{rid}/send/m.room.message/m{r}_{e}",
                                     {"msgtype": "m.text", "body": f"message {e}"})

        t0 = time.perf_counter()
        await asyncio.gather(*(one(r) for r in range(rooms)))
        out["many_rooms_setup_s"] = time.perf_counter() - t0
        times = []
        cpu0 = server.cpu()
        for i in range(3):
            t0 = time.perf_counter()
            body = await member.call("GET", initial_sync_path(i))
            times.append((time.perf_counter() - t0) * 1000)
            assert len(body["rooms"]["join"]) == rooms, len(body["rooms"]["join"])
        out["many_rooms_initial_sync_ms"] = statistics.median(times)
        out["many_rooms_initial_cpu_ms"] = (server.cpu() - cpu0) * 1000 / len(times)
        token = body["next_batch"]
        times = []
        for i in range(10):
            t0 = time.perf_counter()
            body = await member.call("GET", incremental_sync_path(token, i))
            times.append((time.perf_counter() - t0) * 1000)
        out["many_rooms_incremental_ms"] = statistics.median(times)
    return out


async def run_writes(
    server: Server, members: int, small: int, sends: int, spy: Callable[[str], Any]
) -> dict[str, float]:
    """Concurrent sends into one room, then sequential sends into a room of `small`
    joined users, grown (on Accord only) to `members`. `spy(name)` starts a profile of
    the server (or does nothing) and returns a function that stops it."""
    out: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as s:
        owner = Client(s, server.url)
        await owner.register("writes_owner")
        busy = (await owner.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        for i in range(20):  # warm up
            await owner.call("PUT", f"/rooms/{busy}/send/m.room.message/w{i}", {"msgtype": "m.text", "body": "w"})
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await owner.call("PUT", f"/rooms/{busy}/send/m.room.message/c{i}",
                                 {"msgtype": "m.text", "body": f"concurrent {i}"})

        stop = spy("concurrent")
        cpu0, t0 = server.cpu(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sends * 10)))
        elapsed = time.perf_counter() - t0
        stop()
        out["concurrent_events_per_s"] = sends * 10 / elapsed
        out["concurrent_cpu_per_event_ms"] = (server.cpu() - cpu0) * 1000 / (sends * 10)

        big = (await owner.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        users: list[Client] = []

        async def join(c: Client) -> None:
            async with sem:
                await c.call("POST", f"/rooms/{big}/join", {})

        # The room grows in stages, measured at each: every server at the first size,
        # only Accord at the second (Synapse's joins slow down as the room grows).
        for stage, size in (("big_room_small", min(members, small)), ("big_room", members)):
            if size <= len(users) and stage == "big_room":
                for key in ("send_p50_ms", "send_p99_ms", "cpu_per_send_ms", "join_s", "cpu_per_join_ms"):
                    out[f"big_room_{key}"] = out.get(f"big_room_small_{key}", float("nan"))
                break
            if stage == "big_room" and server.name == "synapse":
                for key in ("send_p50_ms", "send_p99_ms", "cpu_per_send_ms", "join_s", "cpu_per_join_ms"):
                    out[f"big_room_{key}"] = float("nan")
                break
            t0 = time.perf_counter()
            fresh = await _register_all(s, server.url, f"big{len(users)}_", size - len(users))
            users += fresh
            stop = spy(f"{stage}_joins")
            cpu0 = server.cpu()
            await asyncio.gather(*(join(c) for c in fresh))
            # The joins' own CPU (the wall time above includes registering the accounts).
            out[f"{stage}_cpu_per_join_ms"] = (server.cpu() - cpu0) * 1000 / max(1, len(fresh))
            stop()
            out[f"{stage}_join_s"] = time.perf_counter() - t0
            for i in range(5):  # warm up: first sends may fill caches
                await owner.call("PUT", f"/rooms/{big}/send/m.room.message/{stage}w{i}", {"msgtype": "m.text", "body": "w"})
            stop = spy(stage)
            cpu0 = server.cpu()
            lat = []
            for i in range(sends):
                # A mention now and then (found by the localpart rule).
                body = f"hello everyone {i}" if i % 10 else f"hello {users[i % len(users)].user_id}"
                t0 = time.perf_counter()
                await owner.call("PUT", f"/rooms/{big}/send/m.room.message/{stage}{i}", {"msgtype": "m.text", "body": body})
                lat.append((time.perf_counter() - t0) * 1000)
            stop()
            out[f"{stage}_send_p50_ms"] = statistics.median(lat)
            out[f"{stage}_send_p99_ms"] = _pct(lat, 99)
            out[f"{stage}_cpu_per_send_ms"] = (server.cpu() - cpu0) * 1000 / sends
            print(f"  {server.name}: {size} members: send p50 {out[f'{stage}_send_p50_ms']:.1f} ms", flush=True)
    return out


def cheap_servers(baseline: str | None, with_synapse: bool, abba: bool) -> list[tuple[str, Any]]:
    """(name, start(directory)) of each server to measure, in order: Accord, the
    `baseline` checkout (the code before a change) when given, Synapse when installed
    and wanted. Accounts are set-up, not what is measured: cheap password hashes on all."""
    accords: list[tuple[str, Any]] = [("accord", lambda d: start_accord(d, free_ports(2), _cheap_scrypt))]
    if baseline:
        base = Path(baseline).resolve()
        accords.append(("baseline", lambda d: start_accord(d, free_ports(2), _cheap_scrypt, repo=base, name="baseline")))
    others: list[tuple[str, Any]] = []
    synapse = _synapse_python() if with_synapse else None
    if synapse:
        others.append(("synapse", lambda d: start_synapse(d, free_ports(1), synapse, _cheap_bcrypt)))
    return in_abba_order(accords, others, abba)


def _cheap_scrypt(config: dict[str, Any]) -> None:
    config["auth"]["scrypt_n"] = 2


def _cheap_bcrypt(config: dict[str, Any]) -> None:
    config["bcrypt_rounds"] = 4


def _py_spy(pid: int, seconds: int, dest: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("(py-spy is not installed: no profile)")
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
         "--output", str(dest), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _top_functions(raw: Path, count: int = 25, what: str = "") -> None:
    """Self and inclusive sample counts per function, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        samples = int(n)
        total += samples
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    print(f"profile of Accord{what} ({total} samples), top functions by own time:")
    for frame, hits in sorted(own.items(), key=lambda kv: -kv[1])[:count]:
        print(f"  {100 * hits / total:5.1f}%  {frame}")
    print("  by inclusive time (project code):")
    ours = [(f, hits) for f, hits in inclusive.items() if "homeserver/" in f or "federation/" in f]
    for frame, hits in sorted(ours, key=lambda kv: -kv[1])[:count]:
        print(f"  {100 * hits / total:5.1f}%  {frame}")


async def bench(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    readers, seconds = _fanout_size(args)
    rooms = 200 if args.quick else 1000
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-scale-"))
    try:
        for i, (name, start) in enumerate(cheap_servers(args.baseline, not args.no_synapse, args.abba)):
            server = await start(tmp / str(i))  # a fresh directory each round
            res: dict[str, float] = {}
            try:
                if args.only in (None, "fanout"):
                    profile_to = tmp / f"{name}_fanout.raw" if args.profile and name != "synapse" else None
                    res.update(await run_fanout(server, readers, 5.0, seconds, profile_to))
                if args.only in (None, "rooms"):
                    res.update(await run_many_rooms(server, rooms))
                if args.only in (None, "write"):
                    pid = server.proc.pid

                    def spy(what: str, pid: int = pid, profile: bool = args.profile and name != "synapse",
                            who: str = name) -> Callable[[], None]:
                        proc = _py_spy(pid, 600, tmp / f"{who}_write_{what}.raw") if profile else None

                        def stop() -> None:
                            if proc is not None:
                                proc.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
                                proc.wait(30)
                        return stop

                    res.update(await run_writes(server, args.members or (1000 if args.quick else 10_000),
                                                args.synapse_members, args.sends or (50 if args.quick else 300), spy))
            finally:
                server.stop()
            results.append((name, res))
            # Each server's figures as soon as they are known (a long run may be cut short).
            print(f"{name}: " + ", ".join(f"{k}={v:.2f}" for k, v in res.items()), flush=True)
        for who in ("accord", "baseline"):
            label = "" if who == "accord" else " (baseline)"
            if args.profile and (tmp / f"{who}_fanout.raw").exists():
                _top_functions(tmp / f"{who}_fanout.raw", what=f"{label} during the fan-out")
                if args.profile_out and who == "accord":
                    shutil.copy(tmp / f"{who}_fanout.raw", args.profile_out)  # py-spy's collapsed stacks, kept
            for what in ("concurrent", "big_room_small_joins", "big_room_small", "big_room_joins", "big_room"):
                if args.profile and (tmp / f"{who}_write_{what}.raw").exists():
                    doing = "joins" if what.endswith("_joins") else "sends"
                    _top_functions(tmp / f"{who}_write_{what}.raw",
                                   what=f"{label} during the {what.removesuffix('_joins').replace('_', ' ')} {doing}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return mean_of_rounds(results)


def _fanout_size(args: argparse.Namespace) -> tuple[int, float]:
    """(readers, seconds of sends) of the fan-out."""
    readers, seconds = (50, 6.0) if args.quick else (200, 20.0)
    return (args.readers or readers), seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-synapse", action="store_true")
    ap.add_argument("--profile", action="store_true", help="py-spy Accord during the fan-out and the writes")
    ap.add_argument("--profile-out", help="keep the fan-out profile's collapsed stacks in this file")
    ap.add_argument("--only", choices=("fanout", "rooms", "write"))
    ap.add_argument("--baseline", help="another checkout (e.g. main's code) run as a third server in the same run")
    ap.add_argument("--abba", action="store_true",
                    help="measure Accord and the baseline twice, in both orders, and report the means")
    ap.add_argument("--readers", type=int, help="syncers in the fan-out (default 200, 50 with --quick; 1: one reader's delivery)")
    ap.add_argument("--members", type=int, help="members of the big room (10,000; 1,000 with --quick)")
    ap.add_argument("--synapse-members", type=int, default=1000,
                    help="the size measured on both servers on the way (default 1,000)")
    ap.add_argument("--sends", type=int,
                    help="sequential sends measured at each room size, ten times as many concurrent ones"
                         " (default 300, 50 with --quick; more for a profile)")
    args = ap.parse_args()
    results = asyncio.run(bench(args))
    readers, seconds = _fanout_size(args)
    rooms = 200 if args.quick else 1000
    rows = []
    if args.only in (None, "fanout"):
        rows += [
            (f"fan-out, {readers} syncers, 5 msg/s: p50 (ms)", "fanout_p50_ms"),
            ("fan-out: delivery p99 (ms)", "fanout_p99_ms"),
            ("fan-out: deliveries seen (%)", "fanout_delivered_pct"),
            ("fan-out: /sync responses", "fanout_responses"),
            ("fan-out: server CPU per response (ms)", "fanout_cpu_per_response_ms"),
            ("fan-out: bench client CPU per response (ms)", "fanout_client_cpu_per_response_ms"),
            ("fan-out: one initial sync after (ms)", "fanout_initial_sync_ms"),
        ]
    if args.only in (None, "rooms"):
        rows += [
            (f"initial sync, {rooms} rooms (ms)", "many_rooms_initial_sync_ms"),
            (f"  server CPU per initial sync, {rooms} rooms (ms)", "many_rooms_initial_cpu_ms"),
            (f"incremental sync, {rooms} rooms, idle (ms)", "many_rooms_incremental_ms"),
        ]
    if args.only in (None, "write"):
        members = args.members or (1000 if args.quick else 10_000)
        small = min(members, args.synapse_members)
        rows += [
            ("concurrent sends, one room (events/s)", "concurrent_events_per_s"),
            ("  server CPU per concurrent send (ms)", "concurrent_cpu_per_event_ms"),
            (f"send p50, room of {small} members (ms)", "big_room_small_send_p50_ms"),
            (f"send p99, room of {small} members (ms)", "big_room_small_send_p99_ms"),
            (f"  server CPU per send, {small} members (ms)", "big_room_small_cpu_per_send_ms"),
            (f"  {small} members joined in (s)", "big_room_small_join_s"),
            (f"  server CPU per join, up to {small} members (ms)", "big_room_small_cpu_per_join_ms"),
        ]
        if members > small:
            rows += [
                (f"send p50, room of {members} members, Accord only (ms)", "big_room_send_p50_ms"),
                (f"send p99, room of {members} members (ms)", "big_room_send_p99_ms"),
                (f"  server CPU per send, {members} members (ms)", "big_room_cpu_per_send_ms"),
                (f"  members {small} to {members} joined in (s)", "big_room_join_s"),
                (f"  server CPU per join, {small} to {members} members (ms)", "big_room_cpu_per_join_ms"),
            ]
    report(f"organization scale ({seconds:.0f} s of sends; ratio = accord/synapse):", results, rows)


if __name__ == "__main__":
    main()
