"""Other servers' media over authenticated federation media, between real servers:
A's file reaches B byte-identical, once however many ask at a time; over-limit,
policy refusals, unreachable peers, Location redirects and the legacy fallback."""

from __future__ import annotations

import asyncio
import io
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from federation.client import RemoteError
from federation.multipart import (
    media_head,
    media_tail,
    multipart_content_type,
    new_boundary,
    redirect_body,
)
from homeserver.errors import MatrixError
from homeserver.media.thumbnails import ThumbnailParams
from homeserver.server import HomeServer
from tests.federation.counting_listener import CountingListener
from tests.homeserver.federation.servers import Pair, free_port, running_pair
from tests.tls_ca import TestCA

MAX = 10 * 1024 * 1024


def png(width: int = 200, height: int = 150) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, "PNG")
    return out.getvalue()


async def upload(hs: HomeServer, user_id: str, data: bytes, content_type: str, filename: str | None) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    info = await hs.media.upload(user_id, content_type, filename, chunks(), len(data))
    return info.media_id


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def count_serves(hs: HomeServer) -> list[str]:
    """The media IDs A's federation endpoints looked up, in order."""
    seen: list[str] = []
    original = hs.media.await_local

    async def counted(media_id: str, timeout_ms: int) -> Any:
        seen.append(media_id)
        return await original(media_id, timeout_ms)

    hs.media.await_local = counted  # type: ignore[method-assign]
    return seen


@pytest.fixture
async def pair(tmp_path: Path, ca: TestCA) -> AsyncIterator[Pair]:
    async with running_pair(tmp_path, ca) as p:
        yield p


async def test_remote_download_is_byte_identical_and_cached(pair: Pair) -> None:
    data = os.urandom(300_000) + b"\r\n--not-a-boundary\r\n"
    media_id = await upload(pair.a, pair.alice_id, data, "application/pdf", "report 2026.pdf")
    served = count_serves(pair.a)
    got = await pair.b.remote_media.fetch(
        pair.a_spec.name, media_id, thumbnail=None, max_bytes=MAX, timeout_ms=5000
    )
    assert read(got.path) == data
    assert got.info.content_type == "application/pdf"
    assert got.info.filename == "report 2026.pdf"
    assert got.info.origin == pair.a_spec.name and not got.info.is_local
    again = await pair.b.remote_media.fetch(
        pair.a_spec.name, media_id, thumbnail=None, max_bytes=MAX, timeout_ms=5000
    )
    assert read(again.path) == data
    assert served == [media_id]  # the second came from B's cache
    # Quarantined on B: 404 there, and never fetched again (which would lift the quarantine).
    assert await pair.b.media.quarantine(pair.a_spec.name, media_id, "@admin:b")
    with pytest.raises(MatrixError) as e:
        await pair.b.remote_media.fetch(pair.a_spec.name, media_id, thumbnail=None, max_bytes=MAX, timeout_ms=5000)
    assert e.value.status == 404
    assert served == [media_id]


async def test_remote_thumbnail(pair: Pair) -> None:
    media_id = await upload(pair.a, pair.alice_id, png(), "image/png", "pic.png")
    got = await pair.b.remote_media.fetch(
        pair.a_spec.name, media_id, thumbnail=ThumbnailParams(32, 32, "crop"), max_bytes=MAX,
        timeout_ms=5000,
    )
    with Image.open(got.path) as im:
        assert im.size == (32, 32)
    assert got.content_type in ("image/png", "image/jpeg")


def noisy_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


