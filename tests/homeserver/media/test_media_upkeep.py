"""The media repository is built at its first use, but its periodic cleanup runs from
start-up: a server whose users never touched media still has lapsed uploads to drop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from homeserver.config import Config
from homeserver.records.media import MediaInfo
from homeserver.server import HomeServer
from homeserver.storage.media import MediaStore


async def test_cleanup_runs_on_a_server_whose_media_was_never_used(
    make_config: Callable[..., Config],
) -> None:
    hs = HomeServer(make_config(media={"cleanup_interval_s": 1}))
    await hs.start()
    try:
        # A lapsed async upload (left from before a restart, say), written beside the repository.
        now = hs.clock.time_ms()
        store = MediaStore(hs.db)
        await store.insert(MediaInfo(
            origin=hs.config.server_name, media_id="lapsedupload", is_local=True, content_type=None,
            filename=None, size=None, sha256=None, uploader="@alice:test.local", created_ts=now - 10,
            unused_expires_at=now - 1,
        ))
        assert "_media" not in hs.__dict__  # nothing asked for media yet
        for _ in range(100):
            if await store.get(hs.config.server_name, "lapsedupload") is None:
                break
            await asyncio.sleep(0.05)
        assert await store.get(hs.config.server_name, "lapsedupload") is None
        assert "_media" in hs.__dict__  # the cleanup built it
    finally:
        await hs.stop()
