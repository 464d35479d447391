"""The local filesystem provider: atomic writes, no partial files, no path outside its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.media.storage_provider import LocalFilesystemProvider


def test_a_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    provider = LocalFilesystemProvider(str(tmp_path / "media"))
    pending = provider.begin("local_content/ab/cd/efgh")
    pending.write(b"part one, ")
    assert not provider.exists("local_content/ab/cd/efgh")  # only the temporary file so far
    pending.write(memoryview(b"part two"))
    pending.commit()
    assert Path(provider.local_path("local_content/ab/cd/efgh")).read_bytes() == b"part one, part two"
    aborted = provider.begin("local_content/ab/cd/other")
    aborted.write(b"never")
    aborted.abort()
    assert sorted(p.name for p in (tmp_path / "media/local_content/ab/cd").iterdir()) == ["efgh"]
    provider.delete("local_content/ab/cd/efgh")
    provider.delete("local_content/ab/cd/efgh")  # absent: nothing to do
    assert not provider.exists("local_content/ab/cd/efgh")


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/etc/passwd", ""])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    provider = LocalFilesystemProvider(str(tmp_path / "media"))
    with pytest.raises(ValueError):
        provider.local_path(key)