async def test_origin_thumbnail_without_the_original(pair: Pair) -> None:
    """A thumbnail of media not cached here is the origin's own (the original may be far
    larger), kept for next time, and under quarantine like the file."""
    image = noisy_png(400, 300)
    assert len(image) > 300_000
    media_id = await upload(pair.a, pair.alice_id, image, "image/png", "noise.png")
    served = count_serves(pair.a)
    params = ThumbnailParams(32, 32, "crop")
    fetch = pair.b.remote_media.fetch
    got = await fetch(pair.a_spec.name, media_id, thumbnail=params, max_bytes=100_000, timeout_ms=5000)
    with Image.open(got.path) as im:
        assert im.size == (32, 32)
    assert await pair.b.media.get_cached_remote(pair.a_spec.name, media_id) is None  # no original
    again = await fetch(pair.a_spec.name, media_id, thumbnail=params, max_bytes=100_000, timeout_ms=5000)
    assert again.path == got.path and served == [media_id]
    with pytest.raises(MatrixError) as e:  # the original itself is over the limit
        await fetch(pair.a_spec.name, media_id, thumbnail=None, max_bytes=100_000, timeout_ms=5000)
    assert (e.value.status, e.value.errcode) == (502, "M_TOO_LARGE")
    assert await pair.b.media.quarantine(pair.a_spec.name, media_id, "@admin:b")
    with pytest.raises(MatrixError) as e:
        await fetch(pair.a_spec.name, media_id, thumbnail=params, max_bytes=100_000, timeout_ms=5000)
    assert e.value.status == 404
    # Fetched whole later, the original replaces the thumbnail's row (and its quarantine
    # would have to be set again: nothing of the old row is served meanwhile).
    other = await upload(pair.a, pair.alice_id, noisy_png(100, 80), "image/png", None)
    await fetch(pair.a_spec.name, other, thumbnail=params, max_bytes=MAX, timeout_ms=5000)
    full = await fetch(pair.a_spec.name, other, thumbnail=None, max_bytes=MAX, timeout_ms=5000)
    assert full.info.size is not None and full.info.content_type == "image/png"


async def test_concurrent_downloads_make_one_fetch(pair: Pair) -> None:
    data = os.urandom(2_000_000)
    media_id = await upload(pair.a, pair.alice_id, data, "application/octet-stream", None)
    served = count_serves(pair.a)
    results = await asyncio.gather(*(
        pair.b.remote_media.fetch(pair.a_spec.name, media_id, thumbnail=None, max_bytes=MAX, timeout_ms=5000)
        for _ in range(12)
    ))
    assert all(read(r.path) == data for r in results)
    assert served == [media_id]
    assert pair.b.remote_media.fetches == 1


async def test_over_the_limit_is_502_too_large_and_not_cached(pair: Pair) -> None:
    media_id = await upload(pair.a, pair.alice_id, os.urandom(200_000), "application/octet-stream", None)
    with pytest.raises(MatrixError) as e:
        await pair.b.remote_media.fetch(
            pair.a_spec.name, media_id, thumbnail=None, max_bytes=100_000, timeout_ms=5000
        )
    assert (e.value.status, e.value.errcode) == (502, "M_TOO_LARGE")
    assert await pair.b.media.get_cached_remote(pair.a_spec.name, media_id) is None


async def test_unknown_media_is_404(pair: Pair) -> None:
    with pytest.raises(MatrixError) as e:
        await pair.b.remote_media.fetch(
            pair.a_spec.name, "doesNotExist", thumbnail=None, max_bytes=MAX, timeout_ms=1000
        )
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
    for bad in ("../etc", "a b", ""):
        with pytest.raises(MatrixError) as e:
            await pair.b.remote_media.fetch(pair.a_spec.name, bad, thumbnail=None, max_bytes=MAX, timeout_ms=1000)
        assert e.value.status == 404
    fetches = pair.b.remote_media.fetches
    with pytest.raises(MatrixError) as e:  # B's own name: never fetched from itself
        await pair.b.remote_media.fetch(pair.b_spec.name, "abc", thumbnail=None, max_bytes=MAX, timeout_ms=1000)
    assert e.value.status == 404 and pair.b.remote_media.fetches == fetches


async def test_federation_endpoint_needs_a_signature_and_hides_quarantined_media(pair: Pair) -> None:
    media_id = await upload(pair.a, pair.alice_id, b"hello", "text/plain", "hi.txt")
    url = f"https://{pair.a_spec.name}/_matrix/federation/v1/media/download/{media_id}"
    async with pair.session.get(url, ssl=pair.ctx) as r:
        assert r.status == 401
    assert pair.b.federation_client is not None
    async with pair.b.federation_client.stream(
        "GET", pair.a_spec.name, f"/_matrix/federation/v1/media/download/{media_id}"
    ) as resp:
        assert resp.headers["Content-Type"].startswith("multipart/mixed; boundary=")
        body = await resp.read()
    assert b"Content-Type: application/json\r\n\r\n{}\r\n" in body
    assert b"Content-Disposition: inline; filename=\"hi.txt\"" in body
    assert body.endswith(b"\r\nhello\r\n--" + resp.headers["Content-Type"].split("=", 1)[1].encode() + b"--\r\n")
    await pair.a.media.quarantine(pair.a_spec.name, media_id, pair.alice_id)
    with pytest.raises(RemoteError) as e:
        async with pair.b.federation_client.stream(
            "GET", pair.a_spec.name, f"/_matrix/federation/v1/media/download/{media_id}"
        ):
            pass
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
    with pytest.raises(RemoteError) as e:
        async with pair.b.federation_client.stream(
            "GET", pair.a_spec.name, "/_matrix/federation/v1/media/thumbnail/nope?width=32&height=32"
        ):
            pass
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


