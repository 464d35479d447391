"""To-device messages: each recipient device's inbox, the senders' transaction
IDs, and the stream's highest position handed out."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from homeserver.records.federation_outbox import EDU, OutboxItem
from homeserver.records.to_device import ToDeviceMessage
from homeserver.storage.database import Database, Txn
from homeserver.storage.federation_outbox import FederationOutboxStore

STREAM = "to_device"


async def bump_position(txn: Txn, stream: str, pos: int) -> None:
    """Remember `pos` as handed out on `stream` (kept as the highest ever)."""
    await txn.execute(
        "INSERT INTO e2ee_stream_positions (stream, pos) VALUES (?, ?)"
        " ON CONFLICT (stream) DO UPDATE SET pos = CASE WHEN excluded.pos > e2ee_stream_positions.pos"
        " THEN excluded.pos ELSE e2ee_stream_positions.pos END",
        (stream, pos),
    )


async def saved_position(db: Database, stream: str) -> int:
    row = await db.fetchone("SELECT pos FROM e2ee_stream_positions WHERE stream = ?", (stream,))
    return int(row[0]) if row else 0


class ToDeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def max_position(self) -> int:
        return await saved_position(self.db, STREAM)

    async def deliver(
        self,
        *,
        sender: str,
        sender_device: str,
        txn_id: str,
        now_ms: int,
        event_type: str,
        messages: Sequence[tuple[str, str, str]],
        positions: Sequence[int],
        max_pending: int,
        edus: Sequence[tuple[str, str]] = (),
        prune_txns_before: int | None = None,
    ) -> bool:
        """Store `messages` ((user_id, device_id, content JSON) each, at the matching
        position) and queue `edus` ((destination, EDU JSON) for other servers'
        users) in the federation outbox, under the sender's transaction; False,
        storing nothing, if the transaction was already seen. A device left with
        more than `max_pending` messages loses its oldest ones. With
        `prune_txns_before`, every sender's transaction IDs remembered since
        before that time are forgotten first."""

        async def fn(txn: Txn) -> bool:
            if prune_txns_before is not None:
                await txn.execute("DELETE FROM to_device_txns WHERE ts < ?", (prune_txns_before,))
            if positions:  # handed out even when unused: a token may already hold them
                await bump_position(txn, STREAM, max(positions))
            seen = await txn.fetchone(
                "SELECT 1 FROM to_device_txns WHERE user_id = ? AND device_id = ? AND txn_id = ?",
                (sender, sender_device, txn_id),
            )
            if seen is not None:
                return False
            await txn.execute(
                "INSERT INTO to_device_txns (user_id, device_id, txn_id, ts) VALUES (?, ?, ?, ?)",
                (sender, sender_device, txn_id, now_ms),
            )
            await FederationOutboxStore.add_in_txn(txn, [OutboxItem(d, EDU, edu_json=j) for d, j in edus])
            if messages:
                await txn.executemany(
                    "INSERT INTO device_inbox (stream_id, user_id, device_id, sender, event_type, content)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(pos, u, d, sender, event_type, c) for pos, (u, d, c) in zip(positions, messages, strict=True)],
                )
                for user_id, device_id in {(u, d) for u, d, _ in messages}:
                    await txn.execute(
                        "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ("
                        " SELECT stream_id FROM device_inbox WHERE user_id = ? AND device_id = ?"
                        " ORDER BY stream_id DESC LIMIT 1 OFFSET ?)",
                        (user_id, device_id, user_id, device_id, max_pending),
                    )
            return True

        return await self.db.write(fn)

    async def pending(
        self, user_id: str, device_id: str, after: int, upto: int, limit: int | None = None
    ) -> list[ToDeviceMessage]:
        rows = await self.db.fetchall(
            "SELECT stream_id, sender, event_type, content FROM device_inbox"
            " WHERE user_id = ? AND device_id = ? AND stream_id > ? AND stream_id <= ? ORDER BY stream_id"
            + (" LIMIT ?" if limit is not None else ""),
            (user_id, device_id, after, upto, *([limit] if limit is not None else [])),
        )
        return [ToDeviceMessage(int(r[0]), r[1], r[2], orjson.loads(r[3])) for r in rows]

    async def acknowledge(self, user_id: str, device_id: str, upto: int) -> int:
        """Delete the device's messages up to `upto` (its sync token's position)."""
        return await self.db.execute(
            "DELETE FROM device_inbox WHERE user_id = ? AND device_id = ? AND stream_id <= ?",
            (user_id, device_id, upto),
        )

    async def count_pending(self, user_id: str, device_id: str) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM device_inbox WHERE user_id = ? AND device_id = ?", (user_id, device_id)
        )
        return int(row[0]) if row else 0

    async def drop_deleted_devices(self, user_id: str) -> None:
        """Delete the inboxes and transaction IDs of the user's devices that no longer exist."""

        async def fn(txn: Txn) -> None:
            for table in ("device_inbox", "to_device_txns"):
                await txn.execute(
                    f"DELETE FROM {table} WHERE user_id = ? AND device_id NOT IN"
                    " (SELECT device_id FROM devices WHERE user_id = ?)",
                    (user_id, user_id),
                )

        await self.db.write(fn)
