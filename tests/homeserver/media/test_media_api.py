"""The content repository over HTTP against a real server and real files: upload,
async upload, download, config, the legacy endpoints' freeze, headers, and every
error code the spec gives them."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from tests.conftest import Api, ClientFactory, FakeClock
from tests.homeserver.media.helpers import UPLOAD, V1, fetch, png, upload, upload_ok

CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
    " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)


async def _user(api: Api, name: str = "alice") -> str:
    return (await api.register(name))["access_token"]


async def test_upload_then_download_is_byte_identical_with_the_media_headers(api: Api) -> None:
    token = await _user(api)
    data = os.urandom(300_000)
    server, media_id = await upload_ok(api, token, data, "image/png", "photo.png")
    assert server == "test.local" and len(media_id) == 24
    status, headers, body = await fetch(api, f"{V1}/download/{server}/{media_id}", token)
    assert status == 200 and body == data
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == "inline; filename=\"photo.png\"; filename*=utf-8''photo.png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert headers["Content-Security-Policy"] == CSP
    assert headers["Access-Control-Allow-Origin"] == "*"
    # The file on disk: sharded by the ID, with the sha256 recorded.
    info = await api.hs.media.store.get(server, media_id)
    assert info is not None and info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    path = Path(api.hs.config.data_dir) / "media" / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
    assert path.read_bytes() == data


async def test_download_with_another_filename_and_access_token_in_the_query(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, b"hello", "text/plain", "a.txt")
    status, headers, body = await fetch(
        api, f"{V1}/download/{server}/{media_id}/r%C3%A9sum%C3%A9%20%22x%22.txt",
        params={"access_token": token},
    )
    assert status == 200 and body == b"hello"
    assert headers["Content-Disposition"] == "inline; filename*=utf-8''r%C3%A9sum%C3%A9%20%22x%22.txt"


async def test_downloads_need_a_token(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, b"secret")
    for path in (f"{V1}/download/{server}/{media_id}", f"{V1}/thumbnail/{server}/{media_id}?width=1&height=1",
                 f"{V1}/config"):
        status, _, body = await fetch(api, path)
        assert status == 401 and b"M_MISSING_TOKEN" in body
    status, _, body = await fetch(api, f"{V1}/download/{server}/{media_id}", "not-a-token")
    assert status == 401 and b"M_UNKNOWN_TOKEN" in body
    async with api.client.post(UPLOAD, data=b"x") as resp:
        assert resp.status == 401


async def test_guests_may_download_but_not_upload(make_api: ClientFactory) -> None:
    """v1.12 (MSC4189): guests read media through the authenticated endpoints; uploading
    stays for registered users."""
    api = await make_api(registration={"policy": "open", "allow_guests": True})
    token = await _user(api)
    server, media_id = await upload_ok(api, token, png(8, 8), "image/png", "dot.png")
    guest = (await api.post("register?kind=guest", {}))["access_token"]
    status, _, body = await fetch(api, f"{V1}/download/{server}/{media_id}", guest)
    assert status == 200 and body == png(8, 8)
    status, headers, _ = await fetch(api, f"{V1}/thumbnail/{server}/{media_id}?width=4&height=4", guest)
    assert status == 200 and headers["Content-Type"].startswith("image/")
    async with api.client.post(UPLOAD, data=b"x", headers={"Authorization": f"Bearer {guest}"}) as resp:
        assert resp.status == 403 and (await resp.json())["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


async def test_html_and_svg_are_attachments_under_the_sandbox(api: Api) -> None:
    token = await _user(api)
    html = b"<html><script>alert(document.cookie)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for data, ctype, name in ((html, "text/html", "x.html"), (svg, "image/svg+xml", "x.svg"),
                              (html, "application/xhtml+xml", None)):
        server, media_id = await upload_ok(api, token, data, ctype, name)
        status, headers, body = await fetch(api, f"{V1}/download/{server}/{media_id}", token)
        assert status == 200 and body == data
        assert headers["Content-Type"] == ctype
        assert headers["Content-Disposition"].startswith("attachment")
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        status, _, body = await fetch(api, f"{V1}/thumbnail/{server}/{media_id}?width=32&height=32", token)
        assert status == 400 and b"M_UNKNOWN" in body  # SVG and HTML are never decoded


async def test_config_advertises_the_upload_size(make_api: ClientFactory) -> None:
    api = await make_api(media={"max_upload_size": 12345})
    token = await _user(api)
    for path in (f"{V1}/config", "/_matrix/media/v3/config"):
        status, _, body = await fetch(api, path, token)
        assert status == 200 and body == b'{"m.upload.size":12345}'


async def test_over_the_max_size_is_413_by_length_and_by_count(make_api: ClientFactory) -> None:
    api = await make_api(media={"max_upload_size": 1000})
    token = await _user(api)
    status, body = await upload(api, token, b"x" * 1001, expect=413)
    assert body["errcode"] == "M_TOO_LARGE"

    async def chunked():  # no Content-Length: the running count decides
        for _ in range(5):
            yield b"y" * 300

    async with api.client.post(UPLOAD, data=chunked(), headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 413 and (await resp.json())["errcode"] == "M_TOO_LARGE"
    await upload(api, token, b"x" * 1000)
    leftovers = [n for _, _, files in os.walk(Path(api.hs.config.data_dir) / "media") for n in files
                 if n.startswith(".tmp")]
    assert leftovers == []


async def test_quota_is_403(make_api: ClientFactory) -> None:
    api = await make_api(media={"user_quota_bytes": 2500})
    token = await _user(api)
    await upload(api, token, b"a" * 1000)
    await upload(api, token, b"b" * 1000)
    _, body = await upload(api, token, b"c" * 1000, expect=403)
    assert body["errcode"] == "M_FORBIDDEN"
    other = await _user(api, "bob")
    await upload(api, other, b"d" * 1000)  # per user


async def test_upload_is_rate_limited(make_api: ClientFactory) -> None:
    api = await make_api(rate_limits={"enabled": True, "actions": {"media_upload": {"per_second": 0.01, "burst": 2}}})
    token = await _user(api)
    await upload(api, token, b"1")
    await upload(api, token, b"2")
    status, body = await upload(api, token, b"3", expect=429)
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0


async def test_async_upload(make_api: ClientFactory) -> None:
    clock = FakeClock()
    api = await make_api(clock=clock, media={"max_pending_uploads": 3})
    alice, bob = await _user(api), await _user(api, "bob")
    created = await api.post("/_matrix/media/v1/create", {}, token=alice)
    assert created["unused_expires_at"] == clock.now_ms + 24 * 3600 * 1000
    server, media_id = created["content_uri"].removeprefix("mxc://").split("/")
    put = f"/_matrix/media/v3/upload/{server}/{media_id}"
    # Not there yet: 504 after the wait.
    status, _, body = await fetch(api, f"{V1}/download/{server}/{media_id}", alice, {"timeout_ms": "50"})
    assert status == 504 and b"M_NOT_YET_UPLOADED" in body
    status, body = await api.request("PUT", put, data=b"x", token=bob, expect=403)
    assert body["errcode"] == "M_FORBIDDEN"
    # A download waiting while the content arrives gets it.
    waiting = asyncio.ensure_future(fetch(api, f"{V1}/download/{server}/{media_id}", bob, {"timeout_ms": "5000"}))
    await asyncio.sleep(0.1)
    await api.request("PUT", put, data=b"content!", token=alice,
                      headers={"Content-Type": "text/plain"}, expect=200)
    status, headers, body = await waiting
    assert status == 200 and body == b"content!" and headers["Content-Type"] == "text/plain"
    status, body = await api.request("PUT", put, data=b"again", token=alice, expect=409)
    assert body["errcode"] == "M_CANNOT_OVERWRITE_MEDIA"
    status, body = await api.request("PUT", f"/_matrix/media/v3/upload/{server}/nosuchmediaid", data=b"x",
                                      token=alice, expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await api.request("PUT", f"/_matrix/media/v3/upload/other.server/{media_id}", data=b"x",
                                     token=alice, expect=404)
    # Unused IDs lapse.
    lapsing = await api.post("/_matrix/media/v1/create", {}, token=alice)
    lapsing_id = lapsing["content_uri"].rsplit("/", 1)[1]
    clock.advance(24 * 3600 * 1000 + 1)
    await api.request("PUT", f"/_matrix/media/v3/upload/{server}/{lapsing_id}", data=b"x", token=alice, expect=404)
    status, _, _ = await fetch(api, f"{V1}/download/{server}/{lapsing_id}", alice)
    assert status == 404
    cleaned = await api.hs.media.cleanup_once()
    assert cleaned["lapsed_ids"] == 1
    assert await api.hs.media.store.get(server, lapsing_id) is None
    # Pending IDs per user are limited.
    for _ in range(3):
        await api.post("/_matrix/media/v1/create", {}, token=alice)
    status, body = await api.request("POST", "/_matrix/media/v1/create", {}, token=alice, expect=429)
    assert body["errcode"] == "M_LIMIT_EXCEEDED"


async def test_hostile_media_ids_and_file_names(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, b"ok", "text/plain")
    secret = Path(api.hs.config.data_dir) / "signing.key"
    assert secret.exists()
    for bad in ("..", "%2E%2E", "..%2F..%2Fsigning.key", "a%2Fb", "a%00b", "a.b", "%2F", "a%5Cb", "x" * 256):
        for path in (f"{V1}/download/{server}/{bad}", f"{V1}/thumbnail/{server}/{bad}?width=1&height=1",
                     f"{V1}/download/{bad}/{media_id}"):
            status, _, body = await fetch(api, path, token)
            assert status == 404, (path, status, body)
            assert b"signing" not in body
    status, _, body = await fetch(api, f"{V1}/download/{server}/{media_id}/..%2F..%2Fsigning.key", token)
    assert status == 200 and body == b"ok"  # the name is only a header value
    status, _, body = await fetch(api, f"{V1}/download/{server}/{media_id}/a%00b", token)
    assert status == 400 and b"M_INVALID_PARAM" in body
    status, body = await upload(api, token, b"x", filename="bad\r\nname", expect=400)
    status, body = await upload(api, token, b"x", filename="nul\x00", expect=400)


async def test_unknown_quarantined_and_remote_media_are_404(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, b"data")
    status, _, body = await fetch(api, f"{V1}/download/{server}/AAAAAAAAAAAAAAAAAAAAAAAA", token)
    assert status == 404 and b"M_NOT_FOUND" in body
    status, _, body = await fetch(api, f"{V1}/download/elsewhere.example/{media_id}", token)
    assert status == 404 and b"M_NOT_FOUND" in body  # no remote media fetcher in this server
    await api.hs.media.quarantine(server, media_id, "@admin:test.local")
    status, _, _ = await fetch(api, f"{V1}/download/{server}/{media_id}", token)
    assert status == 404


async def test_legacy_endpoints_are_frozen_by_default(make_api: ClientFactory) -> None:
    api = await make_api()
    token = await _user(api)
    server, media_id = await upload_ok(api, token, png(10, 10), "image/png")
    for path in (f"/_matrix/media/v3/download/{server}/{media_id}",
                 f"/_matrix/media/v3/thumbnail/{server}/{media_id}?width=5&height=5"):
        status, _, body = await fetch(api, path, token)
        assert status == 404 and b"M_NOT_FOUND" in body


async def test_legacy_endpoints_serve_media_from_before_the_freeze(make_api: ClientFactory) -> None:
    clock = FakeClock()
    api = await make_api(clock=clock, media={"legacy_unauthenticated": True, "legacy_freeze_ts": clock.now_ms + 1000})
    token = await _user(api)
    server, old = await upload_ok(api, token, png(10, 10), "image/png")
    clock.advance(2000)
    _, new = await upload_ok(api, token, b"new")
    status, headers, body = await fetch(api, f"/_matrix/media/v3/download/{server}/{old}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    status, _, _ = await fetch(api, f"/_matrix/media/r0/thumbnail/{server}/{old}?width=5&height=5&method=crop")
    assert status == 200
    status, _, body = await fetch(api, f"/_matrix/media/v3/download/{server}/{new}")
    assert status == 404 and b"M_NOT_FOUND" in body
    status, _, _ = await fetch(api, f"{V1}/download/{server}/{new}", token)
    assert status == 200


async def test_413_comes_before_the_body_is_sent(make_api: ClientFactory) -> None:
    api = await make_api(media={"max_upload_size": 10 * 1024 * 1024})
    token = await _user(api)
    host, port = api.client.server.host, api.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (f"POST {UPLOAD} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {1024 ** 3}\r\n\r\n")
        writer.write(head.encode() + b"z" * 8192)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.split()[1] == b"413", status_line
        headers = {}
        while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
            k, _, v = line.decode().partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        assert b"M_TOO_LARGE" in body
    finally:
        writer.close()


async def test_an_interrupted_upload_leaves_nothing(api: Api) -> None:
    token = await _user(api)
    host, port = api.client.server.host, api.client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST {UPLOAD} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {1024 * 1024}\r\n\r\n")
    writer.write(head.encode() + b"q" * 200_000)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    media_dir = Path(api.hs.config.data_dir) / "media"
    for _ in range(50):
        await asyncio.sleep(0.1)
        if not [p for p in media_dir.rglob(".tmp-*")]:
            break
    assert [p for p in media_dir.rglob("*") if p.is_file()] == []
    assert (await api.hs.media.store.used_bytes("@alice:test.local")) == 0


async def test_a_media_only_listener_serves_the_media_api(make_hs, aiohttp_client) -> None:  # noqa: ANN001
    hs = await make_hs()
    client = await aiohttp_client(hs.build_app(["media"]))
    async with client.get(f"{V1}/config") as resp:
        assert resp.status == 401  # served: it wants a token
    async with client.post(UPLOAD, data=b"x") as resp:
        assert resp.status == 401
    async with client.get("/_matrix/client/versions") as resp:
        assert resp.status == 404
