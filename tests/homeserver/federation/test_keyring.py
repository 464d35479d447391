"""The key ring against a real database, with a scripted stand-in for the network."""

from __future__ import annotations

from typing import Any

import pytest

from federation.client import ConnectError
from federation.events.signing import generate_signing_key, get_verify_key
from federation.server_keys import OldVerifyKey, build_server_keys, notary_sign
from homeserver.config import TrustedKeyServer
from homeserver.federation.keyring import REFETCH_INTERVAL_S, KeyRing
from homeserver.server import HomeServer
from tests.conftest import FakeClock, HsFactory

REMOTE = "remote.example"
NOTARY = "notary.example"
KEY = generate_signing_key("r1")
OLD = generate_signing_key("r0")
NOTARY_KEY = generate_signing_key("n1")


class FakeNetwork:
    """Answers the key ring's requests from a table; records what was asked."""

    def __init__(self) -> None:
        self.direct: dict[str, Any] = {}  # server -> response or exception
        self.notary: dict[str, Any] = {}
        self.calls: list[tuple[str, str, str]] = []

    async def get_json(self, destination: str, path: str, **kw: Any) -> Any:
        self.calls.append(("GET", destination, path))
        result = self.direct.get(destination, ConnectError("unreachable"))
        if isinstance(result, Exception):
            raise result
        return result

    async def post_json(self, destination: str, path: str, content: Any, **kw: Any) -> Any:
        self.calls.append(("POST", destination, path))
        result = self.notary.get(destination, ConnectError("unreachable"))
        if isinstance(result, Exception):
            raise result
        return result

    async def close(self) -> None:
        pass


def _keyring(hs: HomeServer, net: FakeNetwork, clock: FakeClock, notaries: bool = False) -> KeyRing:
    trusted = []
    if notaries:
        from federation.events.canonical import encode_base64

        trusted = [TrustedKeyServer(NOTARY, {"ed25519:n1": encode_base64(get_verify_key(NOTARY_KEY).encode())})]
    return KeyRing(server_name=hs.config.server_name, signing_key=hs.signing_key,
                   store=hs.server_keys, client=net, clock=clock,  # type: ignore[arg-type]
                   trusted_key_servers=trusted)


def _response(clock: FakeClock, valid_for_ms: int = 3_600_000, server: str = REMOTE) -> dict:
    return build_server_keys(
        server, [KEY], clock.time_ms() + valid_for_ms,
        {"ed25519:r0": OldVerifyKey(get_verify_key(OLD), clock.time_ms() - 10_000)},
    )


@pytest.fixture
async def hs(make_hs: HsFactory, clock: FakeClock) -> HomeServer:
    return await make_hs(clock=clock)


