"""The user directory's SQL: which users a searcher may find, and the index the
directory keeps (rooms anyone may find the members of, other servers' users).

Whom a searcher may find is decided here, in every query, from the memberships
as they are now: users joined to a room the searcher is joined to, and users
joined to a room in user_directory_rooms. Candidates are narrowed by the search
words with LIKE (lowercased; each word must appear somewhere), and the caller
checks the words precisely (word prefixes, Unicode case folding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from homeserver.records.user_directory import DirectoryUser
from homeserver.storage.database import Database, Txn, marks

_JOINED_TOGETHER = (
    "EXISTS (SELECT 1 FROM memberships o JOIN memberships s ON s.room_nid = o.room_nid"
    " WHERE o.user_id = {col} AND o.membership = 'join' AND s.user_id = ? AND s.membership = 'join')"
)
_IN_OPEN_ROOM = (
    "EXISTS (SELECT 1 FROM memberships o JOIN user_directory_rooms r ON r.room_nid = o.room_nid"
    " WHERE o.user_id = {col} AND o.membership = 'join')"
)
BUILD_VERSION = 1


def _visible(col: str) -> str:
    return f"({_JOINED_TOGETHER.format(col=col)} OR {_IN_OPEN_ROOM.format(col=col)})"


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class UserDirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search_local(
        self, searcher: str, words: Sequence[str], *, everyone: bool, exclude_types: Sequence[str], cap: int
    ) -> list[DirectoryUser]:
        """Local users (not deactivated) whose display name or user ID contains every
        word (lowercase ASCII words; others are left to the caller), visible to the
        searcher unless `everyone`."""
        sql = (
            "SELECT u.user_id, p.displayname, p.avatar_url FROM users u JOIN profiles p ON p.user_id = u.user_id"
            " WHERE u.deactivated = 0"
        )
        args: list[Any] = []
        if exclude_types:
            sql += f" AND COALESCE(u.user_type, '') NOT IN ({marks(exclude_types)})"
            args.extend(exclude_types)
        for word in words:
            sql += (
                " AND (lower(COALESCE(p.displayname, '')) LIKE ? ESCAPE '\\'"
                " OR lower(u.user_id) LIKE ? ESCAPE '\\')"
            )
            args += [_like(word), _like(word)]
        if not everyone:
            sql += " AND " + _visible("u.user_id")
            args += [searcher]
        rows = await self.db.fetchall(sql + " LIMIT ?", [*args, cap])
        return [DirectoryUser(r[0], r[1], r[2]) for r in rows]

    async def search_remote(self, searcher: str, words: Sequence[str], cap: int) -> list[DirectoryUser]:
        """Other servers' users whose words contain every search word, visible to the searcher."""
        sql = "SELECT d.user_id, d.display_name, d.avatar_url FROM user_directory_remote d WHERE "
        args: list[Any] = []
        for word in words:
            sql += "d.search_text LIKE ? ESCAPE '\\' AND "
            args.append(_like(word))
        sql += _visible("d.user_id")
        rows = await self.db.fetchall(sql + " LIMIT ?", [*args, searcher, cap])
        return [DirectoryUser(r[0], r[1], r[2]) for r in rows]

    # --- the index ---

    async def set_room_open(self, room_nid: int, is_open: bool) -> None:
        if is_open:
            await self.db.execute(
                "INSERT INTO user_directory_rooms (room_nid) VALUES (?) ON CONFLICT (room_nid) DO NOTHING",
                (room_nid,),
            )
        else:
            await self.db.execute("DELETE FROM user_directory_rooms WHERE room_nid = ?", (room_nid,))

    async def put_remote(self, users: Sequence[tuple[str, str | None, str | None, str]]) -> None:
        """Other servers' users as (user ID, display name, avatar URL, search text)."""
        if not users:
            return

        async def fn(txn: Txn) -> None:
            await txn.executemany(
                "INSERT INTO user_directory_remote (user_id, display_name, avatar_url, search_text)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,"
                " avatar_url = excluded.avatar_url, search_text = excluded.search_text",
                users,
            )

        await self.db.write(fn)

    async def is_built(self) -> bool:
        row = await self.db.fetchone("SELECT MAX(version) FROM user_directory_built")
        return row is not None and row[0] is not None and int(row[0]) >= BUILD_VERSION

    async def mark_built(self) -> None:
        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM user_directory_built")
            await txn.execute("INSERT INTO user_directory_built (version) VALUES (?)", (BUILD_VERSION,))

        await self.db.write(fn)

    async def room_ids(self) -> list[str]:
        return [r[0] for r in await self.db.fetchall("SELECT room_id FROM rooms")]

    async def joined_member_contents(self) -> list[tuple[str, dict[str, Any]]]:
        """(user ID, content of their join event) for every joined membership."""
        rows = await self.db.fetchall(
            "SELECT m.user_id, e.json FROM memberships m JOIN events e ON e.event_nid = m.event_nid"
            " WHERE m.membership = 'join'"
        )
        out = []
        for user_id, data in rows:
            content = orjson.loads(data).get("content")
            out.append((user_id, content if isinstance(content, dict) else {}))
        return out
