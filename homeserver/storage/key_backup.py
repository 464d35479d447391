"""Server-side room key backups: backup versions and their session keys.

Every write that depends on which version is current runs in one transaction that
first locks the version's row (a no-op UPDATE), so concurrent uploads to one backup,
and an upload racing the version's deletion, are serialised on both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from homeserver.records.key_backup import BackupVersion, SessionKey
from homeserver.storage.database import Database, IntegrityError, Txn


class NoBackup(Exception):
    """The user has no backup version (or not the one named, when no current one exists)."""


class WrongVersion(Exception):
    """The version named is not the user's current backup version."""

    def __init__(self, current: int) -> None:
        super().__init__(current)
        self.current = current


def _key(row: tuple[Any, ...]) -> SessionKey:
    return SessionKey(int(row[0]), int(row[1]), bool(row[2]), orjson.loads(row[3]))


class KeyBackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- versions ---

    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
        """A new backup version, numbered after every version the user ever had (two
        concurrent creations on PostgreSQL may pick one number: the loser tries again)."""
        data = orjson.dumps(auth_data).decode()

        async def fn(txn: Txn) -> int:
            row = await txn.fetchone(
                "SELECT COALESCE(MAX(version), 0) FROM key_backup_versions WHERE user_id = ?", (user_id,)
            )
            version = (int(row[0]) if row else 0) + 1
            await txn.execute(
                "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted)"
                " VALUES (?, ?, ?, ?, 0, 0)",
                (user_id, version, algorithm, data),
            )
            return version

        for _ in range(4):
            try:
                return await self.db.write(fn)
            except IntegrityError:
                continue
        return await self.db.write(fn)

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion | None:
        """The version named (None: the current one, the latest not deleted), with its count."""

        async def fn(txn: Txn) -> BackupVersion | None:
            if version is None:
                row = await txn.fetchone(
                    "SELECT version, algorithm, auth_data, etag FROM key_backup_versions"
                    " WHERE user_id = ? AND deleted = 0 ORDER BY version DESC LIMIT 1",
                    (user_id,),
                )
            else:
                row = await txn.fetchone(
                    "SELECT version, algorithm, auth_data, etag FROM key_backup_versions"
                    " WHERE user_id = ? AND version = ? AND deleted = 0",
                    (user_id, version),
                )
            if row is None:
                return None
            count = await txn.fetchone(
                "SELECT COUNT(*) FROM key_backup_sessions WHERE user_id = ? AND version = ?",
                (user_id, int(row[0])),
            )
            return BackupVersion(
                int(row[0]), row[1], orjson.loads(row[2]), int(row[3]), int(count[0]) if count else 0
            )

        return await self.db.read(fn)

    async def update_auth_data(self, user_id: str, version: int, auth_data: dict[str, Any]) -> bool:
        """False when the user has no such version."""
        changed = await self.db.execute(
            "UPDATE key_backup_versions SET auth_data = ? WHERE user_id = ? AND version = ? AND deleted = 0",
            (orjson.dumps(auth_data).decode(), user_id, version),
        )
        return changed > 0

    async def delete_version(self, user_id: str, version: int) -> bool:
        """Deletes the version and its keys; False when the user has no such version."""

        async def fn(txn: Txn) -> bool:
            changed = await txn.execute(
                "UPDATE key_backup_versions SET deleted = 1 WHERE user_id = ? AND version = ? AND deleted = 0",
                (user_id, version),
            )
            if changed:
                await txn.execute(
                    "DELETE FROM key_backup_sessions WHERE user_id = ? AND version = ?", (user_id, version)
                )
            return changed > 0

        return await self.db.write(fn)

    @staticmethod
    async def delete_all(txn: Txn, user_id: str) -> None:
        """Every backup of the user, keys and versions (account deactivation)."""
        await txn.execute("DELETE FROM key_backup_sessions WHERE user_id = ?", (user_id,))
        await txn.execute("DELETE FROM key_backup_versions WHERE user_id = ?", (user_id,))

    # --- keys ---

    async def put_keys(
        self, user_id: str, version: int, keys: Mapping[str, Mapping[str, SessionKey]]
    ) -> tuple[int, int]:
        """Stores each key unless the backup holds a better one for its session;
        (etag, count) afterwards. NoBackup / WrongVersion unless `version` is current."""

        async def fn(txn: Txn) -> tuple[int, int]:
            row = await txn.fetchone(
                "SELECT MAX(version) FROM key_backup_versions WHERE user_id = ? AND deleted = 0", (user_id,)
            )
            if row is None or row[0] is None:
                raise NoBackup()
            if int(row[0]) != version:
                raise WrongVersion(int(row[0]))
            # Lock the version's row: uploads to one backup (and its deletion) run one at a time.
            if not await txn.execute(
                "UPDATE key_backup_versions SET etag = etag WHERE user_id = ? AND version = ? AND deleted = 0",
                (user_id, version),
            ):
                raise NoBackup()
            changed = False
            for room_id, sessions in keys.items():
                for session_id, key in sessions.items():
                    old = await txn.fetchone(
                        "SELECT first_message_index, forwarded_count, is_verified, session_data"
                        " FROM key_backup_sessions WHERE user_id = ? AND version = ? AND room_id = ?"
                        " AND session_id = ?",
                        (user_id, version, room_id, session_id),
                    )
                    if old is not None and not key.better_than(_key(old)):
                        continue
                    await txn.execute(
                        "INSERT INTO key_backup_sessions (user_id, version, room_id, session_id,"
                        " first_message_index, forwarded_count, is_verified, session_data)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET"
                        " first_message_index = excluded.first_message_index,"
                        " forwarded_count = excluded.forwarded_count,"
                        " is_verified = excluded.is_verified, session_data = excluded.session_data",
                        (
                            user_id, version, room_id, session_id, key.first_message_index,
                            key.forwarded_count, int(key.is_verified), orjson.dumps(key.session_data).decode(),
                        ),
                    )
                    changed = True
            return await self._bump(txn, user_id, version, changed)

        return await self.db.write(fn)

    async def delete_keys(
        self, user_id: str, version: int, room_id: str | None, session_id: str | None
    ) -> tuple[int, int] | None:
        """Deletes the version's keys (of one room, or one session); (etag, count)
        afterwards, None when the user has no such version."""

        async def fn(txn: Txn) -> tuple[int, int] | None:
            if not await txn.execute(
                "UPDATE key_backup_versions SET etag = etag WHERE user_id = ? AND version = ? AND deleted = 0",
                (user_id, version),
            ):
                return None
            sql = "DELETE FROM key_backup_sessions WHERE user_id = ? AND version = ?"
            args: list[Any] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                args.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    args.append(session_id)
            changed = await txn.execute(sql, args) > 0
            return await self._bump(txn, user_id, version, changed)

        return await self.db.write(fn)

    @staticmethod
    async def _bump(txn: Txn, user_id: str, version: int, changed: bool) -> tuple[int, int]:
        if changed:
            await txn.execute(
                "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
                (user_id, version),
            )
        row = await txn.fetchone(
            "SELECT etag FROM key_backup_versions WHERE user_id = ? AND version = ?", (user_id, version)
        )
        count = await txn.fetchone(
            "SELECT COUNT(*) FROM key_backup_sessions WHERE user_id = ? AND version = ?", (user_id, version)
        )
        return int(row[0]) if row else 0, int(count[0]) if count else 0

    async def get_keys(
        self, user_id: str, version: int, room_id: str | None, session_id: str | None
    ) -> dict[str, dict[str, SessionKey]] | None:
        """{room_id: {session_id: key}} of the version (one room, or one session);
        None when the user has no such version."""

        async def fn(txn: Txn) -> dict[str, dict[str, SessionKey]] | None:
            exists = await txn.fetchone(
                "SELECT 1 FROM key_backup_versions WHERE user_id = ? AND version = ? AND deleted = 0",
                (user_id, version),
            )
            if exists is None:
                return None
            sql = (
                "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
                " FROM key_backup_sessions WHERE user_id = ? AND version = ?"
            )
            args: list[Any] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                args.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    args.append(session_id)
            out: dict[str, dict[str, SessionKey]] = {}
            for r in await txn.fetchall(sql, args):
                out.setdefault(r[0], {})[r[1]] = _key(r[2:])
            return out

        return await self.db.read(fn)
