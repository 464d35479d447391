"""Push benchmark (Accord only, in one process): send-to-gateway latency, and the
fan-out of one message in a room of N members who each have a pusher.

The push gateway is the tests' one (the Push Gateway API over HTTPS on loopback,
tests/homeserver/push/gateway.py). Figures: p50/p99 of the time from a send
request's start to the gateway receiving its notification (one recipient,
messages one after another); for the fan-out, the time the send itself takes
(the write evaluates every member's rules and queues every pusher's
notification in one transaction) and the time until the last member's
notification arrived. No Synapse comparison: Synapse's pushers would need the
test CA and loopback allowed, which its config does not offer for pushers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from homeserver.config import parse_config  # noqa: E402
from homeserver.rooms.creation import create_room  # noqa: E402
from homeserver.server import HomeServer  # noqa: E402
from tests.conftest import LOOPBACK_OUTBOUND, config_dict  # noqa: E402
from tests.homeserver.push.gateway import PushGateway  # noqa: E402
from tests.tls_ca import TestCA  # noqa: E402


def _pusher(url: str, key: str) -> dict[str, Any]:
    return {"kind": "http", "app_id": "bench", "pushkey": key, "app_display_name": "bench",
            "device_display_name": "bench", "lang": "en", "data": {"url": url}}


async def bench(members: int, messages: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ca = TestCA(Path(tmp) / "ca")
        gateway = PushGateway(ca)
        await gateway.start()
        config = parse_config(config_dict(
            Path(tmp) / "hs", outbound=LOOPBACK_OUTBOUND, federation={"enabled": False, "ca_bundle_path": str(ca.ca_path)},
            logging={"level": "WARNING"},
        ))
        hs = HomeServer(config)
        await hs.start()
        try:
            name = config.server_name
            sender, reader = f"@sender:{name}", f"@reader:{name}"
            for u in (sender, reader):
                await hs.registration.create_account(u, None, login=False)
            room_id = await create_room(hs, sender, {"preset": "public_chat"})
            room = await hs.room_store.get_room(room_id)
            assert room is not None
            await hs.membership.update(room, reader, reader, "join")
            await hs.pushers.set(reader, None, _pusher(gateway.url, "reader"))
            samples = []
            for i in range(messages):
                t0 = time.perf_counter()
                await hs.room_service.create_event(room, sender, "m.room.message", {"msgtype": "m.text", "body": f"m{i}"})
                await gateway.wait_for(i + 1)
                samples.append((gateway.arrived[i] - t0) * 1000)
            samples.sort()
            out["latency_p50_ms"] = statistics.median(samples)
            out["latency_p99_ms"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))]

            big_id = await create_room(hs, sender, {"preset": "public_chat"})
            big = await hs.room_store.get_room(big_id)
            assert big is not None
            t0 = time.perf_counter()
            for n in range(members):
                u = f"@m{n}:{name}"
                await hs.registration.create_account(u, None, login=False)
                await hs.membership.update(big, u, u, "join")
                await hs.pushers.set(u, None, _pusher(gateway.url, f"k{n}"))
            out["setup_s"] = time.perf_counter() - t0
            before = len(gateway.received)
            t0 = time.perf_counter()
            await hs.room_service.create_event(big, sender, "m.room.message", {"msgtype": "m.text", "body": "to all"})
            out["fanout_send_ms"] = (time.perf_counter() - t0) * 1000
            await gateway.wait_for(before + members)
            out["fanout_all_delivered_ms"] = (gateway.arrived[before + members - 1] - t0) * 1000
            # Again with the caches warm (rulesets, ignore lists, display names).
            before = len(gateway.received)
            t0 = time.perf_counter()
            await hs.room_service.create_event(big, sender, "m.room.message", {"msgtype": "m.text", "body": "again"})
            out["fanout_warm_send_ms"] = (time.perf_counter() - t0) * 1000
            await gateway.wait_for(before + members)
            out["fanout_warm_all_delivered_ms"] = (gateway.arrived[before + members - 1] - t0) * 1000
        finally:
            await hs.stop()
            await gateway.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100)
    args = ap.parse_args()
    result = asyncio.run(bench(args.members, args.messages))
    print(f"push: one recipient, {args.messages} messages; fan-out to {args.members} members with a pusher each")
    for key, value in result.items():
        print(f"  {key:32s}{value:12.2f}")


if __name__ == "__main__":
    main()
