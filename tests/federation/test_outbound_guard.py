"""The outbound guard: which addresses may be connected to, checked where the
socket connects (IP literals, names resolving to refused addresses), proven on
real listening sockets that count their connections; and single-flight."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from signedjson.key import generate_signing_key

from federation.client import AddressRefusedError, FederationClient, make_ssl_context
from federation.discovery import ServerResolver
from federation.outbound_guard import AddressPolicy, OutboundGuard, RefusedAddressError
from federation.single_flight import SingleFlight
from tests.federation.counting_listener import CountingListener

REFUSED = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "169.254.169.254",  # link-local: cloud metadata services
    "0.0.0.0", "224.0.0.1", "239.1.2.3", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "fe80::1%eth0",
    "not-an-ip",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_default_policy_refuses_what_is_not_public(address: str) -> None:
    policy = AddressPolicy()
    assert policy.refusal(address) is not None
    with pytest.raises(RefusedAddressError):
        policy.check(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_default_policy_allows_the_public_internet(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


def test_allowed_and_denied_ranges() -> None:
    policy = AddressPolicy.parse(["10.20.0.0/16", "::1/128", "203.0.113.7"], ["93.184.0.0/16", "10.20.5.0/24"])
    assert policy.refusal("10.20.1.1") is None
    assert policy.refusal("::ffff:10.20.1.1") is None  # the IPv4-mapped form of an allowed address
    assert policy.refusal("10.21.0.1") == "private address"
    assert policy.refusal("::1") is None
    assert policy.refusal("127.0.0.1") == "loopback address"
    assert policy.refusal("93.184.216.34") == "in a denied range"
    assert policy.refusal("10.20.5.5") is None  # allowed wins where both match
    with pytest.raises(ValueError):
        AddressPolicy.parse(["10.0.0.1/8"])  # host bits set: a typo, not a range


async def _get(guard: OutboundGuard, url: str) -> int:
    async with guard.session() as s, s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
        return resp.status


async def test_default_guard_never_connects_to_loopback() -> None:
    """By IP literal (no DNS: the socket factory refuses) and by a name that
    resolves to loopback (the resolver refuses): no connection is made."""
    async with CountingListener() as peer:
        for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
            with pytest.raises(aiohttp.ClientConnectorError) as err:
                await _get(OutboundGuard(), f"http://{host}:{peer.port}/")
            assert isinstance(err.value.os_error, RefusedAddressError), host
        assert peer.accepted == 0


async def test_allowed_range_connects() -> None:
    async with CountingListener() as peer:
        guard = OutboundGuard(AddressPolicy.parse(["127.0.0.0/8"]))
        with pytest.raises(aiohttp.ClientError):  # it hangs up without answering
            await _get(guard, f"http://{peer.name}/")
        assert peer.accepted >= 1  # aiohttp retries an idempotent request once on a hang-up


async def test_federation_client_refuses_private_destinations_by_default() -> None:
    """A client built without a guard gets the safe default, and says why it failed."""
    ctx = make_ssl_context()
    async with CountingListener() as peer:
        client = FederationClient("us.example", generate_signing_key("1"),
                                  resolver=ServerResolver(ssl_context=ctx), ssl_context=ctx)
        try:
            with pytest.raises(AddressRefusedError) as err:
                await client.get_json(peer.name, "/_matrix/key/v2/server", signed=False)
            assert err.value.address == "127.0.0.1"
        finally:
            await client.close()
        assert peer.accepted == 0


async def test_static_hosts_pass_through_the_guard() -> None:
    """A static host is where to connect, not a licence to connect there."""
    ctx = make_ssl_context()
    async with CountingListener() as peer:
        resolver = ServerResolver(ssl_context=ctx, static_hosts={"peer.example": peer.name})
        client = FederationClient("us.example", generate_signing_key("1"), resolver=resolver, ssl_context=ctx)
        try:
            with pytest.raises(AddressRefusedError):
                await client.get_json("peer.example", "/_matrix/key/v2/server", signed=False)
        finally:
            await client.close()
        assert peer.accepted == 0


async def test_single_flight_shares_one_call() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiters = [asyncio.ensure_future(flights.run("a", fetch)) for _ in range(10)]
    await asyncio.sleep(0)
    assert flights.in_flight("a") and not flights.in_flight("b")
    waiters[0].cancel()  # one caller giving up does not cancel the call for the others
    release.set()
    assert await asyncio.gather(*waiters[1:]) == [1] * 9
    assert calls == 1 and len(flights) == 0
    assert await flights.run("a", fetch) == 2  # finished: the next call starts afresh


async def test_single_flight_shares_the_failure() -> None:
    flights: SingleFlight[str, None] = SingleFlight()
    calls = 0

    async def fail() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise OSError("unreachable")

    results = await asyncio.gather(*(flights.run("x", fail) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, OSError) for r in results)
