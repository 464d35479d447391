"""matrix-nio end to end with media: alice uploads an image and sends it as m.image;
bob, in the room, finds it through /sync, downloads it byte-identical and gets
thumbnails of the sizes each method implies; without a token nothing is served."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import nio
from PIL import Image

from tests.e2e.server_process import ServerProcess


def _photo() -> bytes:
    im = Image.new("RGB", (1200, 800), "navy")
    for x in range(0, 1200, 100):
        im.paste("orange", (x, 0, x + 50, 800))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


async def _client(url: str, name: str) -> nio.AsyncClient:
    client = nio.AsyncClient(url, name)
    resp = await client.register(name, f"{name}-password-1")
    assert isinstance(resp, nio.RegisterResponse), resp
    return client


async def test_nio_image_upload_send_download_and_thumbnail(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    alice = await _client(server.client_url, "alice")
    bob = await _client(server.client_url, "bob")
    try:
        photo = _photo()
        uploaded, _ = await alice.upload(io.BytesIO(photo), content_type="image/jpeg", filename="photo.jpg",
                                         filesize=len(photo))
        assert isinstance(uploaded, nio.UploadResponse), uploaded
        mxc = uploaded.content_uri
        assert mxc.startswith("mxc://localhost/")

        created = await alice.room_create(name="Photos")
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        assert isinstance(await alice.room_invite(room, bob.user_id), nio.RoomInviteResponse)
        assert isinstance(await bob.join(room), nio.JoinResponse)
        sent = await alice.room_send(room, "m.room.message", {
            "msgtype": "m.image", "body": "photo.jpg", "url": mxc,
            "info": {"mimetype": "image/jpeg", "size": len(photo), "w": 1200, "h": 800},
        })
        assert isinstance(sent, nio.RoomSendResponse), sent

        synced = await bob.sync(timeout=0)
        assert isinstance(synced, nio.SyncResponse), synced
        images = [e for e in synced.rooms.join[room].timeline.events if isinstance(e, nio.RoomMessageImage)]
        assert [e.url for e in images] == [mxc]

        downloaded = await bob.download(mxc=images[0].url)
        assert isinstance(downloaded, nio.MemoryDownloadResponse), downloaded
        assert downloaded.body == photo and downloaded.content_type == "image/jpeg"

        server_name, media_id = mxc.removeprefix("mxc://").split("/")
        for width, height, method, size in (
            (32, 32, nio.ResizingMethod.crop, (32, 32)),
            (96, 96, nio.ResizingMethod.crop, (96, 96)),
            (300, 200, nio.ResizingMethod.scale, (320, 213)),  # 320x240 box, 3:2 kept
            (640, 480, nio.ResizingMethod.scale, (640, 427)),
        ):
            thumb = await bob.thumbnail(server_name, media_id, width, height, method)
            assert isinstance(thumb, nio.ThumbnailResponse), thumb
            assert Image.open(io.BytesIO(thumb.body)).size == size, (width, height, method)

        # No token: refused on the authenticated endpoint; the legacy one is frozen.
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{server.client_url}/_matrix/client/v1/media/download/{server_name}/{media_id}") as r:
                assert r.status == 401 and (await r.json())["errcode"] == "M_MISSING_TOKEN"
            async with s.get(f"{server.client_url}/_matrix/media/v3/download/{server_name}/{media_id}") as r:
                assert r.status == 404
    finally:
        await alice.close()
        await bob.close()
        await server.stop()
