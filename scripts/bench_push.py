"""Push benchmark: the same client workload against Accord and, when installed,
Synapse (each its own process, started as scripts/bench_servers.py starts them),
delivering to one push gateway (the tests' one: the Push Gateway API over HTTPS on
loopback with the test CA, which both servers are told to trust and reach).

Figures: send-to-gateway latency p50/p99 (one recipient with a pusher, messages
one after another, from the send request's start to the gateway receiving the
notification), and the fan-out of one message in a room of N members who each
have a pusher: the send request's own time, the time until the last
member's notification arrived, and the server's CPU time over that (the gateway
runs in this process, so on a loaded machine it can bound the wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_servers import (  # noqa: E402
    REPO,
    Client,
    Server,
    _synapse_python,
    free_ports,
    registered,
    report,
    start_accord,
    start_synapse,
)

from tests.homeserver.push.gateway import PushGateway  # noqa: E402
from tests.tls_ca import TestCA  # noqa: E402


async def _set_pusher(c: Client, url: str, key: str) -> None:
    await c.call("POST", "/pushers/set", {
        "kind": "http", "app_id": "bench", "pushkey": key, "app_display_name": "bench",
        "device_display_name": "bench", "lang": "en", "data": {"url": url},
    })


async def run_push_workload(server: Server, gateway: PushGateway, messages: int, members: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        sender, reader = await registered(s, server.url, "pushsender", "pushreader")
        room = (await sender.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        await reader.call("POST", f"/rooms/{room}/join", {})
        await _set_pusher(reader, gateway.url, f"{server.name}-reader")
        samples = []
        base = len(gateway.received)
        for i in range(messages):
            t0 = time.perf_counter()
            await sender.call("PUT", f"/rooms/{room}/send/m.room.message/p{i}", {"msgtype": "m.text", "body": f"m{i}"})
            await gateway.wait_for(base + i + 1)
            samples.append((gateway.arrived[base + i] - t0) * 1000)
        samples.sort()
        out["latency_p50_ms"] = statistics.median(samples)
        out["latency_p99_ms"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]

        big = (await sender.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        sem = asyncio.Semaphore(16)

        async def member(n: int) -> None:
            async with sem:
                c = Client(s, server.url)
                await c.register(f"fan{n}")
                await c.call("POST", f"/rooms/{big}/join", {})
                await _set_pusher(c, gateway.url, f"{server.name}-fan{n}")

        await asyncio.gather(*(member(n) for n in range(members)))
        await asyncio.sleep(2)  # let the joins settle (Synapse computes its push rules caches lazily)
        base = len(gateway.received)
        cpu0, here0 = server.cpu(), time.process_time()
        t0 = time.perf_counter()
        await sender.call("PUT", f"/rooms/{big}/send/m.room.message/fan", {"msgtype": "m.text", "body": "to all"})
        out["fanout_send_ms"] = (time.perf_counter() - t0) * 1000
        await gateway.wait_for(base + members, within=900)  # Synapse on a loaded machine: minutes
        out["fanout_all_delivered_ms"] = (max(gateway.arrived[base:base + members]) - t0) * 1000
        out["fanout_cpu_ms"] = (server.cpu() - cpu0) * 1000
        out["fanout_gateway_cpu_ms"] = (time.process_time() - here0) * 1000
    return out


async def bench(
    messages: int, members: int, with_synapse: bool, baseline: Path | None = None,
) -> list[tuple[str, dict[str, float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="accord-bench-push-"))
    results: list[tuple[str, dict[str, float]]] = []
    try:
        ca = TestCA(tmp / "ca")
        gateway = PushGateway(ca)
        await gateway.start()
        try:

            def accord_config(config: dict[str, Any]) -> None:
                config["outbound"] = {"allowed_ranges": ["127.0.0.0/8"]}
                config["federation"]["ca_bundle_path"] = str(ca.ca_path)

            runs = [("accord", REPO)] + ([("accord-before", baseline)] if baseline is not None else [])
            for name, repo in runs:
                server = await start_accord(tmp, free_ports(2), accord_config, repo=repo, name=name)
                try:
                    results.append((name, await run_push_workload(server, gateway, messages, members)))
                finally:
                    server.stop()
            python = _synapse_python()
            if with_synapse and python:

                def synapse_config(config: dict[str, Any]) -> None:
                    config["ip_range_whitelist"] = ["127.0.0.1/32"]

                # Synapse trusts the platform's CA store for pushers; OpenSSL reads this.
                server = await start_synapse(tmp, free_ports(1), python, synapse_config, env={"SSL_CERT_FILE": str(ca.ca_path)})
                try:
                    results.append(("synapse", await run_push_workload(server, gateway, messages, members)))
                finally:
                    server.stop()
        finally:
            await gateway.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--no-synapse", action="store_true")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another checkout of Accord (e.g. `git worktree add /tmp/base main`) measured in the same run")
    args = ap.parse_args()
    results = asyncio.run(bench(args.messages, args.members, not args.no_synapse, args.baseline))
    report(f"push: send-to-gateway latency ({args.messages} messages), fan-out to {args.members} members with a pusher each",
           results, [
               ("send to gateway p50 (ms)", "latency_p50_ms"),
               ("send to gateway p99 (ms)", "latency_p99_ms"),
               (f"fan-out: the send itself, {args.members} members (ms)", "fanout_send_ms"),
               (f"fan-out: all {args.members} notifications in (ms)", "fanout_all_delivered_ms"),
               ("fan-out: server CPU, send to last notification (ms)", "fanout_cpu_ms"),
               ("fan-out: the gateway's CPU (this process) meanwhile (ms)", "fanout_gateway_cpu_ms"),
           ])


if __name__ == "__main__":
    main()
