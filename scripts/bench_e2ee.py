"""End-to-end encryption benchmark: the same client workload against Accord and, when
installed, Synapse (servers started as scripts/bench_servers.py starts them).

* /keys/claim: a user claims one one-time key of another user's device at a time (the
  first step of every new Olm session), p50 and p99 of sequential claims, with keys
  uploaded beforehand in batches of 100.
* to-device delivery: a user sends a message to another user's device while that device
  long-polls /sync; the time from the start of the send request until the message is in
  the recipient's /sync `to_device`, p50 and p99.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_servers import (  # noqa: E402
    Server,
    _pct,
    registered,
    report,
    run_beside_synapse,
)


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


async def run_e2ee_workload(server: Server, claims: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        alice, bob = await registered(s, server.url, "e2eealice", "e2eebob")
        bob_device = (await bob.call("GET", "/account/whoami"))["device_id"]
        for batch in range(0, claims, 100):
            keys = {  # servers store one-time keys as given; the signature is for clients to check
                f"signed_curve25519:K{i:06d}": {"key": _key(), "signatures": {bob.user_id: {f"ed25519:{bob_device}": _key()}}}
                for i in range(batch, min(batch + 100, claims))
            }
            await bob.call("POST", "/keys/upload", {"one_time_keys": keys})
        wanted = {"one_time_keys": {bob.user_id: {bob_device: "signed_curve25519"}}}
        samples = []
        for _ in range(claims):
            t0 = time.perf_counter()
            got = await alice.call("POST", "/keys/claim", wanted)
            samples.append((time.perf_counter() - t0) * 1000)
            if not got["one_time_keys"]:
                raise RuntimeError(f"{server.name}: /keys/claim ran out of keys")
        out["claim_p50_ms"] = statistics.median(samples)
        out["claim_p99_ms"] = _pct(samples, 99)

        token = (await bob.call("GET", "/sync?timeout=0"))["next_batch"]
        latencies = []
        for i in range(rounds):
            waiting = asyncio.ensure_future(bob.call("GET", f"/sync?since={token}&timeout=30000"))
            await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            await alice.call("PUT", f"/sendToDevice/m.bench/t{i}", {"messages": {bob.user_id: {bob_device: {"i": i}}}})
            while True:
                body: dict[str, Any] = await waiting
                token = body["next_batch"]
                if any(e.get("content", {}).get("i") == i for e in body.get("to_device", {}).get("events", [])):
                    break
                waiting = asyncio.ensure_future(bob.call("GET", f"/sync?since={token}&timeout=30000"))
            latencies.append((time.perf_counter() - t0) * 1000)
        out["to_device_p50_ms"] = statistics.median(latencies)
        out["to_device_p99_ms"] = _pct(latencies, 99)
    return out


async def bench(quick: bool, with_synapse: bool) -> list[tuple[str, dict[str, float]]]:
    claims, rounds = (200, 30) if quick else (1000, 100)
    return await run_beside_synapse(
        "accord-bench-e2ee-", with_synapse, lambda server: run_e2ee_workload(server, claims, rounds)
    )


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    res = asyncio.run(bench(quick, "--no-synapse" not in sys.argv))
    report("end-to-end encryption (ratio = accord/synapse):", res, [
        ("/keys/claim of one key p50 (ms)", "claim_p50_ms"), ("/keys/claim of one key p99 (ms)", "claim_p99_ms"),
        ("to-device delivery to a waiting /sync p50 (ms)", "to_device_p50_ms"),
        ("to-device delivery to a waiting /sync p99 (ms)", "to_device_p99_ms"),
    ])