async def test_fetches_once_then_serves_from_memory_and_database(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    net.direct[REMOTE] = _response(clock)
    ring = _keyring(hs, net, clock)
    keys = await ring.get_verify_keys(REMOTE, ["ed25519:r1"])
    assert keys["ed25519:r1"].encode() == get_verify_key(KEY).encode()
    assert net.calls == [("GET", REMOTE, "/_matrix/key/v2/server")]
    await ring.get_verify_keys(REMOTE, ["ed25519:r1"])
    assert len(net.calls) == 1  # memory
    # A new key ring (a restart) with the peer gone still knows the key from the database.
    net2 = FakeNetwork()
    ring2 = _keyring(hs, net2, clock)
    assert "ed25519:r1" in await ring2.get_verify_keys(REMOTE, ["ed25519:r1"])
    assert net2.calls == []


async def test_minimum_valid_until_ts(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    net.direct[REMOTE] = _response(clock, valid_for_ms=1000)
    ring = _keyring(hs, net, clock)
    start = clock.time_ms()
    # Valid at the event's origin_server_ts (v5+ rule) within the validity window...
    assert "ed25519:r1" in await ring.get_verify_keys(REMOTE, ["ed25519:r1"], start + 1000)
    # ...not after it (no re-fetch yet: the last one was just now).
    assert await ring.get_verify_keys(REMOTE, ["ed25519:r1"], start + 1001) == {}
    assert len(net.calls) == 1
    # Later, a re-fetch is tried; the peer still says 1 s from then, which now suffices.
    clock.advance(int(REFETCH_INTERVAL_S * 1000))
    net.direct[REMOTE] = _response(clock, valid_for_ms=1000)
    assert "ed25519:r1" in await ring.get_verify_keys(REMOTE, ["ed25519:r1"], start + 1001)
    assert len(net.calls) == 2
    # The old key is good only for times before its expired_ts.
    old_expiry = clock.time_ms() - 10_000
    assert "ed25519:r0" in await ring.get_verify_keys(REMOTE, ["ed25519:r0"], old_expiry)
    assert await ring.get_verify_keys(REMOTE, ["ed25519:r0"], old_expiry + 1) == {}
    # Without a minimum, "now" is used: once time passes the validity, the key is refused.
    clock.advance(2000)
    clock.advance(int(REFETCH_INTERVAL_S * 1000))
    net.direct[REMOTE] = ConnectError("gone")
    assert await ring.get_verify_keys(REMOTE, ["ed25519:r1"]) == {}


async def test_refetch_is_throttled_for_unknown_keys(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    net.direct[REMOTE] = _response(clock)
    ring = _keyring(hs, net, clock)
    for _ in range(5):
        assert await ring.get_verify_keys(REMOTE, ["ed25519:unknown"]) == {}
    assert len(net.calls) == 1
    clock.advance(int(REFETCH_INTERVAL_S * 1000) + 1)
    await ring.get_verify_keys(REMOTE, ["ed25519:unknown"])
    assert len(net.calls) == 2


async def test_invalid_direct_responses_are_not_trusted(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    bad = _response(clock)
    bad["valid_until_ts"] += 1  # breaks the self-signature
    net.direct[REMOTE] = bad
    ring = _keyring(hs, net, clock)
    assert await ring.get_verify_keys(REMOTE, ["ed25519:r1"]) == {}
    # A response for another server is refused too.
    net.direct["other.example"] = _response(clock)
    assert await ring.get_verify_keys("other.example", ["ed25519:r1"]) == {}
    assert await hs.server_keys.get_keys(REMOTE) == []


async def test_notary_fallback_and_notary_signature_check(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    net.notary[NOTARY] = {"server_keys": [notary_sign(_response(clock), NOTARY, generate_signing_key("n1"))]}
    ring = _keyring(hs, net, clock, notaries=True)
    # Signed by a key that is not the configured notary key: refused.
    assert await ring.get_verify_keys(REMOTE, ["ed25519:r1"]) == {}
    assert [c[0] for c in net.calls] == ["GET", "POST"]
    clock.advance(int(REFETCH_INTERVAL_S * 1000) + 1)
    net.notary[NOTARY] = {"server_keys": [notary_sign(_response(clock), NOTARY, NOTARY_KEY)]}
    keys = await ring.get_verify_keys(REMOTE, ["ed25519:r1"])
    assert "ed25519:r1" in keys
    assert [k.source for k in await hs.server_keys.get_keys(REMOTE, ["ed25519:r1"])] == [NOTARY]


async def test_own_keys_and_notary_serving(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    ring = _keyring(hs, net, clock)
    own = ring.own_key_response()
    assert own["server_name"] == hs.config.server_name
    assert own["valid_until_ts"] == clock.time_ms() + 86_400_000
    kid = f"ed25519:{hs.signing_key.version}"
    assert kid in await ring.get_verify_keys(hs.config.server_name, [kid])
    assert net.calls == []
    assert await ring.notary_query(hs.config.server_name, [], None) == [own]
    # Unknown unreachable server: nothing.
    assert await ring.notary_query(REMOTE, [], None) == []
    # Reachable: fetched, stored, co-signed; later served from the store even when the
    # server is down and its response expired (the spec asks notaries to do so).
    clock.advance(int(REFETCH_INTERVAL_S * 1000) + 1)
    net.direct[REMOTE] = _response(clock, valid_for_ms=1000)
    [served] = await ring.notary_query(REMOTE, ["ed25519:r1"], None)
    assert set(served["signatures"]) == {REMOTE, hs.config.server_name}
    net.direct[REMOTE] = ConnectError("down")
    clock.advance(int(REFETCH_INTERVAL_S * 1000) + 1)
    [again] = await ring.notary_query(REMOTE, [], clock.time_ms() + 10**9)
    assert again["verify_keys"] == served["verify_keys"]


async def test_validity_never_shrinks_in_the_store(hs: HomeServer, clock: FakeClock) -> None:
    net = FakeNetwork()
    net.direct[REMOTE] = _response(clock, valid_for_ms=100_000)
    ring = _keyring(hs, net, clock)
    await ring.get_verify_keys(REMOTE, ["ed25519:r1"])
    clock.advance(int(REFETCH_INTERVAL_S * 1000) + 1)
    net.direct[REMOTE] = build_server_keys(REMOTE, [KEY], clock.time_ms() - 100_000)
    await ring.get_verify_keys(REMOTE, ["ed25519:nope"])
    [stored] = await hs.server_keys.get_keys(REMOTE, ["ed25519:r1"])
    assert stored.valid_until_ts == clock.time_ms() - int(REFETCH_INTERVAL_S * 1000) - 1 + 100_000
