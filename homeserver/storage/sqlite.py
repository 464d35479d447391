"""The embedded engine: SQLite in WAL mode, each connection in a thread of its own.

Every hop from the event loop to a connection's thread costs a thread hand-off,
far more than a small SQLite statement. So a whole transaction function runs
*inside* the connection's thread in one hop: the `Txn` handed to it executes each
statement synchronously and never suspends, which lets the thread drive the
function's coroutine to completion by itself. A transaction function that awaits
anything but its `Txn` is a bug and is refused.

One writer connection owns all writes. Callers queue transaction functions;
the writer takes everything queued and runs it as one transaction with one
commit, so a burst of N concurrent writers costs one hop and one fsync (group
commit). Optimistically without savepoints; if a function fails, the batch is
rolled back and re-run with a savepoint around each function, so a failure
undoes only its own function. Readers use separate connections, which WAL lets
run beside the writer; they take read jobs from one shared queue, and are opened
as concurrent reads need them (`_add_reader`), up to `read_connections`.

The hand-off is as short as it can be made (`_Thread`): the writes queued in one
turn of the event loop go onto the writer thread's `queue.SimpleQueue` with one
`put` at its end (one callback, no task), which wakes the thread, and a batch's
callers are all answered by one `call_soon_threadsafe`. Through aiosqlite a write took a turn of the loop on
each side of the thread (a writer task took the queue, then woke again to answer
the callers), and every call went through its wrapper's bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any, cast

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


def _fetch(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[Row]:
    cur = conn.execute(sql, args)
    try:
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """In the event loop: hand a thread's answer to whoever awaits it (if anyone still does)."""
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _log_open_failure(opened: asyncio.Future[Any]) -> None:
    if not opened.cancelled() and opened.exception() is not None:
        logger.error("cannot open another SQLite reader: %s", opened.exception())


def _resolve_all(futs: list[asyncio.Future[Any]], outcomes: list[tuple[bool, Any]]) -> None:
    for fut, (ok, value) in zip(futs, outcomes, strict=True):
        _resolve(fut, ok, value)


# A job for a reader thread: a function of the connection, and the future for its answer.
_Read = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]
# A job for the writer thread: a transaction function (None: stop once the queue before
# it is done), and the future for its answer.
_Write = tuple["TxnFn[Any] | None", "asyncio.Future[Any]"]


