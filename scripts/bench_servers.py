"""Server benchmarks: the same client workloads against Accord and, when installed, Synapse.

Both servers run as separate processes on loopback, so their CPU time and resident
memory are read from /proc the same way. Figures: delivery latency (a message sent
by one user, seen by another's waiting /sync), initial sync of a user in many rooms,
the cost of an incremental sync with nothing new, and resident memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[1]


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]

    idle_rss: float = 0.0  # read right after start-up, before any workload

    def cpu(self) -> float:
        return _proc_cpu_s(self.proc.pid)

    def rss(self) -> float:
        return _proc_rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _wait_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with s.get(f"{url}/_matrix/client/versions") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("server did not come up")


def free_ports(count: int) -> int:
    """A base port with `count` free ports from it: benchmarks of several checkouts may
    run on one machine at once, and a fixed port would pit them against each other."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20_000, 60_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


async def start_accord(
    tmp: Path, port: int, configure: Callable[[dict[str, Any]], None] | None = None,
    repo: Path = REPO, name: str = "accord",
) -> Server:
    """Accord from `repo` (another checkout, e.g. the code before a change, to measure
    both in one run), its data under `tmp`/`name`."""
    data = tmp / name
    cfg = data / "homeserver.yaml"
    subprocess.run(
        [sys.executable, "-m", "homeserver", "generate-config", "--server-name", "localhost",
         "--data-dir", str(data), "--output", str(cfg), "--client-port", str(port),
         "--federation-port", str(port + 1)],
        check=True, capture_output=True, cwd=repo,
    )
    config = yaml.safe_load(cfg.read_text())
    config["registration"]["policy"] = "open"
    config["rate_limits"]["enabled"] = False
    config["logging"]["level"] = "WARNING"
    config["media"]["max_upload_size"] = 1 << 30
    config["media"]["user_quota_bytes"] = None
    if configure is not None:
        configure(config)
    cfg.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "homeserver", "run", "--config", str(cfg)],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    await _wait_up(url, proc)
    await asyncio.sleep(1)
    return Server(name, url, proc, idle_rss=_proc_rss_mb(proc.pid))


