"""Device lists across servers: the cache of other servers' users' device lists
(`RemoteDeviceListStore`) and what we last announced of our own users' devices
(`AnnouncedDeviceStore`). See migration v024 for the tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from homeserver.records.e2ee import RemoteDevice, RemoteDeviceList
from homeserver.storage.database import Database, Txn

# Stream IDs of a user's updates remembered for the prev_id check.
MAX_SEEN = 20


def _dump(obj: Any) -> str | None:
    return None if obj is None else orjson.dumps(obj).decode()


def _load(data: Any) -> Any:
    return None if data is None else orjson.loads(data)


class RemoteDeviceListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, user_id: str) -> RemoteDeviceList | None:
        async def fn(txn: Txn) -> RemoteDeviceList | None:
            state = await txn.fetchone(
                "SELECT stream_id, seen, master_key, self_signing_key, up_to_date"
                " FROM remote_device_list_state WHERE user_id = ?",
                (user_id,),
            )
            if state is None:
                return None
            rows = await txn.fetchall(
                "SELECT device_id, keys_json, display_name FROM remote_device_lists WHERE user_id = ?",
                (user_id,),
            )
            devices = {str(r[0]): RemoteDevice(str(r[0]), _load(r[1]), r[2]) for r in rows}
            return RemoteDeviceList(
                user_id, int(state[0]), tuple(orjson.loads(state[1])), devices,
                _load(state[2]), _load(state[3]), bool(state[4]),
            )

        return await self.db.read(fn)

    async def replace(
        self, user_id: str, stream_id: int, devices: Sequence[RemoteDevice],
        master_key: dict[str, Any] | None, self_signing_key: dict[str, Any] | None,
        also_seen: Sequence[int] = (),
    ) -> None:
        """The whole list, as the user's server answered /user/devices: up to date."""
        seen = sorted({stream_id, *also_seen})[-MAX_SEEN:]

        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM remote_device_lists WHERE user_id = ?", (user_id,))
            if devices:
                await txn.executemany(
                    "INSERT INTO remote_device_lists (user_id, device_id, keys_json, display_name)"
                    " VALUES (?, ?, ?, ?)",
                    [(user_id, d.device_id, _dump(d.keys), d.display_name) for d in devices],
                )
            await txn.execute(
                "INSERT INTO remote_device_list_state"
                " (user_id, stream_id, seen, master_key, self_signing_key, up_to_date) VALUES (?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, seen = excluded.seen,"
                " master_key = excluded.master_key, self_signing_key = excluded.self_signing_key, up_to_date = 1",
                (user_id, max(seen), orjson.dumps(seen).decode(), _dump(master_key), _dump(self_signing_key)),
            )

        await self.db.write(fn)

    async def apply_update(
        self, user_id: str, stream_id: int, device: RemoteDevice, *, deleted: bool
    ) -> None:
        """One m.device_list_update, its prev_id already found among `seen`."""

        async def fn(txn: Txn) -> None:
            row = await txn.fetchone("SELECT seen FROM remote_device_list_state WHERE user_id = ?", (user_id,))
            if row is None:
                return
            seen = sorted({*orjson.loads(row[0]), stream_id})[-MAX_SEEN:]
            if deleted:
                await txn.execute(
                    "DELETE FROM remote_device_lists WHERE user_id = ? AND device_id = ?", (user_id, device.device_id)
                )
            else:
                await txn.execute(
                    "INSERT INTO remote_device_lists (user_id, device_id, keys_json, display_name) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (user_id, device_id) DO UPDATE SET keys_json = excluded.keys_json,"
                    " display_name = excluded.display_name",
                    (user_id, device.device_id, _dump(device.keys), device.display_name),
                )
            await txn.execute(
                "UPDATE remote_device_list_state SET seen = ?, stream_id = ? WHERE user_id = ?",
                (orjson.dumps(seen).decode(), max(seen), user_id),
            )

        await self.db.write(fn)

    async def set_signing_keys(
        self, user_id: str, master_key: dict[str, Any] | None, self_signing_key: dict[str, Any] | None
    ) -> None:
        """A m.signing_key_update: the keys it carries replace the cached ones."""

        async def fn(txn: Txn) -> None:
            if master_key is not None:
                await txn.execute(
                    "UPDATE remote_device_list_state SET master_key = ? WHERE user_id = ?", (_dump(master_key), user_id)
                )
            if self_signing_key is not None:
                await txn.execute(
                    "UPDATE remote_device_list_state SET self_signing_key = ? WHERE user_id = ?",
                    (_dump(self_signing_key), user_id),
                )

        await self.db.write(fn)

    async def mark_stale(self, user_id: str) -> None:
        await self.db.execute("UPDATE remote_device_list_state SET up_to_date = 0 WHERE user_id = ?", (user_id,))

    async def drop(self, user_id: str) -> None:
        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM remote_device_lists WHERE user_id = ?", (user_id,))
            await txn.execute("DELETE FROM remote_device_list_state WHERE user_id = ?", (user_id,))

        await self.db.write(fn)

    async def cached_users(self) -> list[str]:
        rows = await self.db.fetchall("SELECT user_id FROM remote_device_list_state")
        return [str(r[0]) for r in rows]


_SET_DIGEST = (
    "INSERT INTO device_list_announced (user_id, device_id, digest) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id, device_id) DO UPDATE SET digest = excluded.digest"
)


class AnnouncedDeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def announced(self, user_id: str) -> tuple[int, dict[str, str]]:
        """(stream ID of the last update sent, digest of each device as announced)."""

        async def fn(txn: Txn) -> tuple[int, dict[str, str]]:
            row = await txn.fetchone("SELECT stream_id FROM device_list_outbound WHERE user_id = ?", (user_id,))
            rows = await txn.fetchall(
                "SELECT device_id, digest FROM device_list_announced WHERE user_id = ?", (user_id,)
            )
            return (int(row[0]) if row else 0), {str(r[0]): str(r[1]) for r in rows}

        return await self.db.read(fn)

    async def record(self, user_id: str, stream_id: int, digests: dict[str, str | None]) -> None:
        """Updates for `digests` were sent at `stream_id` (None: the device was deleted)."""

        async def fn(txn: Txn) -> None:
            for device_id, digest in digests.items():
                if digest is None:
                    await txn.execute(
                        "DELETE FROM device_list_announced WHERE user_id = ? AND device_id = ?", (user_id, device_id)
                    )
                else:
                    await txn.execute(_SET_DIGEST, (user_id, device_id, digest))
            await txn.execute(
                "INSERT INTO device_list_outbound (user_id, stream_id) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id",
                (user_id, stream_id),
            )

        await self.db.write(fn)

    async def set_digest(self, user_id: str, device_id: str, digest: str) -> None:
        await self.db.execute(_SET_DIGEST, (user_id, device_id, digest))

    async def last_stream_id(self, user_id: str) -> int:
        row = await self.db.fetchone("SELECT stream_id FROM device_list_outbound WHERE user_id = ?", (user_id,))
        return int(row[0]) if row else 0
