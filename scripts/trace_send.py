"""Where one message's time goes, from its PUT to its reader's /sync answer, in microseconds.

One sender posts messages at a steady rate into a room with one reader long-polling
/sync (the one-reader delivery of scripts/bench_scale.py). The server runs as its own
process with probes: each stamps `time.perf_counter_ns()` (CLOCK_MONOTONIC, the same
clock in every process of the machine) at a step of the send path, so the steps of the
server and the client's own stamps fall on one time line. Per message, each step's time
is taken from the client's start of the PUT; the table gives their medians in order,
with what each step added to the one before. The writer thread's steps (its wake-up,
BEGIN, the statements, COMMIT, which holds the fsync) are stamped through SQLite's
statement trace callback.

A probe whose function a checkout lacks is left out (and named), so the code before a
change can be traced beside it in the same run (`--baseline DIR`). Measure on a quiet
machine and repeat: the steps that wake another thread or process cost what the
machine's scheduler makes them cost.
`--statements` makes each statement of the writer's transaction a step of its own.
Usage: scripts/trace_send.py [--messages N] [--rate R] [--statements] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
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

REPO = Path(__file__).resolve().parent.parent
# (label, module, attribute path): async functions stamped on entry ("<") and exit (">").
_ASYNC_PROBES = [
    ("put", "homeserver.api.client.rooms", "put_send"),
    ("sync", "homeserver.api.client.sync", "get_sync"),
    ("create_event", "homeserver.rooms.service", "RoomService.create_event"),
    ("build", "homeserver.rooms.service", "RoomService._build"),
    ("queue_write", "homeserver.rooms.persist", "EventPersister.queue_local_event"),
    ("after_commit", "homeserver.rooms.persist", "EventPersister._after_local"),
    ("reader_waits", "homeserver.sync.notifier", "Waiter.wait"),
]
_SYNC_PROBES = [
    ("persisted", "homeserver.rooms.activity", "RoomActivity.event_persisted"),
    ("readers_woken", "homeserver.sync.notifier", "Notifier.notify_users"),
]


# Set for the server's process by --statements: every statement of the writer is a step.
_STATEMENTS = "TRACE_SEND_STATEMENTS"
# A statement's literal values (SQLite's trace gives it with its parameters bound).
_VALUES = re.compile(r"'[^']*'|\b\d+\b")


def _serve(config: str, out: str) -> None:
    """The server with probes (run in the checkout traced, as its own process)."""
    import importlib

    stamps: list[tuple[str, int]] = []
    each_statement = bool(os.environ.get(_STATEMENTS))

    def mark(label: str) -> None:
        stamps.append((label, time.perf_counter_ns()))

    missing: list[str] = []

    def patch(module: str, path: str, wrap: Callable[[Any], Any]) -> None:
        owner: Any = importlib.import_module(module)
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        fn = getattr(owner, name, None)
        if fn is None:
            missing.append(f"{module}.{path}")
            return
        setattr(owner, name, functools.wraps(fn)(wrap(fn)))

    def stamp_async(label: str) -> Callable[[Any], Any]:
        def wrap(fn: Any) -> Any:
            async def stamped(*args: Any, **kwargs: Any) -> Any:
                mark(label + "<")
                try:
                    return await fn(*args, **kwargs)
                finally:
                    mark(label + ">")

            return stamped

        return wrap

    def stamp_sync(label: str) -> Callable[[Any], Any]:
        def wrap(fn: Any) -> Any:
            def stamped(*args: Any, **kwargs: Any) -> Any:
                mark(label + "<")
                try:
                    return fn(*args, **kwargs)
                finally:
                    mark(label + ">")

            return stamped

        return wrap

    for label, module, path in _ASYNC_PROBES:
        patch(module, path, stamp_async(label))
    for label, module, path in _SYNC_PROBES:
        patch(module, path, stamp_sync(label))

    # The writer thread: its batch, and BEGIN and COMMIT as SQLite starts them.
    def batch(fn: Any) -> Any:
        def stamped(*args: Any, **kwargs: Any) -> Any:
            mark("writer_batch<")
            try:
                return fn(*args, **kwargs)
            finally:
                mark("writer_batch>")

        return stamped

    def writer_connection(fn: Any) -> Any:
        def traced(*args: Any, **kwargs: Any) -> Any:
            conn = fn(*args, **kwargs)

            def statement(sql: str) -> None:
                if sql.startswith("BEGIN"):
                    mark("writer_begin")
                elif sql == "COMMIT":
                    mark("writer_commit")
                elif each_statement:  # its text without its values, so messages share a label
                    mark("sql " + _VALUES.sub("?", " ".join(sql.split()))[:80])

            conn.set_trace_callback(statement)
            return conn

        return traced

    patch("homeserver.storage.sqlite", "_run_batch", batch)
    patch("homeserver.storage.sqlite", "SqliteDatabase._connect_writer", writer_connection)

    # The HTTP side: the request's bytes taken in, the response's written out.
    from aiohttp import web_protocol, web_response

    def received(fn: Any) -> Any:
        def stamped(self: Any, data: bytes) -> Any:
            if data[:4] in (b"PUT ", b"GET "):  # a request's first bytes (not a body's)
                mark("http_put_in" if data[:3] == b"PUT" else "http_get_in")
            return fn(self, data)

        return stamped

    def answered(fn: Any) -> Any:
        async def stamped(self: Any, data: bytes = b"") -> Any:
            path = self._req.path if getattr(self, "_req", None) is not None else ""
            label = "http_sync_out" if path.endswith("/sync") else "http_put_out" if "/send/" in path else "http_out"
            mark(label + "<")
            try:
                return await fn(self, data)
            finally:
                mark(label + ">")

        return stamped

    web_protocol.RequestHandler.data_received = received(web_protocol.RequestHandler.data_received)  # type: ignore[method-assign]
    web_response.StreamResponse.write_eof = answered(web_response.StreamResponse.write_eof)  # type: ignore[method-assign]

    from homeserver.__main__ import main

    try:
        main(["run", "--config", config])
    finally:
        Path(out).write_text(json.dumps({"stamps": stamps, "missing": missing}))


async def _trace(repo: Path, messages: int, rate: float, statements: bool = False) -> dict[str, Any]:
    """Start `repo`'s server with probes, drive it, and return its per-message steps."""
    sys.path.insert(0, str(REPO / "scripts"))
    import aiohttp
    import orjson
    from bench_scale import _LongPoll
    from bench_servers import _wait_up, accord_config, free_ports, registered

    tmp = Path(tempfile.mkdtemp(prefix="trace_send_"))
    port = free_ports(2)
    cfg, out = accord_config(tmp / "accord", port, repo), tmp / "stamps.json"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(cfg), str(out)],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo), **({_STATEMENTS: "1"} if statements else {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    sends: list[tuple[str, int, int]] = []
    received: dict[str, int] = {}
    try:
        await _wait_up(url, proc)
        async with aiohttp.ClientSession() as s:
            sender, reader = await registered(s, url, "sender", "reader")
            room = (await sender.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
            await reader.call("POST", f"/rooms/{room}/join", {})
            token = (await reader.call("GET", "/sync?timeout=0"))["next_batch"]
            conn = await _LongPoll.open(url, reader.token)

            async def read(token: str) -> None:
                while len(received) < messages:
                    status, raw = await conn.get(f"/_matrix/client/v3/sync?since={quote(token)}&timeout=30000")
                    now = time.perf_counter_ns()
                    if status != 200:
                        raise RuntimeError(f"GET /sync: {status}")
                    body = orjson.loads(raw)
                    token = body["next_batch"]
                    timeline = body.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {})
                    for event in timeline.get("events", []):
                        received.setdefault(str(event.get("content", {}).get("body")), now)
                    await asyncio.sleep(0)

            reading = asyncio.ensure_future(read(token))
            await asyncio.sleep(1)
            for i in range(messages):
                await asyncio.sleep(1 / rate)
                text = f"trace {i}"
                t0 = time.perf_counter_ns()
                await sender.call("PUT", f"/rooms/{room}/send/m.room.message/t{i}", {"msgtype": "m.text", "body": text})
                sends.append((text, t0, time.perf_counter_ns()))
            await asyncio.wait_for(reading, 60)
            conn.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    traced = json.loads(out.read_text())
    subprocess.run(["rm", "-rf", str(tmp)], check=False)
    stamps: list[tuple[str, int]] = traced["stamps"]
    steps: dict[str, list[float]] = {}
    delivery, put = [], []
    for text, t0, t1 in sends[min(5, len(sends) // 10):]:  # the first sends warm caches up
        seen = received[text]
        delivery.append((seen - t0) / 1000)
        put.append((t1 - t0) / 1000)
        first: dict[str, int] = {}
        for label, at in stamps:
            if t0 <= at <= max(t1, seen):
                first.setdefault(label, at)
        first["client: reader has it"] = seen
        first["client: PUT answered"] = t1
        for label, at in first.items():
            steps.setdefault(label, []).append((at - t0) / 1000)
    return {"delivery": delivery, "put": put, "steps": steps, "missing": traced["missing"]}


def _report(name: str, result: dict[str, Any]) -> None:
    delivery, put = result["delivery"], result["put"]
    print(f"{name}: delivery p50 {statistics.median(delivery):.0f} us, PUT p50 {statistics.median(put):.0f} us"
          f" ({len(delivery)} messages)")
    if result["missing"]:
        print(f"  (no probe: {', '.join(result['missing'])})")
    rows = sorted(((statistics.median(v), k, len(v)) for k, v in result["steps"].items()))
    before = 0.0
    print(f"  {'step (from the start of the PUT)':40s} {'at (us)':>9s} {'+ (us)':>8s}")
    for at, label, n in rows:
        print(f"  {label:40s} {at:9.0f} {at - before:8.0f}" + (f"   (in {n})" if n < len(delivery) else ""))
        before = at


async def _main(args: argparse.Namespace) -> None:
    runs = [("accord", REPO)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else [])
    for round_ in range(args.rounds):
        for name, repo in runs if round_ % 2 == 0 else runs[::-1]:
            _report(f"{name} (round {round_ + 1})", await _trace(repo, args.messages, args.rate, args.statements))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--rate", type=float, default=5.0, help="messages a second (the fan-out's 5)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each checkout, alternated")
    ap.add_argument("--baseline", help="another checkout (e.g. main's code), traced in the same run")
    ap.add_argument("--statements", action="store_true",
                    help="each statement of the writer's transaction a step (when it starts; SQLite's"
                         " own statements, such as the full-text index's at COMMIT, start with --)")
    asyncio.run(_main(ap.parse_args()))


if __name__ == "__main__":
    main()
