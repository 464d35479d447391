"""Media is streamed, never held whole: a 200 MB upload and its download through the
real `accord` process leave its peak resident memory (VmHWM) where it was."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.server_process import ServerProcess

SIZE = 200 * 1024 * 1024
BLOCK = os.urandom(1024 * 1024)


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


async def _body() -> AsyncIterator[bytes]:
    for i in range(SIZE // len(BLOCK)):
        yield bytes([i % 251]) + BLOCK[1:]


@pytest.mark.slow
async def test_200_mb_up_and_down_in_flat_memory(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs", media={"max_upload_size": 300 * 1024 * 1024, "user_quota_bytes": None})
    await server.start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        base = server.client_url
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{base}/_matrix/client/v3/register", json={
                "username": "big", "password": "pw-pw-pw-pw", "auth": {"type": "m.login.dummy"},
            }) as r:
                token = (await r.json())["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            # Warm up the code paths (imports, thread pool) before taking the baseline.
            async with s.post(f"{base}/_matrix/media/v3/upload", data=b"warm", headers=auth) as r:
                mxc = (await r.json())["content_uri"]
            async with s.get(f"{base}/_matrix/client/v1/media/download/{mxc[6:]}", headers=auth) as r:
                assert await r.read() == b"warm"
            idle = _kib(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # noqa: ASYNC240 (peak from now on)
            expected = hashlib.sha256()
            async for chunk in _body():
                expected.update(chunk)
            async with s.post(f"{base}/_matrix/media/v3/upload", data=_body(),
                              headers={**auth, "Content-Type": "application/octet-stream"}) as r:
                assert r.status == 200, await r.text()
                mxc = (await r.json())["content_uri"]
            got = hashlib.sha256()
            size = 0
            async with s.get(f"{base}/_matrix/client/v1/media/download/{mxc[6:]}", headers=auth) as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(1024 * 1024):
                    got.update(chunk)
                    size += len(chunk)
            assert size == SIZE and got.hexdigest() == expected.hexdigest()
        peak = _kib(pid, "VmHWM")
        assert peak - idle < 40 * 1024, f"peak RSS {peak} KiB against {idle} KiB before the transfer"
    finally:
        await server.stop()
