"""The federation port's front door: nothing costly for a request that will be refused.

An unsigned request's body is never read; the policy refuses a claimed origin
before its keys are fetched; a body over the endpoint's cap is refused from its
declared length; a forged origin's keys are fetched before (and instead of)
reading its body; JSON is held to the nesting bound. And under 50 concurrent
60 MB requests, unsigned or with forged headers, memory stays where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from federation.client import RemoteError
from federation.events.json_bounds import MAX_JSON_DEPTH
from homeserver.api.federation.auth import SEND_BODY_CAP
from tests.e2e.server_process import ServerProcess
from tests.homeserver.federation.servers import ServerSpec, free_port, running_server
from tests.homeserver.federation.test_federation_api import _client
from tests.tls_ca import TestCA

SIXTY_MB = 60 * 1024 * 1024


class CountingListener:
    """A TCP socket on loopback that counts connections (a claimed origin's
    address: any connection to it means we tried to fetch its keys)."""

    def __init__(self, ip: str = "127.0.0.9") -> None:
        self.ip = ip
        self.port = free_port(ip)
        self.name = f"{ip}:{self.port}"
        self.connections = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingListener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, self.ip, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def forged_header(origin: str, destination: str) -> str:
    return (f'X-Matrix origin="{origin}",destination="{destination}",'
            f'key="ed25519:forged",sig="{"A" * 86}"')


@contextlib.asynccontextmanager
async def raw_connection(host: str, port: int, ca: TestCA | None) -> AsyncIterator[
    tuple[asyncio.StreamReader, asyncio.StreamWriter]
]:
    if ca is not None:
        ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def answer_before_body(
    host: str, port: int, ca: TestCA | None, *, authorization: str | None, chunked: bool = False,
    length: int = SIXTY_MB, path: str = "/_matrix/federation/v1/send/t1",
) -> tuple[int, dict[str, Any]]:
    """Send a request's head and 64 KiB of a body announced as ``length`` bytes
    (or chunked, without end), then read the answer: it can only come now if
    the server decided without reading the body."""
    head = [f"PUT {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    if authorization is not None:
        head.append(f"Authorization: {authorization}")
    start = (b'{"pdus":[' + b"{}," * 20000)[:length]
    async with raw_connection(host, port, ca) as (reader, writer):
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        writer.write(b"%x\r\n%s\r\n" % (len(start), start) if chunked else start)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return int(status_line.split()[1]), orjson.loads(body)


async def test_unsigned_bodies_are_never_read(tmp_path: Path, ca: TestCA) -> None:
    spec = ServerSpec(tmp_path, "127.0.0.2")
    async with running_server(spec, ca):
        for chunked in (False, True):
            status, body = await answer_before_body(spec.ip, spec.port, ca, authorization=None, chunked=chunked)
            assert status == 401 and body["errcode"] == "M_UNAUTHORIZED"


async def test_policy_refuses_a_claimed_origin_before_fetching_its_keys(tmp_path: Path, ca: TestCA) -> None:
    spec = ServerSpec(tmp_path, "127.0.0.2")
    async with CountingListener() as origin, running_server(spec, ca, policy="partners"):
        status, body = await answer_before_body(
            spec.ip, spec.port, ca, authorization=forged_header(origin.name, spec.name), length=1000
        )
        assert status == 403 and body["errcode"] == "M_FORBIDDEN"
        assert origin.connections == 0


async def test_a_body_over_the_endpoint_cap_is_refused_from_its_length(tmp_path: Path, ca: TestCA) -> None:
    spec = ServerSpec(tmp_path, "127.0.0.2")
    async with CountingListener() as origin, running_server(spec, ca):
        status, body = await answer_before_body(
            spec.ip, spec.port, ca, authorization=forged_header(origin.name, spec.name),
            length=SEND_BODY_CAP + 1,
        )
        assert status == 413 and body["errcode"] == "M_TOO_LARGE"
        # Elsewhere the cap is the client API's body limit (1 MiB by default).
        status, body = await answer_before_body(
            spec.ip, spec.port, ca, authorization=forged_header(origin.name, spec.name),
            length=2 * 1024 * 1024, path="/_matrix/federation/v1/user/keys/query",
        )
        assert status == 413 and body["errcode"] == "M_TOO_LARGE"
        assert origin.connections == 0


async def test_a_forged_origin_costs_a_key_fetch_not_a_body_read(tmp_path: Path, ca: TestCA) -> None:
    spec = ServerSpec(tmp_path, "127.0.0.2")
    async with CountingListener() as origin, running_server(spec, ca):
        status, body = await answer_before_body(
            spec.ip, spec.port, ca, authorization=forged_header(origin.name, spec.name),
            length=SEND_BODY_CAP - 1,
        )
        assert status == 401 and body["errcode"] == "M_UNAUTHORIZED"


async def test_signed_bodies_are_held_to_the_nesting_bound(tmp_path: Path, ca: TestCA) -> None:
    a, b = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(a, ca), running_server(b, ca):
        client = _client(b, ca)
        try:
            deep: Any = {}
            for _ in range(MAX_JSON_DEPTH):
                deep = {"a": deep}
            with pytest.raises(RemoteError) as err:
                await client.put_json(a.name, "/_matrix/federation/v1/send/deep1",
                                      {"origin": b.name, "origin_server_ts": 1, "pdus": [], "edus": [deep]})
            assert err.value.status == 400 and err.value.errcode == "M_BAD_JSON"
            # Within the bound the transaction is taken (the EDU is of no known type).
            ok: Any = {}
            for _ in range(MAX_JSON_DEPTH - 4):
                ok = {"a": ok}
            answer = await client.put_json(a.name, "/_matrix/federation/v1/send/deep2",
                                           {"origin": b.name, "origin_server_ts": 1, "pdus": [],
                                            "edus": [{"edu_type": "m.unknown", "content": ok}]})
            assert answer == {"pdus": {}}
        finally:
            await client.close()


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def _flood(host: str, port: int, authorization: str | None) -> None:
    """One 60 MB request, written as fast as the server takes it, until it answers."""
    head = ["PUT /_matrix/federation/v1/send/flood HTTP/1.1", f"Host: {host}:{port}",
            "Content-Type: application/json", f"Content-Length: {SIXTY_MB}"]
    if authorization is not None:
        head.append(f"Authorization: {authorization}")
    chunk = b"{}," * 21845
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
        async with raw_connection(host, port, None) as (reader, writer):
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b"[")
            answer = asyncio.ensure_future(reader.readline())
            sent = 0
            while sent < SIXTY_MB and not answer.done():
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
            await asyncio.wait_for(answer, 30)


@pytest.mark.slow
async def test_memory_stays_flat_under_concurrent_oversized_requests(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs", "127.0.0.1:1", federation={"enabled": True})
    await server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        fed = server.urls["federation"]
        host, port = fed.split("://")[1].rsplit(":", 1)
        await asyncio.sleep(0.5)
        idle = _rss_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # noqa: ASYNC240 (peak since now, not startup)
        for authorization in (None, forged_header("127.0.0.9:1", "127.0.0.1:1")):
            await asyncio.gather(*(_flood(host, int(port), authorization) for _ in range(50)))
        peak = _rss_kib(pid, "VmHWM")
        assert peak <= idle * 1.2, f"peak RSS {peak} KiB against {idle} KiB idle"
    finally:
        await server.stop()