async def test_policy_refuses_non_partners_without_a_request(tmp_path: Path, ca: TestCA) -> None:
    async with running_pair(tmp_path, ca, b_config={"federation": {"policy": "partners"}}) as p:
        media_id = await upload(p.a, p.alice_id, b"secret", "text/plain", None)
        served = count_serves(p.a)
        with pytest.raises(MatrixError) as e:
            await p.b.remote_media.fetch(p.a_spec.name, media_id, thumbnail=None, max_bytes=MAX, timeout_ms=1000)
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
        assert served == [] and p.b.remote_media.fetches == 0


async def test_unreachable_and_silent_origins(pair: Pair) -> None:
    dead = f"127.0.0.9:{free_port('127.0.0.9')}"
    with pytest.raises(MatrixError) as e:
        await pair.b.remote_media.fetch(dead, "abc", thumbnail=None, max_bytes=MAX, timeout_ms=1000)
    assert (e.value.status, e.value.errcode) == (502, "M_UNKNOWN")
    async with CountingListener("127.0.0.9", hold_s=10) as silent:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(MatrixError) as e:
            await pair.b.remote_media.fetch(silent.name, "abc", thumbnail=None, max_bytes=MAX, timeout_ms=500)
        assert e.value.status == 504
        assert loop.time() - started < 8
        assert silent.accepted == 1


