"""Server discovery per the spec's steps, without touching the real network:
IP literals and ports need nothing, well-known is served over HTTPS from
127.0.0.1 ("localhost", certificate from the test CA), SRV comes from a fake."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from signedjson.key import generate_signing_key

from federation.client import AddressRefusedError, FederationClient, make_ssl_context
from federation.discovery import (
    ResolvedServer,
    ServerResolver,
    WellKnownCache,
    parse_cache_lifetime,
    split_host_port,
)
from federation.outbound_guard import AddressPolicy, OutboundGuard
from tests.federation.counting_listener import CountingListener
from tests.homeserver.federation.servers import free_port
from tests.tls_ca import TestCA


class FakeSrv:
    def __init__(self, records: dict[str, list[tuple[str, int]]] | None = None) -> None:
        self.records = records or {}
        self.asked: list[str] = []

    async def __call__(self, name: str) -> list[tuple[str, int]]:
        self.asked.append(name)
        return self.records.get(name, [])


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _resolver(srv: FakeSrv | None = None, **kw: Any) -> ServerResolver:
    async def no_dns(name: str) -> list[tuple[str, int]]:
        raise AssertionError(f"unexpected SRV look-up of {name}")

    # The well-known server of these tests is on loopback, which must be allowed.
    kw.setdefault("guard", OutboundGuard(AddressPolicy.parse(["127.0.0.0/8"])))
    return ServerResolver(srv_lookup=srv or no_dns, **kw)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1.2.3.4", ResolvedServer("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4")),
        ("1.2.3.4:99", ResolvedServer("1.2.3.4", 99, "1.2.3.4:99", "1.2.3.4")),
        ("[::1]", ResolvedServer("::1", 8448, "[::1]", "::1")),
        ("[2001:db8::1]:8000", ResolvedServer("2001:db8::1", 8000, "[2001:db8::1]:8000", "2001:db8::1")),
        ("example.org:1234", ResolvedServer("example.org", 1234, "example.org:1234", "example.org")),
    ],
)
async def test_ip_literals_and_explicit_ports_need_no_lookup(name: str, expected: ResolvedServer) -> None:
    assert await _resolver().resolve(name) == expected


async def test_url_base_brackets_ipv6() -> None:
    assert (await _resolver().resolve("[::1]:5")).url_base == "https://[::1]:5"


async def test_static_hosts_short_circuit_discovery() -> None:
    r = _resolver(static_hosts={"example.org": "127.0.0.2:9000", "[::1]:1": "127.0.0.3:2"})
    assert await r.resolve("example.org") == ResolvedServer("127.0.0.2", 9000, "example.org", "example.org")
    assert await r.resolve("[::1]:1") == ResolvedServer("127.0.0.3", 2, "[::1]:1", "::1")


async def test_invalid_server_name_is_refused() -> None:
    with pytest.raises(ValueError):
        await _resolver().resolve("not a name")


def test_split_host_port() -> None:
    assert split_host_port("a.example") == ("a.example", None, False)
    assert split_host_port("1.2.3.4:5") == ("1.2.3.4", 5, True)
    assert split_host_port("[::1]:7") == ("::1", 7, True)


class WellKnownServer:
    """An HTTPS server for /.well-known/matrix/server whose answer tests change."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"m.server": "delegated.example:443"}
        self.headers: dict[str, str] = {}
        self.hits = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.status in (301, 302):
            raise web.HTTPFound(self.body)
        if isinstance(self.body, bytes):
            return web.Response(status=self.status, body=self.body, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@pytest.fixture
async def well_known(ca: TestCA) -> AsyncIterator[tuple[WellKnownServer, ssl.SSLContext, int]]:
    server_ctx = ca.server_context("localhost")
    wk = WellKnownServer()
    app = web.Application()
    app.router.add_get("/.well-known/matrix/server", wk.handle)
    app.router.add_get("/elsewhere", wk.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port("127.0.0.1")
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx)
    await site.start()
    try:
        yield wk, make_ssl_context(ca_bundle_path=str(ca.ca_path)), port
    finally:
        await runner.cleanup()


async def test_well_known_delegation_variants(well_known: Any) -> None:
    wk, ctx, port = well_known
    srv = FakeSrv({"_matrix-fed._tcp.srv.example": [("target.example", 7000)]})
    clock = Clock()
    r = _resolver(srv, ssl_context=ctx, well_known_port=port, monotonic=clock)
    try:
        # 3.2: delegated hostname with port.
        assert await r.resolve("localhost") == ResolvedServer(
            "delegated.example", 443, "delegated.example:443", "delegated.example")
        cases = [
            # 3.1: delegated IP literal, with and without port.
            ("127.0.0.9:1234", ResolvedServer("127.0.0.9", 1234, "127.0.0.9:1234", "127.0.0.9")),
            ("[::2]", ResolvedServer("::2", 8448, "[::2]", "::2")),
            # 3.3: delegated hostname without port, SRV _matrix-fed.
            ("srv.example", ResolvedServer("target.example", 7000, "srv.example", "srv.example")),
            # 3.5: no SRV at all: port 8448 on the delegated hostname.
            ("nosrv.example", ResolvedServer("nosrv.example", 8448, "nosrv.example", "nosrv.example")),
        ]
        for delegated, expected in cases:
            wk.body = {"m.server": delegated}
            clock.t += 49 * 3600  # past the cache
            assert await r.resolve("localhost") == expected, delegated
        assert srv.asked == [
            "_matrix-fed._tcp.srv.example",
            "_matrix-fed._tcp.nosrv.example", "_matrix._tcp.nosrv.example",
        ]
    finally:
        await r.close()


async def test_well_known_cache_respects_headers_and_is_capped(well_known: Any) -> None:
    wk, ctx, port = well_known
    clock = Clock()
    r = _resolver(FakeSrv(), ssl_context=ctx, well_known_port=port, monotonic=clock)
    try:
        wk.headers = {"Cache-Control": "public, max-age=600"}
        await r.resolve("localhost")
        await r.resolve("localhost")
        assert wk.hits == 1
        clock.t += 601
        wk.headers = {}  # no headers: the 24 h default
        await r.resolve("localhost")
        assert wk.hits == 2
        clock.t += 23 * 3600
        await r.resolve("localhost")
        assert wk.hits == 2
        clock.t += 3600
        wk.headers = {"Cache-Control": "max-age=31536000"}  # a year: capped at 48 h
        await r.resolve("localhost")
        clock.t += 48 * 3600 + 1
        await r.resolve("localhost")
        assert wk.hits == 4
        wk.headers = {"Cache-Control": "no-store"}
        clock.t += 48 * 3600 + 1
        await r.resolve("localhost")
        await r.resolve("localhost")
        assert wk.hits == 6
    finally:
        await r.close()


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, {"errcode": "M_NOT_FOUND"}), (200, b"not json"), (200, {"m.server": 5}),
     (200, {"m.server": "bad name!"}), (200, ["m.server"]), (200, {})],
)
async def test_well_known_errors_fall_back_to_srv_with_backoff(well_known: Any, status: int, body: Any) -> None:
    wk, ctx, port = well_known
    wk.status, wk.body = status, body
    clock = Clock()
    srv = FakeSrv({"_matrix._tcp.localhost": [("legacy.example", 8001)]})
    r = _resolver(srv, ssl_context=ctx, well_known_port=port, monotonic=clock)
    try:
        # Steps 4-5: _matrix-fed first, then the deprecated _matrix record, Host = hostname.
        assert await r.resolve("localhost") == ResolvedServer("legacy.example", 8001, "localhost", "localhost")
        assert srv.asked == ["_matrix-fed._tcp.localhost", "_matrix._tcp.localhost"]
        await r.resolve("localhost")
        assert wk.hits == 1  # the error is cached
        clock.t += 121
        await r.resolve("localhost")
        assert wk.hits == 2
        clock.t += 121  # the second failure backs off longer (240 s)
        await r.resolve("localhost")
        assert wk.hits == 2
        clock.t += 120
        await r.resolve("localhost")
        assert wk.hits == 3
    finally:
        await r.close()


