"""Federation benchmark: remote join time and cross-server delivery latency.

Every server is a real process on its own loopback address with a TLS certificate from a
throwaway CA (tests/tls_ca.py) that each peer trusts for federation, so requests go through
discovery, TLS and X-Matrix signatures as in production. All of them run at once and the
pairs are measured in turns (a join each, ten messages each, round after round), each turn
starting once the servers are idle, so that a change in the shared machine's load falls on
every pair alike and one pair's after-work (Synapse's, after a join) is not billed to the next:

  accord-accord    two Accord servers (127.0.0.2 and 127.0.0.3)
  accord-synapse   Accord and stock Synapse (127.0.0.4), when .venv-synapse exists
  synapse-synapse  two Synapses (127.0.0.4 and 127.0.0.5): the same-run baseline

For each pair (X, Y) and each direction:
  remote join   a fresh user of Y joins a fresh small room of X (a name, a topic and two
                other members): time of the client's POST /join on Y, after one warm-up join
                (the first contact, with key fetches, is reported on its own)
  delivery      a user of X sends messages one at a time; a user of Y long-polls /sync:
                time from the start of the send request until the event is in Y's /sync

The machine is shared and noisy, so the figures to compare between runs are the ratios:
Accord-Accord against Synapse-Synapse, and federated delivery against delivery inside one
Accord server (measured in the same run, with the same client code). The absolute targets
(delivery p50 <= 20 ms, join p50 <= 60 ms between two Accords) hold on a quiet machine only.

Usage: scripts/bench_federation.py [--quick] [--no-synapse] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from homeserver.signing_key import write_new_signing_key  # noqa: E402
from tests.interop.synapse import SynapseServer, free_port  # noqa: E402
from tests.tls_ca import TestCA  # noqa: E402

TARGET_DELIVERY_P50_MS = 20.0
TARGET_JOIN_P50_MS = 60.0
PASSWORD = "bench-password-123"


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# --- servers --------------------------------------------------------------------------------


@dataclass
class Peer:
    """A running server: its name, client base URL, process and how to make users on it."""

    kind: str  # "accord" or "synapse"
    name: str
    base_url: str
    pid: int
    synapse: SynapseServer | None = None
    proc: subprocess.Popen[bytes] | None = None
    _users: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def cpu(self) -> float:
        return _proc_cpu_s(self.pid)


async def _wait_up(session: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(f"{url}/_matrix/client/versions") as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.asynccontextmanager
async def accord_server(
    root: Path, ca: TestCA, ip: str, session: aiohttp.ClientSession, *, repo: Path = REPO
) -> AsyncIterator[Peer]:
    """Accord as its own process (`python -m homeserver run`), one TLS listener for
    client, federation and keys, the test CA as its federation trust; `repo` is the
    checkout whose code runs (another one's, to compare two versions in one run)."""
    port = free_port(ip)
    name = f"{ip}:{port}"
    data = root / f"accord-{ip}"
    data.mkdir(parents=True)
    write_new_signing_key(str(data / "signing.key"))
    cert = ca.issue(ip, name=f"accord-{ip}-{port}")
    config = {
        "server_name": name,
        "data_dir": str(data),
        "listeners": [{
            "port": port, "bind_addresses": [ip], "tls": True,
            "tls_certificate_path": str(cert.cert_path), "tls_private_key_path": str(cert.key_path),
            "resources": ["client", "federation", "keys"],
        }],
        "registration": {"policy": "open"},
        "auth": {"scrypt_n": 1024},  # accounts are set-up, not what is measured
        "rate_limits": {"enabled": False},
        "federation": {"enabled": True, "ca_bundle_path": str(ca.ca_path)},
        "outbound": {"allowed_ranges": ["127.0.0.0/8"]},  # the peers are on loopback
        "logging": {"level": "WARNING"},
    }
    cfg = data / "homeserver.yaml"
    cfg.write_text(yaml.safe_dump(config))
    log_path = data / "stderr.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "homeserver", "run", "--config", str(cfg)],
        cwd=repo, stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        url = f"https://{name}"
        await _wait_up(session, url, proc, log_path)
        yield Peer("accord", name, url, proc.pid, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.asynccontextmanager
async def synapse_server(root: Path, ca: TestCA, ip: str, python: str) -> AsyncIterator[Peer]:
    """Stock Synapse through the interop harness (tests/interop/synapse.py): every rate
    limit out of the way, the test CA as its only federation trust."""
    server = SynapseServer(root / f"synapse-{ip}", ca, host=ip, python=python,
                           config_overrides={"bcrypt_rounds": 4})
    async with server:
        assert server._proc is not None
        yield Peer("synapse", server.server_name, server.base_url, server._proc.pid, synapse=server)


# --- clients --------------------------------------------------------------------------------


class MatrixClient:
    def __init__(self, session: aiohttp.ClientSession, peer: Peer, user_id: str, token: str) -> None:
        self.s = session
        self.peer = peer
        self.user_id = user_id
        self.token = token
        self._txn = itertools.count()

    async def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        url = self.peer.base_url + "/_matrix/client/v3" + path
        async with self.s.request(method, url, json=body, headers=headers, params=params) as r:
            data = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"{self.peer.kind} {method} {path}: {r.status} {data}")
            return data

    async def create_room(self, **body: Any) -> str:
        return (await self.call("POST", "/createRoom", body))["room_id"]

    async def join(self, room_id: str, via: str) -> None:
        await self.call("POST", f"/join/{_q(room_id)}", {}, params=[("server_name", via), ("via", via)])

    async def send_text(self, room_id: str, body: str) -> None:
        txn = f"b{os.getpid()}.{next(self._txn)}"
        await self.call("PUT", f"/rooms/{_q(room_id)}/send/m.room.message/{txn}",
                        {"msgtype": "m.text", "body": body})

    async def sync(self, since: str | None, timeout_ms: int, filt: str) -> Any:
        params = {"timeout": str(timeout_ms), "filter": filt}
        if since:
            params["since"] = since
        return await self.call("GET", "/sync", params=params)


async def new_user(session: aiohttp.ClientSession, peer: Peer, prefix: str) -> MatrixClient:
    localpart = f"{prefix}{next(peer._users)}"
    if peer.synapse is not None:
        user = await peer.synapse.register_user(localpart, PASSWORD)
        return MatrixClient(session, peer, user.user_id, user.access_token)
    body = {"username": localpart, "password": PASSWORD, "auth": {"type": "m.login.dummy"},
            "initial_device_display_name": "bench"}
    async with session.post(peer.base_url + "/_matrix/client/v3/register", json=body) as r:
        data = await r.json()
        if r.status != 200:
            raise RuntimeError(f"register on {peer.name}: {r.status} {data}")
    return MatrixClient(session, peer, data["user_id"], data["access_token"])


def _room_filter(room_id: str) -> str:
    """Only this room's timeline: nothing else (presence, receipts, typing) wakes the poll."""
    return json.dumps({
        "presence": {"types": []}, "account_data": {"types": []},
        "room": {"rooms": [room_id], "timeline": {"limit": 50}, "ephemeral": {"types": []},
                 "account_data": {"types": []}, "state": {"types": []}},
    })


def _bodies(sync: dict[str, Any], room_id: str) -> set[str]:
    timeline = sync.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
    return {e.get("content", {}).get("body") for e in timeline.get("events", [])}


# --- measurements -----------------------------------------------------------------------------


class JoinProbe:
    """Fresh users of ``joiner`` join fresh small rooms of ``host`` (a name, a topic and two
    other members of ``host``): each call of ``once`` times one client POST /join."""

    def __init__(self, session: aiohttp.ClientSession, host: Peer, joiner: Peer) -> None:
        self.s, self.host, self.joiner = session, host, joiner
        self.times: list[float] = []
        self.room = ""
        self.owner: MatrixClient | None = None
        self.joined: MatrixClient | None = None
        self._members: list[MatrixClient] = []

    async def once(self) -> None:
        if self.owner is None:
            self.owner = await new_user(self.s, self.host, "owner")
            self._members = [await new_user(self.s, self.host, "member") for _ in range(2)]
        room = await self.owner.create_room(
            preset="public_chat", name=f"bench {len(self.times)}", topic="federation benchmark")
        for member in self._members:
            await member.call("POST", f"/rooms/{_q(room)}/join", {})
        user = await new_user(self.s, self.joiner, "joiner")
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        await user.join(room, self.host.name)
        self.times.append((time.perf_counter() - t0) * 1000)
        self.room, self.joined = room, user

    def figures(self) -> dict[str, float]:
        """The first join (first contact between the servers: key fetches) on its own."""
        rest = self.times[1:]
        return {"first_ms": self.times[0], "p50_ms": statistics.median(rest), "p95_ms": _pct(rest, 95)}


class DeliveryProbe:
    """``sender`` sends messages one at a time; each is timed from the start of the send
    request until it appears in ``receiver``'s long-polling /sync."""

    def __init__(self, sender: MatrixClient, receiver: MatrixClient, room_id: str, servers: list[Peer]) -> None:
        self.sender, self.receiver, self.room_id, self.servers = sender, receiver, room_id, servers
        self.filter = _room_filter(room_id)
        self.since: str | None = None
        self.latencies: list[float] = []
        self.cpu_s = 0.0
        self._n = itertools.count()

    async def run(self, count: int, *, timed: bool = True) -> None:
        # Catch up first: the other direction's messages went by since this probe last ran.
        self.since = (await self.receiver.sync(self.since, 0, self.filter))["next_batch"]
        cpu0 = sum(p.cpu() for p in self.servers)
        for _ in range(count):
            body = f"message {next(self._n)}"
            poll = asyncio.ensure_future(self.receiver.sync(self.since, 30_000, self.filter))
            await asyncio.sleep(0.02)  # let the poll reach the server and park
            t0 = time.perf_counter()
            await self.sender.send_text(self.room_id, body)
            while True:
                result = await poll
                self.since = result["next_batch"]
                if body in _bodies(result, self.room_id):
                    break
                poll = asyncio.ensure_future(self.receiver.sync(self.since, 30_000, self.filter))
            if timed:
                self.latencies.append((time.perf_counter() - t0) * 1000)
        if timed:
            self.cpu_s += sum(p.cpu() for p in self.servers) - cpu0

    def figures(self) -> dict[str, float]:
        lat = self.latencies
        return {"p50_ms": statistics.median(lat), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
                "cpu_ms_per_msg": self.cpu_s * 1000 / len(lat)}


async def settle(peers: list[Peer], within: float = 1.0) -> None:
    """Wait (up to ``within`` seconds) until the servers are idle, so that what one pair
    left running (Synapse works on for a while after a join) is not billed to the next."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        cpu0 = sum(p.cpu() for p in peers)
        await asyncio.sleep(0.1)
        if sum(p.cpu() for p in peers) - cpu0 < 0.02:  # under 20% of one core
            return


async def interleaved(
    probes: list[Any], total: int, chunk: int, peers: list[Peer], *, timed: bool = True
) -> None:
    """Round-robin over the probes, ``chunk`` at a time, so that a change in the machine's
    load (it is shared) falls on every pair alike rather than on whichever ran then."""
    done = 0
    while done < total:
        step = min(chunk, total - done)
        for probe in probes:
            await settle(peers)
            if isinstance(probe, JoinProbe):
                for _ in range(step):
                    await probe.once()
            else:
                await probe.run(step, timed=timed)
        done += step


async def local_probe(session: aiohttp.ClientSession, peer: Peer) -> DeliveryProbe:
    """Delivery between two users of one server: the baseline for what federation adds."""
    a, b = await new_user(session, peer, "locala"), await new_user(session, peer, "localb")
    room = await a.create_room(preset="public_chat")
    await b.call("POST", f"/rooms/{_q(room)}/join", {})
    return DeliveryProbe(a, b, room, [peer])


# --- the run -----------------------------------------------------------------------------------


def _synapse_python() -> str | None:
    path = os.environ.get("ACCORD_SYNAPSE_PYTHON") or str(REPO / ".venv-synapse/bin/python")
    return path if Path(path).exists() else None


async def bench(quick: bool, with_synapse: bool) -> dict[str, Any]:
    """All servers run at once and every pair is measured in turns (see ``interleaved``)."""
    reps = 5 if quick else 10
    messages = 40 if quick else 100
    results: dict[str, Any] = {"reps": reps, "messages": messages}
    root = Path(tempfile.mkdtemp(prefix="accord-bench-fed-"))
    ca = TestCA(root / "ca")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    python = _synapse_python() if with_synapse else None
    try:
        async with contextlib.AsyncExitStack() as stack:
            s = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0)))
            servers = [accord_server(root, ca, "127.0.0.2", s), accord_server(root, ca, "127.0.0.3", s)]
            if python:
                servers += [synapse_server(root, ca, ip, python) for ip in ("127.0.0.4", "127.0.0.5")]
            # Started together: Synapse takes seconds to come up.
            peers = await asyncio.gather(*(stack.enter_async_context(cm) for cm in servers))
            a, b = peers[0], peers[1]
            pairs = {"accord-accord": (a, b)}
            if python:
                pairs["accord-synapse"] = (a, peers[2])
                pairs["synapse-synapse"] = (peers[2], peers[3])
            # Joins: y's users into x's rooms, then x's into y's, one pair after another.
            joins = {(name, way): JoinProbe(s, *((x, y) if way == "y_into_x" else (y, x)))
                     for name, (x, y) in pairs.items() for way in ("y_into_x", "x_into_y")}
            await interleaved(list(joins.values()), reps + 1, 1, peers)
            # Delivery both ways in the last room y's user joined.
            deliveries: dict[tuple[str, str], DeliveryProbe] = {}
            for name, (x, y) in pairs.items():
                j = joins[(name, "y_into_x")]
                assert j.owner is not None and j.joined is not None
                deliveries[(name, "x_to_y")] = DeliveryProbe(j.owner, j.joined, j.room, [x, y])
                deliveries[(name, "y_to_x")] = DeliveryProbe(j.joined, j.owner, j.room, [x, y])
            local = await local_probe(s, a)
            probes = [local, *deliveries.values()]
            await interleaved(probes, 5, 5, peers, timed=False)  # warm up
            await interleaved(probes, messages, 10, peers)
            results["accord_local"] = local.figures()
            for name in pairs:
                results[name] = {
                    "join_y_into_x": joins[(name, "y_into_x")].figures(),
                    "join_x_into_y": joins[(name, "x_into_y")].figures(),
                    "deliver_x_to_y": deliveries[(name, "x_to_y")].figures(),
                    "deliver_y_to_x": deliveries[(name, "y_to_x")].figures(),
                }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


ROWS = [
    ("join, y's user into x's room, first (ms)", "join_y_into_x", "first_ms"),
    ("join, y's user into x's room, p50 (ms)", "join_y_into_x", "p50_ms"),
    ("join, y's user into x's room, p95 (ms)", "join_y_into_x", "p95_ms"),
    ("join, x's user into y's room, p50 (ms)", "join_x_into_y", "p50_ms"),
    ("join, x's user into y's room, p95 (ms)", "join_x_into_y", "p95_ms"),
    ("delivery x -> y p50 (ms)", "deliver_x_to_y", "p50_ms"),
    ("delivery x -> y p95 (ms)", "deliver_x_to_y", "p95_ms"),
    ("delivery x -> y p99 (ms)", "deliver_x_to_y", "p99_ms"),
    ("delivery y -> x p50 (ms)", "deliver_y_to_x", "p50_ms"),
    ("delivery y -> x p99 (ms)", "deliver_y_to_x", "p99_ms"),
    ("CPU, both servers, per message x -> y (ms)", "deliver_x_to_y", "cpu_ms_per_msg"),
]


def report(res: dict[str, Any]) -> None:
    pairs = [p for p in ("accord-accord", "accord-synapse", "synapse-synapse") if p in res]
    base = "synapse-synapse" if "synapse-synapse" in res else None
    print(f"federation (separate processes, TLS on loopback, pairs measured in turns; {res['reps']} joins"
          f" and {res['messages']} messages per direction; x = first server named, y = second;"
          " ours/synapse = accord-accord / synapse-synapse):")
    header = f"  {'':44s}" + "".join(f"{p:>17s}" for p in pairs)
    if base:
        header += f"{'ours/synapse':>14s}"
    print(header)
    for label, section, key in ROWS:
        vals = [res[p][section][key] for p in pairs]
        line = f"  {label:44s}" + "".join(f"{v:17.1f}" for v in vals)
        if base and res[base][section][key]:
            line += f"{res['accord-accord'][section][key] / res[base][section][key]:14.2f}"
        print(line)
    local = res["accord_local"]
    fed = res["accord-accord"]
    print(f"  same-run baseline: delivery inside one Accord server p50 {local['p50_ms']:.1f} ms,"
          f" p99 {local['p99_ms']:.1f} ms; federated/local p50"
          f" {fed['deliver_x_to_y']['p50_ms'] / local['p50_ms']:.2f}x")
    d50, j50 = fed["deliver_x_to_y"]["p50_ms"], fed["join_y_into_x"]["p50_ms"]
    print(f"  targets, accord-accord: delivery p50 {d50:.1f} ms (target <= {TARGET_DELIVERY_P50_MS:.0f}:"
          f" {'met' if d50 <= TARGET_DELIVERY_P50_MS else 'MISSED'}), remote join p50 {j50:.1f} ms"
          f" (target <= {TARGET_JOIN_P50_MS:.0f}: {'met' if j50 <= TARGET_JOIN_P50_MS else 'MISSED'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="fewer joins and messages")
    ap.add_argument("--no-synapse", action="store_true", help="Accord only (no Synapse pairs)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args()
    t0 = time.monotonic()
    res = asyncio.run(bench(args.quick, not args.no_synapse))
    report(res)
    print(f"  (federation benchmark took {time.monotonic() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
