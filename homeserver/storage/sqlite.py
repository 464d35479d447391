"""The embedded engine: SQLite in WAL mode through aiosqlite.

One writer connection owns all writes. Callers queue transaction functions; the
writer takes everything queued, runs each inside its own SAVEPOINT within one
transaction, and commits once, so a burst of N concurrent writers costs one
fsync instead of N (group commit). A failing function rolls back only its own
savepoint. Readers use separate connections, which WAL lets run alongside the
writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

from homeserver.storage.database import Database, DatabaseError, IntegrityError, Row, T, TxnFn

logger = logging.getLogger(__name__)

DIALECT = {
    "bigint_pk": "INTEGER PRIMARY KEY",
    "blob": "BLOB",
    "bigint": "INTEGER",
}


class _SqliteTxn:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        try:
            cur = await self._conn.execute(sql, tuple(args))
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e
        count = cur.rowcount
        await cur.close()
        return count

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        try:
            await self._conn.executemany(sql, [tuple(a) for a in args])
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        rows = await self._conn.execute_fetchall(sql, tuple(args))
        for row in rows:
            return tuple(row)
        return None

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        rows = await self._conn.execute_fetchall(sql, tuple(args))
        return [tuple(r) for r in rows]


class SqliteDatabase(Database):
    engine = "sqlite"
    dialect = DIALECT

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "full",
        read_connections: int = 4,
        max_batch: int = 256,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.read_connections = read_connections
        self.max_batch = max_batch
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._queue: asyncio.Queue[tuple[TxnFn[Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self.commits = 0  # observable for tests and benchmarks: how many commits ran

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def open(self) -> None:
        try:
            self._writer = await self._connect()
            mode = await self._writer.execute_fetchall("PRAGMA journal_mode = WAL")
            if list(mode)[0][0].lower() != "wal":
                raise DatabaseError(f"SQLite database {self.path} refused WAL mode")
            await self._writer.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            for _ in range(self.read_connections):
                conn = await self._connect()
                self._all_readers.append(conn)
                await conn.execute("PRAGMA query_only = ON")
                self._readers.put_nowait(conn)
        except (sqlite3.Error, DatabaseError) as e:
            await self.close()
            if isinstance(e, DatabaseError):
                raise
            raise DatabaseError(f"cannot open SQLite database {self.path}: {e}") from e
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def close(self) -> None:
        if self._writer_task is not None:
            # A sentinel behind every queued write: those were promised to callers, so
            # they commit before the writer stops.
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.put_nowait((None, done))  # type: ignore[arg-type]
            await self._writer_task
            self._writer_task = None
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def write(self, fn: TxnFn[T]) -> T:
        if self._writer_task is None:
            raise DatabaseError("database is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, fut))
        return await fut

    async def _write_loop(self) -> None:
        assert self._writer is not None
        conn = self._writer
        txn = _SqliteTxn(conn)
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stopping = [fut for fn, fut in batch if fn is None]
            batch = [(fn, fut) for fn, fut in batch if fn is not None]
            if not batch:
                for fut in stopping:
                    fut.set_result(None)
                return
            try:
                outcomes = await self._commit_batch(conn, txn, batch)
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(DatabaseError("database closed during write"))
                raise
            except Exception as e:
                logger.exception("group commit failed")
                try:
                    await conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(DatabaseError(f"commit failed: {e}"))
                outcomes = []
            for (_, fut), (ok, value) in zip(batch, outcomes, strict=False):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                elif value is not None:
                    fut.set_exception(value)
            if stopping:
                for fut in stopping:
                    fut.set_result(None)
                return

    async def _commit_batch(
        self, conn: aiosqlite.Connection, txn: _SqliteTxn, batch: list[tuple[TxnFn[Any], asyncio.Future[Any]]]
    ) -> list[tuple[bool, Any]]:
        """Run a batch in one transaction and commit it once.

        Optimistic first: no savepoints, since every statement costs a hop to the
        SQLite thread. Only if some job fails is the batch rolled back and re-run
        with a savepoint around each job, so a failure undoes just its own job.
        """
        live = [(fn, fut) for fn, fut in batch if not fut.cancelled()]
        await conn.execute("BEGIN IMMEDIATE")
        results: list[Any] = []
        try:
            for fn, _ in live:
                results.append(await fn(txn))
        except Exception:
            await conn.execute("ROLLBACK")
        else:
            await conn.execute("COMMIT")
            self.commits += 1
            it = iter(results)
            return [(False, None) if fut.cancelled() else (True, next(it)) for _, fut in batch]

        outcomes: list[tuple[bool, Any]] = []
        await conn.execute("BEGIN IMMEDIATE")
        for fn, fut in batch:
            if fut.cancelled():
                outcomes.append((False, None))
                continue
            await conn.execute("SAVEPOINT job")
            try:
                result = await fn(txn)
            except Exception as e:  # the job's own failure: undo just its part
                await conn.execute("ROLLBACK TO job")
                await conn.execute("RELEASE job")
                outcomes.append((False, e))
            else:
                await conn.execute("RELEASE job")
                outcomes.append((True, result))
        await conn.execute("COMMIT")
        self.commits += 1
        return outcomes

    async def read(self, fn: TxnFn[T]) -> T:
        conn = await self._readers.get()
        try:
            await conn.execute("BEGIN")
            try:
                return await fn(_SqliteTxn(conn))
            finally:
                await conn.execute("COMMIT")
        finally:
            self._readers.put_nowait(conn)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        conn = await self._readers.get()
        try:
            rows = await conn.execute_fetchall(sql, tuple(args))
            return [tuple(r) for r in rows]
        finally:
            self._readers.put_nowait(conn)
