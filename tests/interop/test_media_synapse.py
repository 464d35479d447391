"""Media between Accord and stock Synapse over authenticated federation media
(``/_matrix/federation/v1/media/download``): a Synapse user downloads a file and a
thumbnail uploaded on Accord, and Accord fetches a file uploaded on Synapse."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from homeserver.errors import MatrixError
from homeserver.media.thumbnails import ThumbnailParams
from tests.interop.test_federation_basics import Accord, accord, bob  # noqa: F401  (fixtures)

from .synapse import SynapseClient, SynapseServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX = 50 * 1024 * 1024


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def _upload_on_accord(acc: Accord, data: bytes, content_type: str, filename: str | None) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    info = await acc.hs.media.upload(acc.alice, content_type, filename, chunks(), len(data))
    return info.media_id


async def _synapse_get(synapse: SynapseServer, bob: SynapseClient, path: str) -> tuple[int, bytes, str]:  # noqa: F811
    headers = {"Authorization": f"Bearer {bob.user.access_token}"}
    async with synapse.session.get(synapse.base_url + path, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_synapse_user_downloads_media_uploaded_on_accord(
    accord: Accord, bob: SynapseClient, synapse: SynapseServer,  # noqa: F811
) -> None:
    data = os.urandom(400_000)
    media_id = await _upload_on_accord(accord, data, "application/octet-stream", "blob.bin")
    status, body, _ = await _synapse_get(synapse, bob, f"/_matrix/client/v1/media/download/{accord.name}/{media_id}")
    assert status == 200, body[:300]
    assert body == data

    image = png(300, 200)
    media_id = await _upload_on_accord(accord, image, "image/png", "pic.png")
    status, body, ctype = await _synapse_get(
        synapse, bob, f"/_matrix/client/v1/media/thumbnail/{accord.name}/{media_id}?width=32&height=32&method=crop"
    )
    assert status == 200, body[:300]
    assert ctype.startswith("image/")
    with Image.open(io.BytesIO(body)) as im:
        assert im.size[0] >= 32 and im.size[1] >= 32 and im.size[0] <= 300

    status, body, _ = await _synapse_get(synapse, bob, f"/_matrix/client/v1/media/download/{accord.name}/nosuchmedia")
    assert status == 404, body[:300]


async def test_accord_fetches_media_uploaded_on_synapse(
    accord: Accord, bob: SynapseClient, synapse: SynapseServer, tmp_path: Path,  # noqa: F811
) -> None:
    data = os.urandom(250_000)
    headers = {"Authorization": f"Bearer {bob.user.access_token}", "Content-Type": "application/pdf"}
    async with synapse.session.post(
        synapse.base_url + "/_matrix/media/v3/upload", data=data, headers=headers, params={"filename": "paper.pdf"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        uri = (await resp.json())["content_uri"]
    server_name, media_id = uri.removeprefix("mxc://").split("/")
    assert server_name == synapse.server_name
    fetches = accord.hs.remote_media.fetches
    sent: list[str] = []
    def observe(method: str, destination: str, target: str, content: object) -> None:
        sent.append(target)

    accord.client.observers.append(observe)
    try:
        got = await accord.hs.remote_media.fetch(server_name, media_id, thumbnail=None, max_bytes=MAX, timeout_ms=10_000)
    finally:
        accord.client.observers.remove(observe)
    # The authenticated endpoint answered: no fallback to the deprecated one.
    assert [t.split("?")[0] for t in sent] == [f"/_matrix/federation/v1/media/download/{media_id}"]
    with open(got.path, "rb") as f:  # noqa: ASYNC230
        assert f.read() == data
    assert got.info.content_type == "application/pdf"
    assert got.info.filename == "paper.pdf"
    assert accord.hs.remote_media.fetches == fetches + 1

    image = png(500, 400)
    headers["Content-Type"] = "image/png"
    async with synapse.session.post(synapse.base_url + "/_matrix/media/v3/upload", data=image, headers=headers) as resp:
        image_id = (await resp.json())["content_uri"].rsplit("/", 1)[1]
    sent.clear()
    accord.client.observers.append(observe)
    try:
        thumb = await accord.hs.remote_media.fetch(
            server_name, image_id, thumbnail=ThumbnailParams(96, 96, "crop"), max_bytes=MAX, timeout_ms=10_000
        )
    finally:
        accord.client.observers.remove(observe)
    with Image.open(thumb.path) as im:
        assert im.size == (96, 96)
    # Synapse's own thumbnail, over the authenticated endpoint; the original stays there.
    assert [t.split("?")[0] for t in sent] == [f"/_matrix/federation/v1/media/thumbnail/{image_id}"]
    assert await accord.hs.media.get_cached_remote(server_name, image_id) is None

    with pytest.raises(MatrixError) as e:
        await accord.hs.remote_media.fetch(server_name, "doesnotexist", thumbnail=None, max_bytes=MAX, timeout_ms=5000)
    assert e.value.status == 404
    with pytest.raises(MatrixError) as e:
        await accord.hs.remote_media.fetch(server_name, media_id + "x", thumbnail=None, max_bytes=MAX, timeout_ms=5000)
    assert e.value.status == 404
    big = os.urandom(300_000)
    headers["Content-Type"] = "application/octet-stream"
    async with synapse.session.post(synapse.base_url + "/_matrix/media/v3/upload", data=big, headers=headers) as resp:
        big_id = (await resp.json())["content_uri"].rsplit("/", 1)[1]
    with pytest.raises(MatrixError) as e:
        await accord.hs.remote_media.fetch(server_name, big_id, thumbnail=None, max_bytes=100_000, timeout_ms=5000)
    assert (e.value.status, e.value.errcode) == (502, "M_TOO_LARGE")
