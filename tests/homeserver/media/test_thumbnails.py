"""Thumbnails: the size rules (unit) and the endpoint against real images on disk,
including EXIF orientation, animation, and a decompression bomb."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from homeserver.media.headers import content_disposition, media_headers
from homeserver.media.thumbnails import (
    ThumbnailError,
    ThumbnailParams,
    ThumbnailSize,
    choose_size,
    make_thumbnail,
    target_dimensions,
)
from tests.conftest import Api, ClientFactory
from tests.homeserver.media.helpers import V1, fetch, gif, image_size, jpeg, png, upload_ok

DEFAULTS = [ThumbnailSize(32, 32, "crop"), ThumbnailSize(96, 96, "crop"), ThumbnailSize(320, 240, "scale"),
            ThumbnailSize(640, 480, "scale"), ThumbnailSize(800, 600, "scale")]


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header declaring huge dimensions over a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\x00" * width  # grey, one byte a pixel
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()  # only a few rows: truncated
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_choose_the_smallest_stored_size_at_least_as_large() -> None:
    assert choose_size(ThumbnailParams(30, 30, "crop"), DEFAULTS) == ThumbnailSize(32, 32, "crop")
    assert choose_size(ThumbnailParams(50, 50, "crop"), DEFAULTS) == ThumbnailSize(96, 96, "crop")
    assert choose_size(ThumbnailParams(300, 200, "scale"), DEFAULTS) == ThumbnailSize(320, 240, "scale")
    assert choose_size(ThumbnailParams(321, 100, "scale"), DEFAULTS) == ThumbnailSize(640, 480, "scale")
    # crop keeps the requested aspect ratio: no stored 2:1 size, made on demand
    assert choose_size(ThumbnailParams(64, 32, "crop"), DEFAULTS) == ThumbnailSize(64, 32, "crop")
    assert choose_size(ThumbnailParams(1000, 1000, "scale"), DEFAULTS) == ThumbnailSize(1000, 1000, "scale")


def test_never_upscale() -> None:
    assert target_dimensions(100, 50, 200, 200, "scale") is None
    assert target_dimensions(100, 50, 80, 80, "crop") is None
    assert target_dimensions(1000, 500, 320, 240, "scale") == (320, 160)
    assert target_dimensions(1000, 500, 96, 96, "crop") == (96, 96)


def test_headers_inline_only_for_safe_types() -> None:
    assert content_disposition("image/png", None) == "inline"
    assert content_disposition("image/svg+xml", "a.svg").startswith("attachment;")
    assert content_disposition("text/html; charset=utf-8", None) == "attachment"
    assert content_disposition("TEXT/PLAIN", 'a "b".txt') == "inline; filename*=utf-8''a%20%22b%22.txt"
    assert content_disposition("application/pdf", "\u00e9t\u00e9.pdf") == "attachment; filename*=utf-8''%C3%A9t%C3%A9.pdf"
    headers = media_headers("bad\r\ntype", "x")
    assert headers["Content-Type"] == "application/octet-stream"


def test_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    src = tmp_path / "bomb.png"
    src.write_bytes(bomb_png())
    assert src.stat().st_size < 50_000
    with pytest.raises(ThumbnailError) as e:
        make_thumbnail(str(src), "image/png", ThumbnailSize(32, 32, "crop"), False, str(tmp_path / "out"),
                       max_pixels=32_000_000)
    assert e.value.too_large


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    src = tmp_path / "rotated.jpg"
    src.write_bytes(jpeg(400, 200, orientation=6))  # stored landscape, shown portrait
    out = tmp_path / "out"
    result = make_thumbnail(str(src), "image/jpeg", ThumbnailSize(100, 100, "scale"), False, str(out),
                            max_pixels=10**8)
    assert (result.width, result.height) == (50, 100)
    assert Image.open(out).size == (50, 100)


async def _user(api: Api) -> str:
    return (await api.register("alice"))["access_token"]


async def test_thumbnails_of_the_sizes_the_method_implies(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, jpeg(1000, 700), "image/jpeg", "big.jpg")
    url = f"{V1}/thumbnail/{server}/{media_id}"
    for params, size in (
        ({"width": "32", "height": "32", "method": "crop"}, (32, 32)),
        ({"width": "50", "height": "50", "method": "crop"}, (96, 96)),
        ({"width": "300", "height": "200", "method": "scale"}, (320, 224)),
        ({"width": "640", "height": "480"}, (640, 448)),
        ({"width": "90", "height": "45", "method": "crop"}, (90, 45)),  # on demand
    ):
        status, headers, body = await fetch(api, url, token, params)
        assert status == 200, body
        assert headers["Content-Type"] == "image/jpeg"
        assert headers["Content-Disposition"] == "inline"
        assert headers["Content-Security-Policy"].startswith("sandbox;")
        assert image_size(body) == size, params
    # Larger than the original: the original itself.
    status, _, body = await fetch(api, url, token, {"width": "2000", "height": "2000"})
    assert status == 200 and image_size(body) == (1000, 700)


async def test_thumbnail_parameter_errors(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, png(50, 50), "image/png")
    url = f"{V1}/thumbnail/{server}/{media_id}"
    for params, code in (({"width": "10"}, b"M_MISSING_PARAM"), ({"width": "-1", "height": "5"}, b"M_INVALID_PARAM"),
                         ({"width": "a", "height": "5"}, b"M_INVALID_PARAM"),
                         ({"width": "5", "height": "5", "method": "stretch"}, b"M_INVALID_PARAM"),
                         ({"width": "5", "height": "5", "animated": "maybe"}, b"M_INVALID_PARAM")):
        status, _, body = await fetch(api, url, token, params)
        assert status == 400 and code in body, (params, body)


async def test_corrupt_and_bomb_images_get_no_thumbnail(api: Api) -> None:
    token = await _user(api)
    server, corrupt = await upload_ok(api, token, b"\x89PNG not really", "image/png")
    status, _, body = await fetch(api, f"{V1}/thumbnail/{server}/{corrupt}", token, {"width": "32", "height": "32"})
    assert status == 400 and b"M_UNKNOWN" in body
    _, bomb = await upload_ok(api, token, bomb_png(), "image/png")
    status, _, body = await fetch(api, f"{V1}/thumbnail/{server}/{bomb}", token, {"width": "32", "height": "32"})
    assert status == 413 and b"M_TOO_LARGE" in body
    status, _, body = await fetch(api, f"{V1}/download/{server}/{bomb}", token)
    assert status == 200 and body == bomb_png()  # the file itself is just bytes


async def test_animation_is_kept_only_when_asked(api: Api) -> None:
    token = await _user(api)
    server, media_id = await upload_ok(api, token, gif(200, 200, frames=4), "image/gif")
    url = f"{V1}/thumbnail/{server}/{media_id}"
    status, headers, body = await fetch(api, url, token, {"width": "96", "height": "96", "method": "crop",
                                                          "animated": "true"})
    assert status == 200 and headers["Content-Type"] == "image/gif"
    im = Image.open(io.BytesIO(body))
    assert im.size == (96, 96) and im.n_frames == 4
    status, headers, body = await fetch(api, url, token, {"width": "96", "height": "96", "method": "crop"})
    assert status == 200 and headers["Content-Type"] == "image/png"
    im = Image.open(io.BytesIO(body))
    assert im.size == (96, 96) and getattr(im, "n_frames", 1) == 1
    # Smaller than asked and animated: the original when animation is wanted, a still otherwise.
    _, small = await upload_ok(api, token, gif(20, 20), "image/gif")
    status, headers, body = await fetch(api, f"{V1}/thumbnail/{server}/{small}", token,
                                        {"width": "96", "height": "96", "animated": "true"})
    assert headers["Content-Type"] == "image/gif" and Image.open(io.BytesIO(body)).n_frames == 3
    status, headers, body = await fetch(api, f"{V1}/thumbnail/{server}/{small}", token,
                                        {"width": "96", "height": "96"})
    assert headers["Content-Type"] == "image/png" and image_size(body) == (20, 20)


async def test_pregenerated_at_upload(make_api: ClientFactory) -> None:
    api = await make_api()
    token = await _user(api)
    server, media_id = await upload_ok(api, token, png(900, 900), "image/png")
    for task in list(api.hs.media._tasks):
        await task
    for w, h, m in ((32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale"), (800, 600, "scale")):
        assert await api.hs.media.store.get_thumbnail(server, media_id, w, h, m, False) is not None


async def test_sizes_made_on_demand_are_bounded_per_file(api: Api) -> None:
    from homeserver.media.repository import MAX_THUMBNAILS_PER_FILE

    token = await _user(api)
    server, media_id = await upload_ok(api, token, png(1200, 1200), "image/png")
    url = f"{V1}/thumbnail/{server}/{media_id}"
    for i in range(MAX_THUMBNAILS_PER_FILE + 5):
        status, _, body = await fetch(api, url, token, {"width": str(801 + i), "height": str(801 + i)})
        assert status == 200 and min(image_size(body)) >= 801 + i
    stored = await api.hs.media.store.list_thumbnails(server, media_id)
    assert len(stored) == MAX_THUMBNAILS_PER_FILE
    files = list((Path(api.hs.config.data_dir) / "media" / "local_thumbnails").rglob("*x*"))
    assert len([f for f in files if f.is_file()]) == MAX_THUMBNAILS_PER_FILE
