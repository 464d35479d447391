"""URL previews: off by default, refused for loopback unless the outbound config
allows it (no connection made), OpenGraph data with og:image stored as mxc, and
the caps on size, time, redirects; cached by URL and time bucket."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from PIL import Image

from homeserver.media.preview import parse_html_preview
from tests.conftest import LOOPBACK_OUTBOUND, Api, FakeClock
from tests.federation.counting_listener import CountingListener

PREVIEW = "/_matrix/client/v1/media/preview_url"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


PAGE = """<!doctype html><html><head>
<meta charset="utf-8">
<title>Fallback title</title>
<meta property="og:title" content="Matrix &amp; Accord">
<meta property="og:description" content="A blog post">
<meta property="og:image" content="/img.png">
<meta property="og:image:width" content="40">
</head><body><p>hello</p></body></html>"""


class Site:
    """A plain HTTP server on loopback with the pages the tests preview."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.image = png()
        self.runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        path = request.path
        if path == "/page":
            return web.Response(text=PAGE, content_type="text/html")
        if path == "/img.png":
            return web.Response(body=self.image, content_type="image/png")
        if path == "/plain":
            html = "<html><head><title> Just   a title </title><meta name=description content='Described'></head></html>"
            return web.Response(text=html, content_type="text/html")
        if path == "/big":  # the og tags come after 2 MiB of padding
            html = "<html><head><!--" + "x" * (2 * 1024 * 1024) + '--><meta property="og:title" content="late">'
            return web.Response(text=html, content_type="text/html")
        if path == "/bigimage":
            return web.Response(text='<meta property="og:image" content="/huge.png"><title>t</title>', content_type="text/html")
        if path == "/huge.png":
            return web.Response(body=b"\x89PNG" + b"0" * (3 * 1024 * 1024), content_type="image/png")
        if path == "/slowimage":
            return web.Response(text='<title>quick</title><meta property="og:image" content="/slow">', content_type="text/html")
        if path == "/slow":
            await asyncio.sleep(5)
            return web.Response(text="<title>late</title>", content_type="text/html")
        if path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            raise web.HTTPFound("/page" if n == 0 else f"/redirect/{n - 1}")
        if path == "/error":
            return web.Response(status=500, text="no")
        if path == "/private-redirect":
            raise web.HTTPFound("http://10.1.2.3/secret")
        return web.Response(status=404)

    async def __aenter__(self) -> Site:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with Site() as s:
        yield s


ENABLED = {"max_image_bytes": 1024 * 1024, "timeout_s": 1.0, "max_redirects": 3}


async def user(api: Api) -> str:
    return str((await api.register("alice"))["access_token"])


async def preview(api: Api, token: str, url: str, expect: int = 200, ts: int | None = None) -> Any:
    path = f"{PREVIEW}?url={quote(url, safe='')}" + (f"&ts={ts}" if ts is not None else "")
    return (await api.request("GET", path, token=token, expect=expect))[1]


MakeApi = Callable[..., Awaitable[Api]]


async def test_off_by_default_and_not_advertised(make_api: MakeApi, site: Site) -> None:
    api = await make_api()
    token = await user(api)
    body = await preview(api, token, site.url("/page"), expect=404)
    assert body["errcode"] == "M_UNRECOGNIZED"
    assert site.hits == []
    for path in ("/_matrix/client/versions", "/_matrix/client/v3/capabilities"):
        assert "preview" not in str(await api.get(path, token=token))


async def test_loopback_is_refused_without_a_connection(make_api: MakeApi) -> None:
    api = await make_api(media={"url_preview": {"enabled": True, **ENABLED}})
    token = await user(api)
    async with CountingListener("127.0.0.1") as listener:
        for url in (f"http://{listener.name}/", f"http://localhost:{listener.port}/x"):
            body = await preview(api, token, url, expect=403)
            assert body["errcode"] == "M_FORBIDDEN"
        assert listener.accepted == 0


async def test_only_http_urls_and_auth(make_api: MakeApi) -> None:
    api = await make_api(media={"url_preview": {"enabled": True, **ENABLED}})
    token = await user(api)
    for url in ("file:///etc/passwd", "ftp://example.org/", "javascript:alert(1)", "http://"):
        await preview(api, token, url, expect=400)
    await api.request("GET", PREVIEW, token=token, expect=400)
    await api.request("GET", f"{PREVIEW}?url=http%3A%2F%2Fexample.org%2F", expect=401)


async def allowed_api(make_api: MakeApi, **settings: Any) -> tuple[Api, str]:
    api = await make_api(
        media={"url_preview": {"enabled": True, **ENABLED, **settings}}, outbound=LOOPBACK_OUTBOUND,
    )
    return api, await user(api)


async def test_opengraph_preview_with_image_stored_as_mxc(make_api: MakeApi, site: Site) -> None:
    api, token = await allowed_api(make_api)
    body = await preview(api, token, site.url("/redirect/2"))
    assert body["og:title"] == "Matrix & Accord"
    assert body["og:description"] == "A blog post"
    assert body["og:image:width"] == 40
    assert body["og:image:type"] == "image/png"
    assert body["matrix:image:size"] == len(site.image)
    server_name, media_id = body["og:image"].removeprefix("mxc://").split("/")
    assert server_name == api.hs.config.server_name
    got = await api.hs.media.get_local_file(media_id)
    assert got is not None
    assert await asyncio.to_thread(Path(got[1]).read_bytes) == site.image
    hits = len(site.hits)
    assert await preview(api, token, site.url("/redirect/2")) == body  # cached
    assert len(site.hits) == hits