async def start_synapse(
    tmp: Path, port: int, python: str, configure: Callable[[dict[str, Any]], None] | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    data = tmp / "synapse"
    data.mkdir()
    cfg = data / "homeserver.yaml"
    subprocess.run(
        [python, "-m", "synapse.app.homeserver", "--server-name", "localhost", "--config-path",
         str(cfg), "--data-directory", str(data), "--generate-config", "--report-stats=no"],
        check=True, capture_output=True, cwd=data,
    )
    config = yaml.safe_load(cfg.read_text())
    config["listeners"] = [{
        "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
        "x_forwarded": False, "resources": [{"names": ["client", "media"], "compress": False}],
    }]
    config["max_upload_size"] = "1G"
    config["dynamic_thumbnails"] = True  # sizes made on demand, as Accord does
    config["enable_registration"] = True
    config["enable_registration_without_verification"] = True
    config["trusted_key_servers"] = []
    config["suppress_key_server_warning"] = True
    big = {"per_second": 100000, "burst_count": 100000}
    for key in ("rc_message", "rc_registration", "rc_joins", "rc_invites", "rc_login",
                "rc_presence", "rc_room_creation", "rc_3pid_validation", "rc_admin_redaction",
                "rc_joins_per_room", "rc_delayed_event_mgmt", "rc_reports", "rc_media_create"):
        config[key] = big if key not in ("rc_login", "rc_joins", "rc_invites") else {
            "address": big, "account": big, "failed_attempts": big,
            "local": big, "remote": big, "per_room": big, "per_user": big, "per_issuer": big,
        }
    log_cfg = data / "localhost.log.config"
    if log_cfg.exists():
        text = log_cfg.read_text().replace("level: INFO", "level: WARNING")
        log_cfg.write_text(text)
    if configure is not None:
        configure(config)
    cfg.write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [python, "-m", "synapse.app.homeserver", "--config-path", str(cfg)],
        cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    await _wait_up(url, proc)
    await asyncio.sleep(1)
    return Server("synapse", url, proc, idle_rss=_proc_rss_mb(proc.pid))


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.s = session
        self.url = url + "/_matrix/client/v3"
        self.token = ""
        self.user_id = ""

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, self.url + path, json=body, headers=headers) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def register(self, name: str) -> None:
        body = {"username": name, "password": "bench-password-123", "auth": {"type": "m.login.dummy"},
                "initial_device_display_name": "bench"}
        async with self.s.post(self.url + "/register", json=body) as r:
            data = await r.json()
            if r.status == 401:  # servers that insist on the two-step dance
                body["auth"]["session"] = data["session"]
                async with self.s.post(self.url + "/register", json=body) as r2:
                    data = await r2.json()
        self.token = data["access_token"]
        self.user_id = data["user_id"]


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def run_workload(server: Server, rooms: int, events: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        sender, receiver, reader = Client(s, server.url), Client(s, server.url), Client(s, server.url)
        await sender.register("sender")
        await receiver.register("receiver")
        await reader.register("reader")
        await asyncio.sleep(1)
        out["rss_idle_mb"] = server.idle_rss
        peak = [out["rss_idle_mb"]]

        # Delivery latency: one message, seen by another user's waiting /sync.
        room = (await sender.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await receiver.call("POST", f"/rooms/{room}/join", {})
        token = (await receiver.call("GET", "/sync?timeout=0"))["next_batch"]
        latencies = []
        for i in range(rounds):
            waiting = asyncio.ensure_future(receiver.call("GET", f"/sync?since={token}&timeout=30000"))
            await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            await sender.call("PUT", f"/rooms/{room}/send/m.room.message/d{i}", {"msgtype": "m.text", "body": str(i)})
            while True:
                body = await waiting
                token = body["next_batch"]
                timeline = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
                if any(e.get("content", {}).get("body") == str(i) for e in timeline.get("events", [])):
                    break
                waiting = asyncio.ensure_future(receiver.call("GET", f"/sync?since={token}&timeout=30000"))
            latencies.append((time.perf_counter() - t0) * 1000)
        out["delivery_p50_ms"] = statistics.median(latencies)
        out["delivery_p99_ms"] = _pct(latencies, 99)
        peak.append(server.rss())

        # A reader in many rooms with history.
        for r in range(rooms):
            rid = (await sender.call("POST", "/createRoom", {"preset": "public_chat", "name": f"room {r}"}))["room_id"]
            await reader.call("POST", f"/rooms/{rid}/join", {})
            for e in range(events):
                await sender.call("PUT", f"/rooms/{rid}/send/m.room.message/r{r}e{e}",
                                  {"msgtype": "m.text", "body": f"message {e} in room {r}"})
        peak.append(server.rss())
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            initial = await reader.call("GET", initial_sync_path(i))
            times.append((time.perf_counter() - t0) * 1000)
        out["initial_sync_ms"] = statistics.median(times)
        token = initial["next_batch"]
        peak.append(server.rss())

        # Incremental sync with nothing new: the steady-state cost of every client.
        cpu0 = server.cpu()
        inc = []
        for i in range(rounds * 2):
            t0 = time.perf_counter()
            body = await reader.call("GET", incremental_sync_path(token, i))
            inc.append((time.perf_counter() - t0) * 1000)
            token = body["next_batch"]
        out["incremental_p50_ms"] = statistics.median(inc)
        out["incremental_cpu_ms"] = (server.cpu() - cpu0) * 1000 / len(inc)
        peak.append(server.rss())
        out["rss_load_mb"] = max(peak)
    return out


async def run_rooms_workload(server: Server, n: int) -> dict[str, float]:
    """Sending and reading room events: latency, throughput, CPU per event, pagination."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        c = Client(s, server.url)
        await c.register("roombench")
        room = (await c.call("POST", "/createRoom", {}))["room_id"]
        for i in range(20):  # warm up
            await c.call("PUT", f"/rooms/{room}/send/m.room.message/w{i}", {"msgtype": "m.text", "body": "w"})

        cpu0 = server.cpu()
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            await c.call("PUT", f"/rooms/{room}/send/m.room.message/s{i}", {"msgtype": "m.text", "body": f"seq {i}"})
            lat.append((time.perf_counter() - t0) * 1000)
        out["seq_send_p50_ms"] = statistics.median(lat)
        out["seq_send_p99_ms"] = _pct(lat, 99)
        out["cpu_per_event_ms"] = (server.cpu() - cpu0) * 1000 / n

        async def burst(rooms: list[str], total: int, tag: str) -> float:
            sem = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with sem:
                    await c.call("PUT", f"/rooms/{rooms[i % len(rooms)]}/send/m.room.message/{tag}{i}",
                                 {"msgtype": "m.text", "body": f"{tag} {i}"})

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(total)))
            return total / (time.perf_counter() - t0)

        out["one_room_events_per_s"] = await burst([room], n * 2, "c")
        many = [(await c.call("POST", "/createRoom", {}))["room_id"] for _ in range(10)]
        out["ten_rooms_events_per_s"] = await burst(many, n * 2, "m")

        pages = 0
        t0 = time.perf_counter()
        token = None
        while pages < 50:
            q = "/messages?dir=b&limit=100" + (f"&from={token}" if token else "")
            body = await c.call("GET", f"/rooms/{room}{q}")
            pages += 1
            token = body.get("end")
            if not token:
                break
        out["messages_page_ms"] = (time.perf_counter() - t0) * 1000 / pages
    return out


async def run_media_workload(server: Server, megabytes: int) -> dict[str, float]:
    """Media: upload and download throughput of one large file (and the server's peak
    resident memory meanwhile, over its idle level), thumbnail latency."""
    import io

    from PIL import Image

    out: dict[str, float] = {}
    block = os.urandom(1 << 20)

    async def body() -> Any:
        for i in range(megabytes):
            yield bytes([i % 251]) + block[1:]

    async with aiohttp.ClientSession() as s:
        c = Client(s, server.url)
        await c.register("mediabench")
        auth = {"Authorization": f"Bearer {c.token}"}
        base = server.url
        before = server.rss()
        peak = [before]
        sampling = True

        async def sample() -> None:
            while sampling:
                peak.append(server.rss())
                await asyncio.sleep(0.02)

        sampler = asyncio.ensure_future(sample())
        t0 = time.perf_counter()
        async with s.post(f"{base}/_matrix/media/v3/upload", data=body(),
                          headers={**auth, "Content-Type": "application/octet-stream",
                                   "Content-Length": str(megabytes << 20)}) as r:
            if r.status != 200:
                raise RuntimeError(f"{server.name} upload: {r.status} {await r.text()}")
            mxc = (await r.json())["content_uri"]
        out["upload_mb_s"] = megabytes / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = 0
        async with s.get(f"{base}/_matrix/client/v1/media/download/{mxc[6:]}", headers=auth) as r:
            async for chunk in r.content.iter_chunked(1 << 20):
                got += len(chunk)
        out["download_mb_s"] = got / (1 << 20) / (time.perf_counter() - t0)
        sampling = False
        await sampler
        out["stream_rss_over_idle_mb"] = max(peak) - before

        im = Image.new("RGB", (2400, 1600), "navy")
        for x in range(0, 2400, 120):
            im.paste("orange", (x, 0, x + 60, 1600))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        async with s.post(f"{base}/_matrix/media/v3/upload", data=buf.getvalue(),
                          headers={**auth, "Content-Type": "image/jpeg"}) as r:
            image = (await r.json())["content_uri"][6:]
        await asyncio.sleep(2)  # let pre-generated thumbnails settle

        async def thumb(w: int, h: int, method: str) -> float:
            t = time.perf_counter()
            async with s.get(f"{base}/_matrix/client/v1/media/thumbnail/{image}",
                             params={"width": str(w), "height": str(h), "method": method}, headers=auth) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"thumbnail: {r.status}")
            return (time.perf_counter() - t) * 1000

        out["thumb_new_size_ms"] = statistics.median([await thumb(1000 + i, 700 + i, "scale") for i in range(5)])
        out["thumb_cached_p50_ms"] = statistics.median([await thumb(320, 240, "scale") for _ in range(30)])
    return out


async def run_search_workload(server: Server, n: int) -> dict[str, float]:
    """POST /search over one room of `n` messages: a word in one message (with context)
    and a word in a tenth of them (newest first, one page), p50 of repeated searches."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        c = Client(s, server.url)
        await c.register("searchbench")
        room = (await c.call("POST", "/createRoom", {}))["room_id"]
        sem = asyncio.Semaphore(64)

        async def send(i: int) -> None:
            text = "the zeppelin lands" if i == n // 2 else f"message {i} " + ("common" if i % 10 == 0 else "plain")
            async with sem:
                await c.call("PUT", f"/rooms/{room}/send/m.room.message/q{i}", {"msgtype": "m.text", "body": text})

        await asyncio.gather(*(send(i) for i in range(n)))

        async def timed(criteria: dict[str, Any]) -> float:
            samples = []
            for _ in range(30):
                t0 = time.perf_counter()
                body = await c.call("POST", "/search", {"search_categories": {"room_events": criteria}})
                samples.append((time.perf_counter() - t0) * 1000)
                if not body["search_categories"]["room_events"]["results"]:
                    raise RuntimeError(f"{server.name}: /search found nothing for {criteria}")
            return statistics.median(samples)

        out["search_rare_p50_ms"] = await timed({
            "search_term": "zeppelin", "event_context": {"before_limit": 5, "after_limit": 5},
        })
        out["search_common_p50_ms"] = await timed({"search_term": "common", "order_by": "recent"})
    return out


def initial_sync_path(i: int) -> str:
    """The `i`th of a run of repeated initial syncs, each a request no earlier one made.

    Synapse keeps each /sync answer for `sync_response_cache_duration` (two minutes by
    default) keyed on the whole request: user, device, since, filter, full_state and
    timeout. Repeating the identical request would time that cache after the first answer.
    An initial sync never waits, so a distinct `timeout` per repeat changes no work for
    either server while making Synapse build every answer, as Accord does.
    """
    return f"/sync?timeout={i}"


def incremental_sync_path(token: str, i: int) -> str:
    """The `i`th of a run of repeated incremental syncs from `token` that must not wait.

    With nothing new, each answer's `next_batch` is the `since` it was asked with, so the
    loop would repeat one request and time Synapse's response cache (see
    `initial_sync_path`); a `timeout` cannot vary here, since an incremental sync waits for
    it. So each repeat carries its own inline filter, which leaves out an account-data type
    nobody sets: the answer and the work are those of an unfiltered sync on both servers.
    """
    unused = quote(json.dumps({"account_data": {"not_types": [f"org.example.bench.unused.{i}"]}}))
    return f"/sync?since={quote(token)}&timeout=0&filter={unused}"


def _synapse_python() -> str | None:
    path = os.environ.get("ACCORD_SYNAPSE_PYTHON") or str(REPO / ".venv-synapse/bin/python")
    return path if Path(path).exists() else None


async def run_beside_synapse(
    prefix: str, with_synapse: bool,
    workload: Callable[[Server], Awaitable[dict[str, float]]], baseline: Path | None = None,
) -> list[tuple[str, dict[str, float]]]:
    """One workload against Accord, then against Synapse when installed (and wanted),
    each server started fresh in a temporary directory: the figures of one run, ready
    for `report`. `baseline`: another checkout (main's code) measured first, as "before"."""
    results = []
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        servers = [("accord", lambda: start_accord(tmp, free_ports(2)))]
        if baseline is not None:
            servers.insert(0, ("before", lambda: start_accord(tmp, free_ports(2), repo=baseline, name="before")))
        synapse = _synapse_python() if with_synapse else None
        if synapse:
            servers.append(("synapse", lambda: start_synapse(tmp, free_ports(1), synapse)))
        for name, start in servers:
            server = await start()
            try:
                results.append((name, await workload(server)))
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


async def bench(quick: bool, with_synapse: bool) -> tuple[list[tuple[str, dict[str, float]]], ...]:
    rooms, events, rounds = (10, 20, 30) if quick else (50, 100, 100)
    n = 200 if quick else 500
    media_mb = 50 if quick else 500
    search_messages = 2_000 if quick else 10_000
    sync_results, room_results, media_results, search_results = [], [], [], []
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-"))
    try:
        servers = [("accord", lambda: start_accord(tmp, free_ports(2)))]
        synapse = _synapse_python() if with_synapse else None
        if synapse:
            servers.append(("synapse", lambda: start_synapse(tmp, free_ports(1), synapse)))
        for name, start in servers:
            server = await start()
            try:
                room_results.append((name, await run_rooms_workload(server, n)))
                sync_results.append((name, await run_workload(server, rooms, events, rounds)))
                media_results.append((name, await run_media_workload(server, media_mb)))
                search_results.append((name, await run_search_workload(server, search_messages)))
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return room_results, sync_results, media_results, search_results


def report(title: str, results: list[tuple[str, dict[str, float]]], rows: list[tuple[str, str]]) -> None:
    """A column per server, then each one's ratio to the last (usually Synapse)."""
    names = [n for n, _ in results]
    print(title)
    header = f"  {'':44s}" + "".join(f"{n:>14s}" for n in names)
    last = names[-1] if names else ""
    header += "".join(f"{n + '/' + last:>24s}" for n in names[:-1])
    print(header)
    for label, key in rows:
        line = f"  {label:44s}" + "".join(f"{r[key]:14.2f}" for _, r in results)
        for _, r in results[:-1]:
            line += f"{r[key] / results[-1][1][key]:24.2f}" if results[-1][1][key] else f"{'':24s}"
        print(line)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    room_res, sync_res, media_res, search_res = asyncio.run(bench(quick, "--no-synapse" not in sys.argv))
    report("rooms (servers as separate processes, same client workload; ratio = accord/synapse):", room_res, [
        ("sequential send p50 (ms)", "seq_send_p50_ms"), ("sequential send p99 (ms)", "seq_send_p99_ms"),
        ("server CPU per sent event (ms)", "cpu_per_event_ms"),
        ("concurrent sends, one room (events/s)", "one_room_events_per_s"),
        ("concurrent sends, ten rooms (events/s)", "ten_rooms_events_per_s"),
        ("/messages page of 100 (ms)", "messages_page_ms"),
    ])
    rooms_events = "10 rooms x 20 events" if quick else "50 rooms x 100 events"
    report("real time:", sync_res, [
        ("delivery p50 (ms)", "delivery_p50_ms"), ("delivery p99 (ms)", "delivery_p99_ms"),
        (f"initial sync, {rooms_events} (ms)", "initial_sync_ms"),
        ("incremental sync p50 (ms)", "incremental_p50_ms"),
        ("server CPU per incremental sync (ms)", "incremental_cpu_ms"),
        ("RSS idle (MB)", "rss_idle_mb"), ("RSS under load (MB)", "rss_load_mb"),
    ])
    media_mb = 50 if quick else 500
    report("media:", media_res, [
        (f"upload of {media_mb} MB (MB/s)", "upload_mb_s"), (f"download of {media_mb} MB (MB/s)", "download_mb_s"),
        ("peak RSS over idle while streaming (MB)", "stream_rss_over_idle_mb"),
        ("thumbnail of a new size, 2400x1600 JPEG (ms)", "thumb_new_size_ms"),
        ("thumbnail, stored size p50 (ms)", "thumb_cached_p50_ms"),
    ])
    search_messages = "2,000" if quick else "10,000"
    report(f"search, one room of {search_messages} messages:", search_res, [
        ("rare word, with context, p50 (ms)", "search_rare_p50_ms"),
        ("word in 1 of 10, newest first, p50 (ms)", "search_common_p50_ms"),
    ])
