"""Remote parties cannot make the server connect inside its own network, nor
make it connect often: X-Matrix origins, static hosts and notary queries that
name private or loopback addresses cause no connection (counted on real
listening sockets), a burst of signatures from an unknown origin costs one key
fetch, and the requests that cause fetches are rate limited."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict
from signedjson.key import generate_signing_key

from federation.request_auth import sign_request
from homeserver.config import ConfigError, parse_config
from homeserver.errors import MatrixError
from tests.conftest import (
    LOOPBACK_OUTBOUND,
    SERVER_NAME,
    Api,
    ClientFactory,
    HsFactory,
    config_dict,
)
from tests.federation.counting_listener import CountingListener

FEDERATION = {"enabled": True}
# Signed-only, served by no route: a request that got through auth would be a 404.
PATH = "/_matrix/federation/v1/no_such_endpoint"


def x_matrix(origin: str, key_version: str = "1") -> str:
    """A well-formed X-Matrix header from ``origin`` (whose key we cannot know)."""
    return sign_request(method="GET", uri=PATH, origin=origin, destination=SERVER_NAME,
                        signing_key=generate_signing_key(key_version))


async def signed_get(api: Api, *headers: str) -> tuple[int, Any]:
    hdrs = CIMultiDict(("Authorization", h) for h in headers)
    async with api.client.get(PATH, headers=hdrs) as resp:
        return resp.status, await resp.json()


async def test_a_loopback_origin_is_never_contacted(make_api: ClientFactory) -> None:
    """Default config: the key fetch for an origin on loopback is refused before
    any connection, and the request is simply unauthenticated."""
    api = await make_api(federation=FEDERATION)
    async with CountingListener() as target:
        status, body = await signed_get(api, x_matrix(target.name))
        assert (status, body["errcode"]) == (401, "M_UNAUTHORIZED")
        status, _ = await signed_get(api, x_matrix(f"[::ffff:127.0.0.1]:{target.port}"))
        assert status == 401
        assert target.accepted == 0


async def test_a_static_host_on_a_private_address_is_refused(make_api: ClientFactory) -> None:
    api = await make_api(federation={**FEDERATION, "static_hosts": {"peer.example": "127.0.0.1:1"}})
    async with CountingListener() as target:
        api.hs.federation_client.resolver.static_hosts["peer.example"] = target.name
        status, _ = await signed_get(api, x_matrix("peer.example"))
        assert status == 401
        assert target.accepted == 0


async def test_notary_endpoints_do_not_reach_private_addresses(make_api: ClientFactory) -> None:
    api = await make_api(federation=FEDERATION)
    async with CountingListener() as target:
        assert await api.get(f"/_matrix/key/v2/query/{target.name}") == {"server_keys": []}
        names = [target.name, f"[::1]:{target.port}", "10.0.0.1", "169.254.169.254:80", "192.168.1.1:8448"]
        got = await api.post("/_matrix/key/v2/query", {"server_keys": {n: {} for n in names}})
        assert got == {"server_keys": []}
        assert target.accepted == 0


async def test_notary_queries_are_checked_and_bounded(make_api: ClientFactory) -> None:
    api = await make_api(federation=FEDERATION)
    status, err = await api.request("GET", "/_matrix/key/v2/query/bad%20name", expect=None)
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    status, err = await api.request(
        "POST", "/_matrix/key/v2/query", {"server_keys": {"bad name!": {}}}, expect=None
    )
    assert status == 400
    too_many = {f"10.0.{i // 250}.{i % 250}": {} for i in range(101)}
    status, err = await api.request("POST", "/_matrix/key/v2/query", {"server_keys": too_many}, expect=None)
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")


async def test_notary_queries_are_rate_limited_per_server_asked_about(make_api: ClientFactory) -> None:
    api = await make_api(
        federation=FEDERATION,
        rate_limits={"enabled": True, "actions": {"key_query": {"per_second": 0.001, "burst": 3}}},
    )
    three = {"server_keys": {"10.0.0.1": {}, "10.0.0.2": {}, "10.0.0.3": {}}}
    assert await api.post("/_matrix/key/v2/query", three) == {"server_keys": []}
    for method, path, body in (
        ("GET", "/_matrix/key/v2/query/10.0.0.4", None),
        ("POST", "/_matrix/key/v2/query", {"server_keys": {"10.0.0.5": {}}}),
    ):
        status, err = await api.request(method, path, body, expect=None)
        assert (status, err["errcode"]) == (429, "M_LIMIT_EXCEEDED"), method
        assert err["retry_after_ms"] > 0


async def test_ten_signatures_of_an_unknown_origin_cost_one_connection(make_api: ClientFactory) -> None:
    """Ten X-Matrix headers naming ten key IDs of a slow peer: one fetch. A fetch
    that outlasts the refetch interval must not let the next header start another."""
    api = await make_api(federation=FEDERATION, outbound=LOOPBACK_OUTBOUND)
    async with CountingListener(hold_s=1.2) as slow:
        headers = [x_matrix(slow.name, f"k{i}") for i in range(10)]
        status, _ = await signed_get(api, *headers)
        assert status == 401
        assert slow.accepted == 1


async def test_concurrent_requests_from_an_unknown_origin_share_one_fetch(make_api: ClientFactory) -> None:
    """Ten requests at once, each signed with a different key ID of a slow peer,
    wait for the one fetch in flight instead of each starting their own."""
    api = await make_api(federation=FEDERATION, outbound=LOOPBACK_OUTBOUND)
    async with CountingListener(hold_s=1.2) as slow:
        results = await asyncio.gather(*(signed_get(api, x_matrix(slow.name, f"k{i}")) for i in range(10)))
        assert [status for status, _ in results] == [401] * 10
        assert slow.accepted == 1


async def test_a_slow_fetch_does_not_let_the_next_request_start_another(make_api: ClientFactory) -> None:
    """The refetch interval counts from the end of a fetch: a peer that takes
    longer than the interval to fail cannot be asked again back to back."""
    api = await make_api(federation=FEDERATION, outbound=LOOPBACK_OUTBOUND)
    async with CountingListener(hold_s=1.2) as slow:
        for key_version in ("k1", "k2"):
            status, _ = await signed_get(api, x_matrix(slow.name, key_version))
            assert status == 401
        assert slow.accepted == 1


async def test_key_fetches_are_rate_limited_per_requester(make_hs: HsFactory) -> None:
    """Each unknown origin a requester names may cost a fetch: after its burst,
    the requester gets 429 (others do not), and look-ups that start no fetch
    (throttled, or answered from what we know) cost nothing."""
    hs = await make_hs(
        federation=FEDERATION,
        rate_limits={"enabled": True, "actions": {"remote_key_fetch": {"per_second": 0.001, "burst": 2}}},
    )
    keyring = hs.keyring
    assert await keyring.get_verify_keys("10.0.0.1", ["ed25519:a"], requester="192.0.2.1") == {}
    assert await keyring.get_verify_keys("10.0.0.2", ["ed25519:a"], requester="192.0.2.1") == {}
    assert await keyring.get_verify_keys("10.0.0.1", ["ed25519:a"], requester="192.0.2.1") == {}  # throttled
    with pytest.raises(MatrixError) as err:
        await keyring.get_verify_keys("10.0.0.3", ["ed25519:a"], requester="192.0.2.1")
    assert (err.value.status, err.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    assert await keyring.get_verify_keys("10.0.0.3", ["ed25519:a"], requester="192.0.2.2") == {}
    own = keyring.own_key_response()["verify_keys"]
    assert (await keyring.get_verify_keys(SERVER_NAME, list(own), requester="192.0.2.1")).keys() == own.keys()


def test_outbound_ranges_must_parse(tmp_path: Path) -> None:
    config = parse_config(config_dict(tmp_path, outbound={"allowed_ranges": ["10.20.0.0/16", "::1/128"]}))
    assert config.outbound.allowed_ranges == ["10.20.0.0/16", "::1/128"]
    for key, bad in (("allowed_ranges", "10.0.0.1/8"), ("denied_ranges", "not-a-range")):
        with pytest.raises(ConfigError, match=f"outbound.{key}"):
            parse_config(config_dict(tmp_path, outbound={key: [bad]}))