async def test_title_and_description_fallbacks(make_api: MakeApi, site: Site) -> None:
    api, token = await allowed_api(make_api)
    assert await preview(api, token, site.url("/plain")) == {"og:title": "Just a title", "og:description": "Described"}


async def test_an_image_url_previews_as_the_image(make_api: MakeApi, site: Site) -> None:
    api, token = await allowed_api(make_api)
    body = await preview(api, token, site.url("/img.png"))
    assert body["og:image"].startswith("mxc://") and body["matrix:image:size"] == len(site.image)


async def test_caps_on_size_time_and_redirects(make_api: MakeApi, site: Site) -> None:
    api, token = await allowed_api(make_api, max_page_bytes=64 * 1024)
    assert "og:title" not in await preview(api, token, site.url("/big"))  # beyond what is read
    body = await preview(api, token, site.url("/bigimage"))
    assert body == {"og:title": "t"}  # the image is over max_image_bytes: left out
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await preview(api, token, site.url("/slow"), expect=504))["errcode"] == "M_UNKNOWN"
    assert loop.time() - started < 3
    started = loop.time()
    assert await preview(api, token, site.url("/slowimage")) == {"og:title": "quick"}  # the image ran out of time
    assert loop.time() - started < 3
    await preview(api, token, site.url("/redirect/9"), expect=502)
    await preview(api, token, site.url("/error"), expect=502)
    assert (await preview(api, token, site.url("/private-redirect"), expect=403))["errcode"] == "M_FORBIDDEN"


async def test_cache_by_time_bucket_and_ts(make_api: MakeApi, site: Site) -> None:
    clock = FakeClock()
    api = await make_api(
        clock=clock, media={"url_preview": {"enabled": True, **ENABLED, "cache_ttl_s": 60}},
        outbound=LOOPBACK_OUTBOUND,
    )
    token = await user(api)
    then = clock.time_ms()
    await preview(api, token, site.url("/plain"))
    await preview(api, token, site.url("/plain"))
    assert site.hits.count("/plain") == 1
    clock.advance(120_000)
    await preview(api, token, site.url("/plain"), ts=then)  # the older bucket is still held
    assert site.hits.count("/plain") == 1
    await preview(api, token, site.url("/plain"))  # now: a new bucket, fetched again
    assert site.hits.count("/plain") == 2


def test_parser_is_lenient_and_bounded() -> None:
    html = b"<html><head><title>a<b>c</title><meta property='OG:TITLE' content='x'>" + b"<meta property='og:k%d' content='v'>" * 0
    og = parse_html_preview(html, "text/html; charset=latin-1", "https://e.org/p")
    assert og == {"og:title": "x"}
    many = "".join(f"<meta property='og:k{i}' content='{'v' * 10000}'>" for i in range(500))
    og = parse_html_preview(many.encode(), None, "https://e.org/")
    assert len(og) <= 50 and all(len(v) <= 4096 for v in og.values())
    og = parse_html_preview("<meta property=og:title content='caf\xe9'>".encode("latin-1"), "text/html; charset=iso-8859-1", "https://e.org/")
    assert og["og:title"] == "café"
    assert parse_html_preview(b"\xff\xfe<<<>>>", None, "https://e.org/") == {}


async def test_legacy_path_follows_the_legacy_media_switch(make_api: MakeApi, site: Site) -> None:
    url = quote(site.url("/plain"), safe="")
    api, token = await allowed_api(make_api)
    body = (await api.request("GET", f"/_matrix/media/v3/preview_url?url={url}", token=token, expect=404))[1]
    assert body["errcode"] == "M_UNRECOGNIZED"
    api = await make_api(
        media={"legacy_unauthenticated": True, "url_preview": {"enabled": True, **ENABLED}},
        outbound=LOOPBACK_OUTBOUND,
    )
    token = str((await api.register("bob"))["access_token"])
    body = (await api.request("GET", f"/_matrix/media/v3/preview_url?url={url}", token=token))[1]
    assert body["og:title"] == "Just a title"
    await api.request("GET", f"/_matrix/media/v3/preview_url?url={url}", expect=401)


@pytest.mark.parametrize("bad", [
    {"max_page_bytes": 10}, {"timeout_s": 0}, {"max_redirects": -1}, {"cache_entries": 0},
])
def test_config_is_checked(make_config: Callable[..., Any], bad: dict[str, Any]) -> None:
    from homeserver.config import ConfigError

    with pytest.raises(ConfigError, match="media.url_preview"):
        make_config(media={"url_preview": bad})


async def test_previews_are_rate_limited(make_api: MakeApi, site: Site) -> None:
    api = await make_api(
        media={"url_preview": {"enabled": True, **ENABLED}}, outbound=LOOPBACK_OUTBOUND,
        rate_limits={"enabled": True, "actions": {"url_preview": {"per_second": 0.01, "burst": 2},
                                                   "registration": {"per_second": 10, "burst": 10}}},
    )
    token = await user(api)
    await preview(api, token, site.url("/plain"))
    await preview(api, token, site.url("/page"))
    body = await preview(api, token, site.url("/plain"), expect=429)
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
