"""Two (or three) real Accord servers on 127.0.0.x with TLS from a test CA:
key exchange, X-Matrix authentication, notary queries, certificate checks."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from federation.client import (
    ConnectError,
    FederationClient,
    RemoteError,
    make_ssl_context,
)
from federation.discovery import ServerResolver
from federation.events.signing import generate_signing_key
from federation.request_auth import sign_request
from federation.server_keys import parse_notary_response, parse_server_keys
from tests.homeserver.federation.servers import ServerSpec, loopback_guard, running_server
from tests.tls_ca import TestCA

# A signed-only path no route serves, so a verified request gets 404 M_UNRECOGNIZED.
AUTHED_PATH = "/_matrix/federation/v1/no_such_endpoint?user_id=%40a%3Ax"


def _client(spec: ServerSpec, ca: TestCA, signing_key=None) -> FederationClient:  # noqa: ANN001
    ctx = make_ssl_context(ca_bundle_path=str(ca.ca_path))
    return FederationClient(spec.name, signing_key or spec.signing_key,
                            resolver=ServerResolver(ssl_context=ctx, guard=loopback_guard()),
                            ssl_context=ctx, guard=loopback_guard())


async def test_two_servers_exchange_keys_and_authenticate(tmp_path: Path, ca: TestCA) -> None:
    a, b = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(a, ca) as hs_a, running_server(b, ca) as hs_b:
        # A fetches B's keys over verified TLS, directly.
        keys = await hs_a.keyring.get_verify_keys(b.name, [b.key_id])
        assert keys[b.key_id].encode() == b.signing_key.verify_key.encode()
        stored = await hs_a.server_keys.get_keys(b.name)
        assert [(k.key_id, k.source) for k in stored] == [(b.key_id, b.name)]

        # The published response is what the spec describes, self-signed.
        raw = await hs_a.federation_client.get_json(b.name, "/_matrix/key/v2/server", signed=False)
        parsed = parse_server_keys(raw, expected_server_name=b.name, now_ms=hs_a.clock.time_ms())
        assert set(parsed.verify_keys) == {b.key_id}
        assert raw["old_verify_keys"] == {}
        deprecated = await hs_a.federation_client.get_json(
            b.name, f"/_matrix/key/v2/server/{b.key_id}", signed=False
        )
        assert deprecated["verify_keys"] == raw["verify_keys"]

        # A signed request to B's version endpoint succeeds.
        version = await hs_a.federation_client.get_json(b.name, "/_matrix/federation/v1/version")
        assert version["server"]["name"] == "Accord"

        # On an authenticated route, B verifies A's signature (fetching A's keys)
        # and only then routes: the path is unknown, so 404, not 401.
        with pytest.raises(RemoteError) as err:
            await hs_a.federation_client.get_json(b.name, AUTHED_PATH)
        assert (err.value.status, err.value.errcode) == (404, "M_UNRECOGNIZED")
        assert a.key_id in await hs_b.keyring.get_verify_keys(a.name, [a.key_id])

        # Unsigned: 401 on authenticated routes, allowed on /version (public per spec).
        with pytest.raises(RemoteError) as err:
            await hs_a.federation_client.get_json(b.name, AUTHED_PATH, signed=False)
        assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")
        await hs_a.federation_client.get_json(b.name, "/_matrix/federation/v1/version", signed=False)

        # Signed by a key that is not A's: 401, on /version too.
        impostor = _client(a, ca, generate_signing_key(a.signing_key.version))
        try:
            for path in (AUTHED_PATH, "/_matrix/federation/v1/version"):
                with pytest.raises(RemoteError) as err:
                    await impostor.get_json(b.name, path)
                assert (err.value.status, err.value.errcode) == (401, "M_UNAUTHORIZED")
        finally:
            await impostor.close()


async def test_rejections_of_raw_requests(tmp_path: Path, ca: TestCA) -> None:
    """Hand-built headers: wrong destination, tampered URI, wrong origin, malformed."""
    a, b = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(a, ca), running_server(b, ca):
        ctx = make_ssl_context(ca_bundle_path=str(ca.ca_path))
        url = f"https://{b.name}"

        def header(uri: str, destination: str = b.name, origin: str = a.name) -> str:
            return sign_request(method="GET", uri=uri, origin=origin, destination=destination,
                                signing_key=a.signing_key)

        cases = {
            "good": header(AUTHED_PATH),
            "wrong destination": header(AUTHED_PATH, destination="127.0.0.9:1"),
            "tampered uri": header(AUTHED_PATH + "x"),
            "wrong origin": header(AUTHED_PATH, origin="127.0.0.3:1").replace(
                'origin="127.0.0.3:1"', f'origin="{b.name}"'),
            "malformed": "X-Matrix origin=",
            "other scheme": "Bearer token",
        }
        async with aiohttp.ClientSession() as s:
            for case, auth in cases.items():
                async with s.get(URL(url + AUTHED_PATH, encoded=True), headers={"Authorization": auth}, ssl=ctx) as r:
                    body = await r.json()
                    expected = (404, "M_UNRECOGNIZED") if case == "good" else (401, "M_UNAUTHORIZED")
                    assert (r.status, body["errcode"]) == expected, case


async def test_notary_query_through_the_second_server(tmp_path: Path, ca: TestCA) -> None:
    a, b = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    c = ServerSpec(tmp_path, "127.0.0.4")
    dead_port = ServerSpec(tmp_path / "dead", "127.0.0.5").port
    # A cannot reach C (static host pointing at a closed port) but trusts B as notary.
    async with (
        running_server(c, ca),
        running_server(b, ca),
        running_server(a, ca, trusted_key_servers=[b.as_notary()],
                       static_hosts={c.name: f"127.0.0.5:{dead_port}"}) as hs_a,
    ):
        # The raw notary API: POST and GET forms, co-signed by B.
        client = hs_a.federation_client
        resp = await client.post_json(
            b.name, "/_matrix/key/v2/query",
            {"server_keys": {c.name: {c.key_id: {"minimum_valid_until_ts": 0}}, b.name: {}}},
            signed=False,
        )
        got = parse_notary_response(
            resp, notary_name=b.name, notary_keys={b.key_id: b.signing_key.verify_key},
            now_ms=hs_a.clock.time_ms(),
        )
        assert sorted(k.server_name for k in got) == sorted([b.name, c.name])
        resp = await client.get_json(b.name, f"/_matrix/key/v2/query/{c.name}", signed=False)
        assert [k["server_name"] for k in resp["server_keys"]] == [c.name]
        assert set(resp["server_keys"][0]["signatures"]) == {b.name, c.name}
        # An unknown, unreachable server: an empty answer, not an error.
        resp = await client.get_json(b.name, "/_matrix/key/v2/query/127.0.0.5:1", signed=False)
        assert resp == {"server_keys": []}

        # The key ring falls back to the notary when C cannot be reached directly.
        keys = await hs_a.keyring.get_verify_keys(c.name, [c.key_id])
        assert keys[c.key_id].encode() == c.signing_key.verify_key.encode()
        assert [k.source for k in await hs_a.server_keys.get_keys(c.name)] == [b.name]


async def test_notary_query_validation(tmp_path: Path, ca: TestCA) -> None:
    b = ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(b, ca):
        ctx = make_ssl_context(ca_bundle_path=str(ca.ca_path))
        async with aiohttp.ClientSession() as s:
            url = f"https://{b.name}/_matrix/key/v2/query"
            for body, errcode in [({}, "M_MISSING_PARAM"), ({"server_keys": []}, "M_BAD_JSON"),
                                  ({"server_keys": {"x.example": {"k": 5}}}, "M_BAD_JSON")]:
                async with s.post(url, json=body, ssl=ctx) as r:
                    assert (r.status, (await r.json())["errcode"]) == (400, errcode)
            async with s.post(url, json={"server_keys": {}}, ssl=ctx) as r:
                assert await r.json() == {"server_keys": []}


async def test_certificate_verification_fails_without_the_ca(tmp_path: Path, ca: TestCA) -> None:
    a, b = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with running_server(a, ca, trust_ca=False) as hs_a, running_server(b, ca):
        with pytest.raises(ConnectError, match="(?i)certificate"):
            await hs_a.federation_client.get_json(b.name, "/_matrix/federation/v1/version")
        assert await hs_a.keyring.get_verify_keys(b.name, [b.key_id]) == {}