class FakeOrigin:
    """A federation peer that answers media requests its own way: a Location part
    pointing at a file it serves itself, or 404 M_UNRECOGNIZED (a server from before
    authenticated media) with the file on the legacy endpoint."""

    def __init__(self, root: Path, ca: TestCA) -> None:
        self.host = "127.0.0.4"
        self.port = free_port(self.host)
        self.name = f"{self.host}:{self.port}"
        cert = ca.issue(self.host, name=f"fake-{self.port}")
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(cert.cert_path, cert.key_path)
        self.files = {"redirected": os.urandom(70_000), "legacy": os.urandom(90_000), "plain": b"plain bytes"}
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None

    async def federation(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        assert request.headers["Authorization"].startswith("X-Matrix ")
        media_id = request.match_info["media_id"]
        boundary = new_boundary()
        ctype = {"Content-Type": multipart_content_type(boundary)}
        if media_id == "redirected":
            location = f"https://{self.name}/files/{media_id}"
            return web.Response(body=redirect_body(boundary, {}, location), headers=ctype)
        if media_id == "private":  # the guard must refuse this like any other address
            return web.Response(body=redirect_body(boundary, {}, "https://10.20.30.40/x"), headers=ctype)
        if media_id == "plain":
            body = media_head(boundary, {}, content_type="text/plain") + self.files["plain"] + media_tail(boundary)
            return web.Response(body=body, headers=ctype)
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "Unrecognized"}, status=404)

    async def legacy(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        assert request.query["allow_remote"] == "false"
        return web.Response(body=self.files[request.match_info["media_id"]], content_type="image/x-test",
                            headers={"Content-Disposition": "attachment; filename*=utf-8''caf%C3%A9.bin"})

    async def legacy_thumbnail(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        assert request.query["allow_remote"] == "false" and request.query["width"] == "32"
        return web.Response(body=png(32, 32), content_type="image/png")

    async def file(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        return web.Response(body=self.files[request.match_info["media_id"]], content_type="application/zip")

    async def __aenter__(self) -> FakeOrigin:
        app = web.Application()
        app.router.add_get("/_matrix/federation/v1/media/download/{media_id}", self.federation)
        app.router.add_get("/_matrix/media/v3/download/{server}/{media_id}", self.legacy)
        app.router.add_get("/files/{media_id}", self.file)
        app.router.add_get("/_matrix/federation/v1/media/thumbnail/{media_id}", self.federation)
        app.router.add_get("/_matrix/media/v3/thumbnail/{server}/{media_id}", self.legacy_thumbnail)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_location_redirect_and_legacy_fallback(pair: Pair, tmp_path: Path) -> None:
    async with FakeOrigin(tmp_path, pair.ca) as fake:
        fetch = pair.b.remote_media.fetch
        got = await fetch(fake.name, "redirected", thumbnail=None, max_bytes=MAX, timeout_ms=5000)
        assert read(got.path) == fake.files["redirected"]
        assert got.info.content_type == "application/zip"
        got = await fetch(fake.name, "legacy", thumbnail=None, max_bytes=MAX, timeout_ms=5000)
        assert read(got.path) == fake.files["legacy"]
        assert got.info.filename == "café.bin"
        got = await fetch(fake.name, "plain", thumbnail=None, max_bytes=MAX, timeout_ms=5000)
        assert read(got.path) == b"plain bytes"
        with pytest.raises(MatrixError) as e:
            await fetch(fake.name, "private", thumbnail=None, max_bytes=MAX, timeout_ms=5000)
        assert e.value.status == 502
        assert await pair.b.media.get_cached_remote(fake.name, "private") is None
        thumb = await fetch(fake.name, "thumbonly", thumbnail=ThumbnailParams(32, 32, "crop"), max_bytes=MAX, timeout_ms=5000)
        assert read(thumb.path) == png(32, 32) and thumb.content_type == "image/png"
        assert fake.requests[-2:] == [
            "/_matrix/federation/v1/media/thumbnail/thumbonly",
            f"/_matrix/media/v3/thumbnail/{fake.name}/thumbonly",
        ]
        del fake.requests[-2:]
        assert fake.requests == [
            "/_matrix/federation/v1/media/download/redirected",
            "/files/redirected",
            "/_matrix/federation/v1/media/download/legacy",
            f"/_matrix/media/v3/download/{fake.name}/legacy",
            "/_matrix/federation/v1/media/download/plain",
            "/_matrix/federation/v1/media/download/private",
        ]


async def test_users_download_through_the_client_api(pair: Pair) -> None:
    """alice uploads on A; bob downloads it and a thumbnail from B, as clients do."""
    data = png(640, 480)
    headers = {"Authorization": f"Bearer {pair.alice.token}", "Content-Type": "image/png"}
    async with pair.session.post(
        f"{pair.alice.origin}/_matrix/media/v3/upload?filename=photo.png", data=data, headers=headers, ssl=pair.ctx
    ) as r:
        assert r.status == 200, await r.text()
        uri = (await r.json())["content_uri"]
    server_name, media_id = uri.removeprefix("mxc://").split("/")
    assert server_name == pair.a_spec.name
    served = count_serves(pair.a)
    bob = {"Authorization": f"Bearer {pair.bob.token}"}
    base = f"{pair.bob.origin}/_matrix/client/v1/media"
    async with pair.session.get(f"{base}/download/{server_name}/{media_id}", headers=bob, ssl=pair.ctx) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"] == "image/png"
        assert "photo.png" in r.headers["Content-Disposition"]
        assert await r.read() == data
    async with pair.session.get(
        f"{base}/thumbnail/{server_name}/{media_id}?width=96&height=96&method=crop", headers=bob, ssl=pair.ctx
    ) as r:
        assert r.status == 200, await r.text()
        with Image.open(io.BytesIO(await r.read())) as im:
            assert im.size == (96, 96)
    async with pair.session.get(f"{base}/download/{server_name}/nothingHere", headers=bob, ssl=pair.ctx) as r:
        assert r.status == 404
        assert (await r.json())["errcode"] == "M_NOT_FOUND"
    assert served == [media_id, "nothingHere"]  # the thumbnail came from B's cached original


async def test_no_federation_no_remote_media(make_hs: Any) -> None:
    hs = await make_hs()  # federation.enabled is false in test configs
    with pytest.raises(MatrixError) as e:
        await hs.remote_media.fetch("other.example", "abc", thumbnail=None, max_bytes=MAX, timeout_ms=1000)
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")


async def test_not_yet_uploaded_passes_through(pair: Pair) -> None:
    pending = await pair.a.media.create_pending(pair.alice_id)
    with pytest.raises(MatrixError) as e:
        await pair.b.remote_media.fetch(
            pair.a_spec.name, pending.media_id, thumbnail=None, max_bytes=MAX, timeout_ms=300
        )
    assert (e.value.status, e.value.errcode) == (504, "M_NOT_YET_UPLOADED")