class _Thread:
    """One SQLite connection and the only thread that uses it.

    The thread opens the connection, then serves jobs from a `queue.SimpleQueue` until
    told to stop: the event loop hands a job over with one `put` (which wakes the
    thread at once, without a turn of the loop) and gets each answer back with one
    `call_soon_threadsafe`."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.loop = loop
        self.opened: asyncio.Future[Any] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.thread: threading.Thread | None = None

    def start(
        self,
        connect: Callable[[], sqlite3.Connection],
        serve: Callable[[sqlite3.Connection, asyncio.AbstractEventLoop], None],
    ) -> None:
        def main() -> None:
            try:
                conn = connect()
            except BaseException as e:  # noqa: BLE001 - told to the opener, whatever it was
                self.loop.call_soon_threadsafe(_resolve, self.opened, False, e)
                self.loop.call_soon_threadsafe(_resolve, self.stopped, True, None)
                return
            self.loop.call_soon_threadsafe(_resolve, self.opened, True, None)
            try:
                serve(conn, self.loop)
            finally:
                conn.close()
                self.loop.call_soon_threadsafe(_resolve, self.stopped, True, None)

        self.thread = threading.Thread(target=main, name=self.name, daemon=True)
        self.thread.start()

    def join(self) -> None:
        """Once `stopped`: the thread has only to return (a moment), so its end is awaited
        in place, and a closed database leaves no thread of its own behind."""
        if self.thread is not None:
            self.thread.join()


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
        # Writes queued during the current turn of the event loop, handed to the writer
        # thread together at its end (`_hand_over`), as one unit of its queue.
        self._pending: list[_Write] = []
        self._writes: queue.SimpleQueue[list[_Write]] = queue.SimpleQueue()
        self._reads: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()
        self._writer: _Thread | None = None
        self._readers: list[_Thread] = []  # opened as reads need them (`_add_reader`)
        self._reads_in_flight = 0  # read jobs handed to the readers and not answered yet
        self._open = False  # writes and reads are taken
        self.commits = 0  # observable for tests and benchmarks: how many commits ran

    def _connect(self, *pragmas: str) -> sqlite3.Connection:
        """A connection as every one of ours is set up (in the thread that will use it)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in ("PRAGMA busy_timeout = 10000", "PRAGMA foreign_keys = ON", *pragmas):
                conn.execute(pragma).close()
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise DatabaseError(f"SQLite database {self.path} refused WAL mode")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}").close()
        except BaseException:
            conn.close()
            raise
        return conn

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise DatabaseError(
                f"SQLite {sqlite3.sqlite_version} is too old; Accord needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer"
            )
        loop = asyncio.get_running_loop()
        try:
            self._writer = _Thread("sqlite-writer", loop)
            self._writer.start(self._connect_writer, self._serve_writes)
            await self._writer.opened
            await self._add_reader(loop).opened
        except (sqlite3.Error, DatabaseError) as e:
            await self._stop_threads()
            if isinstance(e, DatabaseError):
                raise
            raise DatabaseError(f"cannot open SQLite database {self.path}: {e}") from e
        self._open = True

    async def close(self) -> None:
        self._open = False
        await self._stop_threads()

    def _add_reader(self, loop: asyncio.AbstractEventLoop) -> _Thread:
        """Start one more reader connection (it takes jobs from the shared queue once open).

        The first is opened with the writer; the others only when reads queue up behind
        the busy ones (`_read_job`), up to `read_connections`: a quiet server keeps one
        connection's schema and page cache and one thread (about 0.2 MB each) instead of
        all of them."""
        pragmas = ("PRAGMA query_only = ON", f"PRAGMA cache_size = {-int(self.reader_cache_kib)}")
        reader = _Thread(f"sqlite-reader-{len(self._readers)}", loop)
        self._readers.append(reader)
        reader.start(partial(self._connect, *pragmas), self._serve_reads)
        return reader

    async def _stop_threads(self) -> None:
        if self._writer is not None:
            # A sentinel behind every queued write: those were promised to callers, so
            # they commit before the writer stops.
            if not self._writer.stopped.done():
                self._hand_over()
                self._writes.put([(None, self._writer.loop.create_future())])
            await self._writer.stopped
            self._writer.join()
            self._writer = None
        for _ in self._readers:
            self._reads.put(None)
        for reader in self._readers:
            await reader.stopped
            reader.join()
        self._readers.clear()

    async def write(self, fn: TxnFn[T]) -> T:
        return await self._enqueue(fn)

    ordered_writes = True

    def queue_write(self, fn: TxnFn[T]) -> asyncio.Future[T]:
        # One writer working one FIFO queue: queued writes run in order.
        return self._enqueue(fn)

    def _enqueue(self, fn: TxnFn[T]) -> asyncio.Future[T]:
        if not self._open:
            raise DatabaseError("database is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append((fn, fut))
        return fut

    def _hand_over(self) -> None:
        """Give the writer thread what this turn of the loop queued, in one `put`.

        Handed over one by one, the first write of a burst would wake the thread while
        the loop is still taking the burst's other requests: the writer would commit it
        alone and contend with the loop for the interpreter meanwhile (fewer writes per
        commit, more CPU per write). At the end of the turn, the burst is one batch."""
        if self._pending:
            jobs, self._pending = self._pending, []
            self._writes.put(jobs)

    def _serve_writes(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread: takes everything queued (up to `max_batch`) and runs it as
        one transaction with one commit, then answers the batch's callers in one turn
        of the event loop; what is queued meanwhile is the next batch."""
        left: list[_Write] = []  # taken from the queue, beyond the last batch's max_batch
        while True:
            batch = left or self._writes.get()
            while len(batch) < self.max_batch:
                try:
                    batch = batch + self._writes.get_nowait()
                except queue.Empty:
                    break
            batch, left = batch[: self.max_batch], batch[self.max_batch :]
            stopping = [fut for fn, fut in batch if fn is None]
            # A caller gone before its batch started (cancelled) has nothing written.
            live = [(fn, fut) for fn, fut in batch if fn is not None and not fut.cancelled()]
            if live:
                try:
                    outcomes = _run_batch(conn, [fn for fn, _ in live])
                    self.commits += 1
                except Exception as e:
                    logger.exception("group commit failed")
                    outcomes = [(False, DatabaseError(f"commit failed: {e}"))] * len(live)
                loop.call_soon_threadsafe(_resolve_all, [fut for _, fut in live], outcomes)
            if stopping and not left:
                loop.call_soon_threadsafe(_resolve_all, stopping, [(True, None)] * len(stopping))
                return

    def _serve_reads(self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """A reader thread: the readers take the read jobs from one queue, in order."""
        while True:
            job = self._reads.get()
            if job is None:
                return
            fn, fut = job
            try:
                value, ok = fn(conn), True
            except BaseException as e:  # noqa: BLE001 - the caller's to handle
                value, ok = e, False
            loop.call_soon_threadsafe(self._read_answered, fut, ok, value)

    def _read_job(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if not self._open:
            raise DatabaseError("database is not open")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._reads_in_flight >= len(self._readers) and len(self._readers) < self.read_connections:
            # Every reader has a job already: one more is opened. If it cannot open, the
            # others serve on (its error is logged, not raised to this caller).
            self._add_reader(loop).opened.add_done_callback(_log_open_failure)
        self._reads_in_flight += 1
        self._reads.put((fn, fut))
        return fut

    def _read_answered(self, fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
        """In the event loop: a reader's answer, and one job fewer in flight."""
        self._reads_in_flight -= 1
        _resolve(fut, ok, value)

    async def read(self, fn: TxnFn[T]) -> T:
        return await self._read_job(partial(_run_read, fn=fn))

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return await self._read_job(partial(_fetch, sql=sql, args=tuple(args)))