async def test_well_known_redirects_are_followed(well_known: Any) -> None:
    wk, ctx, port = well_known
    r = _resolver(FakeSrv(), ssl_context=ctx, well_known_port=port)
    try:
        wk.status, wk.body = 302, "/elsewhere"
        # The redirect target is the same handler, which keeps redirecting: a loop,
        # stopped by the redirect limit and treated as an error (then step 6).
        assert await r.resolve("localhost") == ResolvedServer("localhost", 8448, "localhost", "localhost")
        assert 2 <= wk.hits <= 12
    finally:
        await r.close()


async def test_well_known_needs_a_trusted_certificate(well_known: Any) -> None:
    wk, _, port = well_known
    srv = FakeSrv({"_matrix-fed._tcp.localhost": [("fed.example", 8443)]})
    r = _resolver(srv, ssl_context=make_ssl_context(), well_known_port=port)
    try:
        assert await r.resolve("localhost") == ResolvedServer("fed.example", 8443, "localhost", "localhost")
        assert wk.hits == 0  # the TLS handshake failed before any request
    finally:
        await r.close()


async def test_well_known_is_not_fetched_from_a_private_address(well_known: Any) -> None:
    """With the default guard, a hostname resolving to loopback gets no request:
    discovery goes on as if there were no well-known (SRV, then 8448)."""
    wk, ctx, port = well_known
    r = _resolver(FakeSrv(), ssl_context=ctx, well_known_port=port, guard=OutboundGuard())
    try:
        assert await r.resolve("localhost") == ResolvedServer("localhost", 8448, "localhost", "localhost")
        assert wk.hits == 0
    finally:
        await r.close()


