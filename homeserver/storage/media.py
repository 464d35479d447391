"""The media repository's metadata: files (local and cached remote) and thumbnails."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from homeserver.records.media import MediaInfo, ThumbnailInfo
from homeserver.storage.database import Database, IntegrityError, Txn

_MXC = re.compile(r"mxc://[A-Za-z0-9.:\[\]-]{1,255}/[A-Za-z0-9_-]{1,255}")

_COLUMNS = (
    "origin, media_id, is_local, content_type, filename, size, sha256, uploader, created_ts,"
    " unused_expires_at, quarantined_by, last_access_ts"
)


def _info(row: Sequence[Any]) -> MediaInfo:
    return MediaInfo(
        origin=row[0], media_id=row[1], is_local=bool(row[2]), content_type=row[3], filename=row[4],
        size=None if row[5] is None else int(row[5]), sha256=row[6], uploader=row[7],
        created_ts=int(row[8]), unused_expires_at=None if row[9] is None else int(row[9]),
        quarantined_by=row[10], last_access_ts=None if row[11] is None else int(row[11]),
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, origin: str, media_id: str) -> MediaInfo | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM media WHERE origin = ? AND media_id = ?", (origin, media_id)
        )
        return _info(row) if row else None

    async def insert(self, info: MediaInfo) -> bool:
        """Add a file's row; False when one with that (origin, media_id) exists."""

        async def fn(txn: Txn) -> bool:
            if await txn.fetchone(
                "SELECT 1 FROM media WHERE origin = ? AND media_id = ?", (info.origin, info.media_id)
            ):
                return False
            await txn.execute(
                f"INSERT INTO media ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (info.origin, info.media_id, int(info.is_local), info.content_type, info.filename,
                 info.size, info.sha256, info.uploader, info.created_ts, info.unused_expires_at,
                 info.quarantined_by, info.last_access_ts),
            )
            return True

        try:
            return await self.db.write(fn)
        except IntegrityError:
            return False

    async def fill_pending(
        self, origin: str, media_id: str, content_type: str | None, filename: str | None,
        size: int, sha256: str, now_ms: int,
    ) -> bool:
        """Give an async upload's ID its content; False when it already has some."""
        n = await self.db.execute(
            "UPDATE media SET content_type = ?, filename = ?, size = ?, sha256 = ?, created_ts = ?,"
            " unused_expires_at = NULL WHERE origin = ? AND media_id = ? AND size IS NULL",
            (content_type, filename, size, sha256, now_ms, origin, media_id),
        )
        return n > 0

    async def count_pending(self, uploader: str, now_ms: int) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM media WHERE uploader = ? AND size IS NULL AND unused_expires_at > ?",
            (uploader, now_ms),
        )
        return int(row[0]) if row else 0

    async def used_bytes(self, uploader: str) -> int:
        row = await self.db.fetchone(
            "SELECT COALESCE(SUM(size), 0) FROM media WHERE uploader = ? AND is_local = 1", (uploader,)
        )
        return int(row[0]) if row else 0

    async def delete(self, origin: str, media_id: str) -> bool:
        async def fn(txn: Txn) -> bool:
            await txn.execute(
                "DELETE FROM media_thumbnails WHERE origin = ? AND media_id = ?", (origin, media_id)
            )
            return await txn.execute(
                "DELETE FROM media WHERE origin = ? AND media_id = ?", (origin, media_id)
            ) > 0

        return await self.db.write(fn)

    async def set_quarantined(self, origin: str, media_id: str, by: str | None) -> bool:
        n = await self.db.execute(
            "UPDATE media SET quarantined_by = ? WHERE origin = ? AND media_id = ?",
            (by, origin, media_id),
        )
        return n > 0

    async def touch(self, accesses: Iterable[tuple[str, str, int]]) -> None:
        """Record last-access times: (origin, media_id, ts) each."""
        rows = [(ts, origin, media_id) for origin, media_id, ts in accesses]
        if not rows:
            return

        async def fn(txn: Txn) -> None:
            await txn.executemany(
                "UPDATE media SET last_access_ts = ? WHERE origin = ? AND media_id = ?", rows
            )

        await self.db.write(fn)

    async def list_by_uploader(
        self, uploader: str, start: int, limit: int, order_by: str = "created_ts", direction: str = "f"
    ) -> tuple[list[MediaInfo], int]:
        column = {
            "media_id": "media_id", "upload_name": "filename", "created_ts": "created_ts",
            "last_access_ts": "last_access_ts", "media_length": "size", "media_type": "content_type",
            "quarantined_by": "quarantined_by",
        }.get(order_by, "created_ts")
        order = "DESC" if direction == "b" else "ASC"
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM media WHERE uploader = ? AND is_local = 1"
            f" ORDER BY {column} {order}, media_id {order} LIMIT ? OFFSET ?",
            (uploader, limit, start),
        )
        total = await self.db.fetchone(
            "SELECT COUNT(*) FROM media WHERE uploader = ? AND is_local = 1", (uploader,)
        )
        return [_info(r) for r in rows], int(total[0]) if total else 0

    async def local_ids_of_uploader(self, uploader: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT media_id FROM media WHERE uploader = ? AND is_local = 1", (uploader,)
        )
        return [r[0] for r in rows]

    async def expired_pending(self, now_ms: int, limit: int = 500) -> list[tuple[str, str]]:
        rows = await self.db.fetchall(
            "SELECT origin, media_id FROM media WHERE size IS NULL AND unused_expires_at <= ? LIMIT ?",
            (now_ms, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def older_than(
        self, is_local: bool, before_ts: int, limit: int = 500
    ) -> list[tuple[str, str]]:
        """Files (local or cached remote) neither created nor accessed since ``before_ts``."""
        rows = await self.db.fetchall(
            "SELECT origin, media_id FROM media WHERE is_local = ? AND size IS NOT NULL"
            " AND created_ts < ? AND COALESCE(last_access_ts, 0) < ? LIMIT ?",
            (int(is_local), before_ts, before_ts, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def get_thumbnail(
        self, origin: str, media_id: str, width: int, height: int, method: str, animated: bool
    ) -> ThumbnailInfo | None:
        row = await self.db.fetchone(
            "SELECT width, height, method, animated, content_type, size FROM media_thumbnails"
            " WHERE origin = ? AND media_id = ? AND width = ? AND height = ? AND method = ? AND animated = ?",
            (origin, media_id, width, height, method, int(animated)),
        )
        if row is None:
            return None
        return ThumbnailInfo(int(row[0]), int(row[1]), row[2], bool(row[3]), row[4], int(row[5]))

    async def add_thumbnail(self, origin: str, media_id: str, thumb: ThumbnailInfo) -> None:
        async def fn(txn: Txn) -> None:
            await txn.execute(
                "DELETE FROM media_thumbnails WHERE origin = ? AND media_id = ? AND width = ?"
                " AND height = ? AND method = ? AND animated = ?",
                (origin, media_id, thumb.width, thumb.height, thumb.method, int(thumb.animated)),
            )
            await txn.execute(
                "INSERT INTO media_thumbnails (origin, media_id, width, height, method, animated,"
                " content_type, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (origin, media_id, thumb.width, thumb.height, thumb.method, int(thumb.animated),
                 thumb.content_type, thumb.size),
            )

        await self.db.write(fn)

    async def media_uris_in_room(self, room_id: str) -> list[str]:
        """The mxc:// URIs that a room's stored events mention (content of messages,
        avatars, stickers, state), for quarantining or deleting a room's media."""
        rows = await self.db.fetchall(
            "SELECT e.json FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
            " WHERE r.room_id = ? AND e.json LIKE ?",
            (room_id, "%mxc://%"),
        )
        found: set[str] = set()
        for (raw,) in rows:
            found.update(_MXC.findall(raw if isinstance(raw, str) else bytes(raw).decode()))
        return sorted(found)

    async def list_thumbnails(self, origin: str, media_id: str) -> list[ThumbnailInfo]:
        rows = await self.db.fetchall(
            "SELECT width, height, method, animated, content_type, size FROM media_thumbnails"
            " WHERE origin = ? AND media_id = ?",
            (origin, media_id),
        )
        return [ThumbnailInfo(int(r[0]), int(r[1]), r[2], bool(r[3]), r[4], int(r[5])) for r in rows]
