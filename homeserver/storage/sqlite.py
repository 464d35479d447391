"""The embedded engine: SQLite in WAL mode through aiosqlite.

Every hop from the event loop to an aiosqlite connection's thread costs a
thread hand-off (0.2-0.3 ms here), far more than a small SQLite statement. So a
whole transaction function runs *inside* the connection's thread in one hop:
the `Txn` handed to it executes each statement synchronously and never
suspends, which lets the thread drive the function's coroutine to completion
by itself. A transaction function that awaits anything but its `Txn` is a bug
and is refused.

One writer connection owns all writes. Callers queue transaction functions;
the writer takes everything queued and runs it as one transaction with one
commit, so a burst of N concurrent writers costs one hop and one fsync (group
commit). Optimistically without savepoints; if a function fails, the batch is
rolled back and re-run with a savepoint around each function, so a failure
undoes only its own function. Readers use separate connections, which WAL lets
run beside the writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any, cast

import aiosqlite

from homeserver.storage.database import Database, DatabaseError, IntegrityError, Row, T, TxnFn

logger = logging.getLogger(__name__)

DIALECT = {
    "bigint_pk": "INTEGER PRIMARY KEY",
    "blob": "BLOB",
    "bigint": "INTEGER",
    "engine": "sqlite",  # for migrations whose SQL differs (full-text search)
}
MIN_SQLITE = (3, 35, 0)  # RETURNING


class _ThreadTxn:
    """A transaction as seen from inside the SQLite thread: statements run at once."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _run(self, sql: str, args: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, tuple(args))
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = self._run(sql, args)
        count = cur.rowcount
        cur.close()
        return count

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, [tuple(a) for a in args])
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from e

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        cur = self._run(sql, args)
        rows = cur.fetchall()  # fetch all so INSERT ... RETURNING completes
        cur.close()
        return tuple(rows[0]) if rows else None

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cur = self._run(sql, args)
        rows = cur.fetchall()
        cur.close()
        return [tuple(r) for r in rows]


def _drive(awaitable: Awaitable[T]) -> T:
    """Run a transaction coroutine to completion in the current (SQLite) thread."""
    coro = cast("Coroutine[Any, Any, T]", awaitable)  # transaction functions are coroutines
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a database transaction function awaited something other than its Txn")


def _run_batch(conn: sqlite3.Connection, fns: list[TxnFn[Any]]) -> list[tuple[bool, Any]]:
    """Runs in the writer thread: one transaction, one commit, for the whole batch."""
    txn = _ThreadTxn(conn)
    conn.execute("BEGIN IMMEDIATE")
    results: list[Any] = []
    try:
        for fn in fns:
            results.append(_drive(fn(txn)))
    except Exception:
        conn.execute("ROLLBACK")
    else:
        conn.execute("COMMIT")
        return [(True, r) for r in results]

    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for fn in fns:
            conn.execute("SAVEPOINT job")
            try:
                result = _drive(fn(txn))
            except Exception as e:  # the function's own failure: undo just its part
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((False, e))
            else:
                conn.execute("RELEASE job")
                outcomes.append((True, result))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_read(conn: sqlite3.Connection, fn: TxnFn[T]) -> T:
    conn.execute("BEGIN")
    try:
        return _drive(fn(_ThreadTxn(conn)))
    finally:
        conn.execute("COMMIT")


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
        reader_cache_kib: int = 512,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.read_connections = read_connections
        self.max_batch = max_batch
        # Each connection keeps its own page cache (2 MB by default, filled under load and
        # never given back): the readers' are kept small, since what they read is in
        # the system's file cache anyway; the writer keeps the default for its indexes.
        self.reader_cache_kib = reader_cache_kib
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._queue: asyncio.Queue[tuple[TxnFn[Any] | None, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self.commits = 0  # observable for tests and benchmarks: how many commits ran

    @staticmethod
    async def _in_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(sqlite3 connection) in the connection's own thread, in one hop.

        aiosqlite offers no public call for this; its `_execute` is what every public
        method uses, and the pinned version is covered by the storage tests.
        """
        return await conn._execute(lambda: fn(conn._conn))

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise DatabaseError(
                f"SQLite {sqlite3.sqlite_version} is too old; Accord needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer"
            )
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
                await conn.execute(f"PRAGMA cache_size = {-int(self.reader_cache_kib)}")
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
            self._queue.put_nowait((None, done))
            await self._writer_task
            self._writer_task = None
        for conn in self._all_readers:
            await conn.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def write(self, fn: TxnFn[T]) -> T:
        return await self._enqueue(fn)

    ordered_writes = True

    def queue_write(self, fn: TxnFn[T]) -> asyncio.Future[T]:
        # One writer working one FIFO queue: queued writes run in order.
        return self._enqueue(fn)

    def _enqueue(self, fn: TxnFn[T]) -> asyncio.Future[T]:
        if self._writer_task is None:
            raise DatabaseError("database is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, fut))
        return fut

    async def _write_loop(self) -> None:
        assert self._writer is not None
        conn = self._writer
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stopping = [fut for fn, fut in batch if fn is None]
            live = [(fn, fut) for fn, fut in batch if fn is not None and not fut.cancelled()]
            if live:
                fns = [fn for fn, _ in live]
                try:
                    outcomes = await self._in_thread(conn, partial(_run_batch, fns=fns))
                    self.commits += 1
                except Exception as e:
                    logger.exception("group commit failed")
                    outcomes = [(False, DatabaseError(f"commit failed: {e}"))] * len(live)
                for (_, fut), (ok, value) in zip(live, outcomes, strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
            if stopping:
                for fut in stopping:
                    fut.set_result(None)
                return

    async def read(self, fn: TxnFn[T]) -> T:
        conn = await self._readers.get()
        try:
            return await self._in_thread(conn, lambda c: _run_read(c, fn))
        finally:
            self._readers.put_nowait(conn)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        conn = await self._readers.get()
        try:
            rows = await conn.execute_fetchall(sql, tuple(args))
            return [tuple(r) for r in rows]
        finally:
            self._readers.put_nowait(conn)