async def test_concurrent_well_known_look_ups_share_one_fetch(well_known: Any) -> None:
    wk, ctx, port = well_known
    r = _resolver(FakeSrv(), ssl_context=ctx, well_known_port=port)
    try:
        results = await asyncio.gather(*(r.well_known("localhost") for _ in range(10)))
        assert results == ["delegated.example:443"] * 10
        assert wk.hits == 1
    finally:
        await r.close()


async def test_delegation_and_redirects_to_private_addresses_are_refused(well_known: Any) -> None:
    """Only the well-known server's own address is allowed: neither a redirect nor
    the delegated server it names may lead anywhere else on the private network."""
    wk, ctx, port = well_known
    guard = OutboundGuard(AddressPolicy.parse(["127.0.0.1/32"]))
    async with CountingListener("127.0.0.9") as inside:
        wk.status, wk.body = 302, f"https://{inside.name}/.well-known/matrix/server"
        r = _resolver(FakeSrv(), ssl_context=ctx, well_known_port=port, guard=guard)
        try:
            assert await r.well_known("localhost") is None
        finally:
            await r.close()
        wk.status, wk.body = 200, {"m.server": inside.name}
        r = _resolver(FakeSrv(), ssl_context=ctx, well_known_port=port, guard=guard)
        client = FederationClient("us.example", generate_signing_key("1"), resolver=r, ssl_context=ctx,
                                  guard=guard)
        try:
            assert (await r.resolve("localhost")).host == "127.0.0.9"
            with pytest.raises(AddressRefusedError):
                await client.get_json("localhost", "/_matrix/key/v2/server", signed=False)
        finally:
            await client.close()
        assert inside.accepted == 0


async def test_srv_failures_count_as_no_record() -> None:
    async def broken(name: str) -> list[tuple[str, int]]:
        raise OSError("no DNS here")

    from federation.discovery import _CacheEntry

    r = ServerResolver(srv_lookup=broken, cache=WellKnownCache())
    r.cache.put("x.example", _CacheEntry(None, 1e18))  # a cached well-known failure
    assert await r.resolve("x.example") == ResolvedServer("x.example", 8448, "x.example", "x.example")


def test_cache_is_bounded() -> None:
    from federation.discovery import _CacheEntry

    cache = WellKnownCache(max_entries=3)
    for i in range(5):
        cache.put(f"h{i}", _CacheEntry(None, 10.0))
    assert len(cache) == 3
    assert cache.get("h0", 0.0) is None and cache.get("h4", 0.0) is not None
    assert cache.get("h4", 10.0) is None  # expired


def test_parse_cache_lifetime() -> None:
    assert parse_cache_lifetime({"Cache-Control": "max-age=60"}, 0) == 60
    assert parse_cache_lifetime({"Cache-Control": 'public, max-age="90"'}, 0) == 90
    assert parse_cache_lifetime({"Cache-Control": "no-cache"}, 0) == 0
    assert parse_cache_lifetime({"Expires": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40) == 60
    assert parse_cache_lifetime({"Expires": "garbage"}, 0) == 0
    assert parse_cache_lifetime({"Expires": "Thu, 01 Jan 1970 00:01:40 GMT"}, 1000) == 0
    assert parse_cache_lifetime({}, 0) is None
