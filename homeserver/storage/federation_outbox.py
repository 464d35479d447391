"""The outbound federation queue: PDUs (by event ID) and durable EDUs per destination.

The sender reads a destination's next batch from here for every transaction
instead of keeping the queue in memory, so a destination that is down for days
costs disk, not memory, and a restart resumes exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from homeserver.records.federation_outbox import EDU, PDU, OutboxBatch, OutboxItem
from homeserver.storage.database import Database, Txn


class FederationOutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, items: Sequence[OutboxItem]) -> None:
        """Queue items in the given order (one transaction for all)."""
        if not items:
            return

        async def fn(txn: Txn) -> None:
            await self.add_in_txn(txn, items)

        await self.db.write(fn)

    @staticmethod
    async def add_in_txn(txn: Txn, items: Sequence[OutboxItem]) -> None:
        """Queue items inside the caller's transaction (a local event's own write,
        so the event and its outbox rows commit together or not at all)."""
        if not items:
            return
        await txn.executemany(
            "INSERT INTO federation_outbox (destination, kind, event_id, edu_json) VALUES (?, ?, ?, ?)",
            [(i.destination, i.kind, i.event_id, i.edu_json) for i in items],
        )

    async def next_batch(self, destination: str, max_pdus: int, max_edus: int) -> OutboxBatch:
        """The oldest PDUs and EDUs queued for the destination, each in queue order."""

        async def fn(txn: Txn) -> OutboxBatch:
            pdus = await txn.fetchall(
                "SELECT seq, event_id FROM federation_outbox WHERE destination = ? AND kind = ?"
                " ORDER BY seq LIMIT ?",
                (destination, PDU, max_pdus),
            )
            edus = await txn.fetchall(
                "SELECT seq, edu_json FROM federation_outbox WHERE destination = ? AND kind = ?"
                " ORDER BY seq LIMIT ?",
                (destination, EDU, max_edus),
            )
            return OutboxBatch([(int(s), e) for s, e in pdus], [(int(s), j) for s, j in edus])

        return await self.db.read(fn)

    async def remove(self, seqs: Iterable[int]) -> None:
        """Forget delivered (or dropped) items."""
        args = [(s,) for s in seqs]
        if not args:
            return

        async def fn(txn: Txn) -> None:
            await txn.executemany("DELETE FROM federation_outbox WHERE seq = ?", args)

        await self.db.write(fn)

    async def remove_destination(self, destination: str) -> None:
        """Forget everything queued for a destination we no longer federate with."""
        await self.db.execute("DELETE FROM federation_outbox WHERE destination = ?", (destination,))

    async def pending_destinations(self) -> list[str]:
        rows = await self.db.fetchall("SELECT DISTINCT destination FROM federation_outbox")
        return sorted(r[0] for r in rows)

    async def count(self, destination: str | None = None) -> int:
        if destination is None:
            row = await self.db.fetchone("SELECT COUNT(*) FROM federation_outbox")
        else:
            row = await self.db.fetchone(
                "SELECT COUNT(*) FROM federation_outbox WHERE destination = ?", (destination,)
            )
        return int(row[0]) if row else 0

    async def next_epoch(self) -> int:
        """Bump and return the sender's epoch (once per start)."""

        async def fn(txn: Txn) -> int:
            row = await txn.fetchone("UPDATE federation_sender SET epoch = epoch + 1 RETURNING epoch")
            assert row is not None
            return int(row[0])

        return await self.db.write(fn)
