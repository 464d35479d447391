"""Listeners: each serves exactly the APIs configured for it, over TLS where asked."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import aiohttp
import pytest

from homeserver.config import parse_config
from homeserver.signing_key import write_self_signed_cert
from tests.conftest import config_dict, running_hs


async def test_split_listeners_and_tls(tmp_path: Path) -> None:
    data = tmp_path / "hs"
    data.mkdir()
    write_self_signed_cert(str(data / "tls.crt"), str(data / "tls.key"), "127.0.0.1")
    config = parse_config(
        config_dict(
            data,
            listeners=[
                {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": ["client"]},
                {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": ["admin"], "tls": True,
                 "tls_certificate_path": "tls.crt", "tls_private_key_path": "tls.key"},
            ],
        )
    )
    async with running_hs(config) as hs:
        await hs.start_listeners()
        (_, _, client_port), (_, _, admin_port) = hs.bound
        client_url = f"http://127.0.0.1:{client_port}"
        admin_url = f"https://127.0.0.1:{admin_port}"
        ctx = ssl.create_default_context(cafile=str(data / "tls.crt"))
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{client_url}/_matrix/client/versions") as r:
                assert r.status == 200
            async with s.get(f"{client_url}/_synapse/admin/v1/register") as r:
                assert r.status == 404
                assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
            # The TLS listener verifies against its own self-signed certificate.
            async with s.get(f"{admin_url}/_synapse/admin/v1/register", ssl=ctx) as r:
                assert r.status == 200
                assert len((await r.json())["nonce"]) == 64
            async with s.get(f"{admin_url}/_matrix/client/versions", ssl=ctx) as r:
                assert r.status == 404


async def test_metrics_count_requests_by_route(make_api) -> None:  # noqa: ANN001
    api = await make_api()
    await api.get("/_matrix/client/versions")
    await api.request("GET", "profile/@nobody:test.local", expect=404)
    async with api.client.get("/metrics") as r:
        text = await r.text()
        assert r.status == 200
    assert 'accord_http_requests_total{method="GET",route="/_matrix/client/versions",status="200"} 1' in text
    assert 'route="/_matrix/client/v3/profile/{user_id}",status="404"} 1' in text
    rss = next(line for line in text.splitlines() if line.startswith("process_resident_memory_bytes"))
    assert int(rss.split()[1]) > 1_000_000


async def test_a_listener_naming_media_serves_the_media_api(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `media` beside `client` (as generated configs have it): served once, no warning.
    config = parse_config(
        config_dict(tmp_path, listeners=[
            {"port": 0, "bind_addresses": ["127.0.0.1"], "resources": ["client", "media"]},
        ])
    )
    async with running_hs(config) as hs:
        with caplog.at_level(logging.WARNING, logger="homeserver.server"):
            await hs.start_listeners()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert not any("'media'" in w or "'client'" in w for w in warnings), warnings
        (_, _, port), = hs.bound
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/_matrix/client/versions") as r:
                assert r.status == 200
            async with s.get(f"http://127.0.0.1:{port}/_matrix/media/v3/config") as r:
                assert r.status == 401  # served: it wants a token
