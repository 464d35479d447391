"""Shared helpers of the media tests: images made on the fly, raw uploads and downloads."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.conftest import Api

UPLOAD = "/_matrix/media/v3/upload"
V1 = "/_matrix/client/v1/media"


def png(width: int, height: int, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int, height: int, color: str = "blue", orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", (width, height), color)
    if orientation is None:
        im.save(buf, "JPEG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


def gif(width: int, height: int, frames: int = 3) -> bytes:
    buf = io.BytesIO()
    colors = ["red", "green", "blue", "yellow", "white", "black"]
    images = [Image.new("RGB", (width, height), colors[i % len(colors)]) for i in range(frames)]
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buf.getvalue()


async def upload(
    api: Api, token: str, data: bytes, content_type: str | None = "application/octet-stream",
    filename: str | None = None, expect: int | None = 200,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    params = {"filename": filename} if filename is not None else {}
    async with api.client.post(UPLOAD, data=data, headers=headers, params=params) as resp:
        body = await resp.json(content_type=None)
        if expect is not None:
            assert resp.status == expect, (resp.status, body)
        return resp.status, body


async def upload_ok(api: Api, token: str, data: bytes, content_type: str = "application/octet-stream",
                    filename: str | None = None) -> tuple[str, str]:
    """(server_name, media_id) of a new upload."""
    _, body = await upload(api, token, data, content_type, filename)
    server_name, media_id = body["content_uri"].removeprefix("mxc://").split("/")
    return server_name, media_id


async def fetch(
    api: Api, path: str, token: str | None = None, params: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.client.get(path, headers=headers, params=params or {}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def image_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size
