"""Remote servers' signing keys and the key responses they came in (migration v006)."""

from __future__ import annotations

from collections.abc import Collection

import orjson

from homeserver.records.server_keys import StoredKey, StoredResponse
from homeserver.storage.database import Database, Txn


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def store_keys(
        self, keys: Collection[StoredKey], response: StoredResponse | None = None
    ) -> None:
        """Record keys (never shortening a validity already known) and, optionally,
        the response they came in, in one transaction."""

        async def fn(txn: Txn) -> None:
            for k in keys:
                await txn.execute(
                    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts,"
                    " expired_ts, fetched_ts, source) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (server_name, key_id) DO UPDATE SET"
                    " verify_key = excluded.verify_key, valid_until_ts = excluded.valid_until_ts,"
                    " expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts,"
                    " source = excluded.source"
                    " WHERE excluded.valid_until_ts >= server_keys.valid_until_ts",
                    (k.server_name, k.key_id, k.verify_key, k.valid_until_ts, k.expired_ts,
                     k.fetched_ts, k.source),
                )
            if response is not None:
                await txn.execute(
                    "INSERT INTO server_key_responses (server_name, valid_until_ts, fetched_ts,"
                    " response_json) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (server_name) DO UPDATE SET"
                    " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts,"
                    " response_json = excluded.response_json"
                    " WHERE excluded.valid_until_ts >= server_key_responses.valid_until_ts",
                    (response.server_name, response.valid_until_ts, response.fetched_ts,
                     orjson.dumps(response.response).decode()),
                )

        await self.db.write(fn)

    async def get_keys(self, server_name: str, key_ids: Collection[str] | None = None) -> list[StoredKey]:
        """A server's known keys; all of them when ``key_ids`` is None."""
        rows = await self.db.fetchall(
            "SELECT server_name, key_id, verify_key, valid_until_ts, expired_ts, fetched_ts, source"
            " FROM server_keys WHERE server_name = ?",
            (server_name,),
        )
        out = [
            StoredKey(r[0], r[1], r[2], int(r[3]), None if r[4] is None else int(r[4]), int(r[5]), r[6])
            for r in rows
        ]
        if key_ids is not None:
            wanted = set(key_ids)
            out = [k for k in out if k.key_id in wanted]
        return out

    async def get_response(self, server_name: str) -> StoredResponse | None:
        row = await self.db.fetchone(
            "SELECT server_name, valid_until_ts, fetched_ts, response_json"
            " FROM server_key_responses WHERE server_name = ?",
            (server_name,),
        )
        if row is None:
            return None
        return StoredResponse(row[0], int(row[1]), int(row[2]), orjson.loads(row[3]))
