"""Server-side room key backups (the spec's "Server-side key backups").

A user keeps backup versions, each with its algorithm and `auth_data`; the latest
one not deleted is the current one, and only it takes new keys. Each backup holds at
most one key per (room, megolm session): an uploaded key replaces the stored one only
when it is better by the spec's rule (`SessionKey.better_than`). A backup's `etag`
moves whenever its keys change and `count` is the number of keys it holds.

Versions are decimal integers on the wire (opaque strings to clients), numbered per
user and never reused after a deletion. The server never reads `session_data`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import MatrixError
from homeserver.records.key_backup import BackupVersion, SessionKey
from homeserver.storage.key_backup import KeyBackupStore, NoBackup, WrongVersion


def _not_found(what: str = "Unknown backup version") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", what)


def _wrong_version(current: int) -> MatrixError:
    return MatrixError(
        403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version", current_version=str(current)
    )


class KeyBackupService:
    def __init__(self, *, store: KeyBackupStore) -> None:
        self.store = store

    # --- versions ---

    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> int:
        return await self.store.create_version(user_id, algorithm, auth_data)

    async def get_version(self, user_id: str, version: int | None) -> BackupVersion:
        """The version named (None: the current one); 404 when there is none."""
        found = await self.store.get_version(user_id, version)
        if found is None:
            raise _not_found("No current backup version" if version is None else "Unknown backup version")
        return found

    async def update_version(
        self, user_id: str, version: int | None, algorithm: str, auth_data: dict[str, Any]
    ) -> None:
        """Only `auth_data` may change; the algorithm given must be the version's own."""
        current = None if version is None else await self.store.get_version(user_id, version)
        if current is None or version is None:
            raise _not_found()
        if algorithm != current.algorithm:
            raise MatrixError(400, "M_INVALID_PARAM", "A backup's algorithm cannot be changed")
        if not await self.store.update_auth_data(user_id, version, auth_data):
            raise _not_found()

    async def delete_version(self, user_id: str, version: int | None) -> None:
        if version is None or not await self.store.delete_version(user_id, version):
            raise _not_found()

    # --- keys ---

    async def put_keys(
        self, user_id: str, version: int | None, keys: Mapping[str, Mapping[str, SessionKey]]
    ) -> tuple[int, int]:
        """(etag, count) after storing the keys; 403 M_WRONG_ROOM_KEYS_VERSION (with
        `current_version`) unless `version` is the current one, 404 when there is none.
        `version` None is a version string that is no version at all."""
        try:
            return await self.store.put_keys(user_id, version if version is not None else -1, keys)
        except NoBackup:
            raise _not_found("No current backup version") from None
        except WrongVersion as e:
            raise _wrong_version(e.current) from None

    async def get_keys(
        self, user_id: str, version: int | None, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, dict[str, SessionKey]]:
        """The version's keys, {room_id: {session_id: key}}; 404 for an unknown version.
        Reads and deletions may name any existing version, not only the current one."""
        found = None if version is None else await self.store.get_keys(user_id, version, room_id, session_id)
        if found is None:
            raise _not_found()
        return found

    async def delete_keys(
        self, user_id: str, version: int | None, room_id: str | None = None, session_id: str | None = None
    ) -> tuple[int, int]:
        found = None if version is None else await self.store.delete_keys(user_id, version, room_id, session_id)
        if found is None:
            raise _not_found()
        return found
