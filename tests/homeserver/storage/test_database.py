"""The database interface on both engines: transactions, group commit, migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.storage.database import Database, DatabaseError, IntegrityError, Row, Txn
from homeserver.storage.migrations import SchemaTooNewError, all_migrations, migrate
from homeserver.storage.postgres import PostgresDatabase, convert_placeholders
from homeserver.storage.sqlite import SqliteDatabase
from tests.conftest import open_empty_database


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_empty_database(request.param, tmp_path / "t.db") as database:
        await migrate(database)
        await database.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        yield database


async def test_write_then_read(db: Database) -> None:
    async def put(txn: Txn) -> int:
        await txn.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 1))
        await txn.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", [("b", 2), ("c", 3)])
        return await txn.execute("UPDATE kv SET v = v + 10 WHERE v >= ?", (2,))

    assert await db.write(put) == 2
    assert await db.fetchall("SELECT k, v FROM kv ORDER BY k") == [("a", 1), ("b", 12), ("c", 13)]
    assert await db.fetchone("SELECT v FROM kv WHERE k = ?", ("zz",)) is None

    async def both(txn: Txn) -> tuple:
        return await txn.fetchone("SELECT count(*) FROM kv"), await txn.fetchall("SELECT k FROM kv WHERE k = 'a'")

    assert await db.read(both) == ((3,), [("a",)])


async def test_failed_transaction_rolls_back_only_itself(db: Database) -> None:
    await db.execute("INSERT INTO kv (k, v) VALUES ('x', 0)")

    async def good(i: int) -> None:
        await db.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (f"g{i}", i))

    async def bad(txn: Txn) -> None:
        await txn.execute("INSERT INTO kv (k, v) VALUES ('half', 1)")
        raise ValueError("boom")

    async def dup(txn: Txn) -> None:
        await txn.execute("INSERT INTO kv (k, v) VALUES ('x', 1)")

    results = await asyncio.gather(
        *(good(i) for i in range(20)), db.write(bad), db.write(dup), return_exceptions=True
    )
    assert isinstance(results[20], ValueError)
    assert isinstance(results[21], IntegrityError)
    assert all(r is None for r in results[:20])
    rows = dict(await db.fetchall("SELECT k, v FROM kv"))
    assert "half" not in rows
    assert rows["x"] == 0
    assert len(rows) == 21


async def test_group_commit_batches_concurrent_writers(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "g.db"), synchronous="full")
    await db.open()
    try:
        await db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        before = db.commits
        await asyncio.gather(
            *(db.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (str(i), i)) for i in range(300))
        )
        commits = db.commits - before
        assert (await db.fetchone("SELECT count(*) FROM kv")) == (300,)
        # 300 writers queued at once share a handful of commits (max_batch is 256).
        assert 2 <= commits <= 10, commits
    finally:
        await db.close()


async def test_close_commits_queued_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    db = SqliteDatabase(path)
    await db.open()
    await db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    pending = [
        asyncio.ensure_future(db.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (str(i), i)))
        for i in range(50)
    ]
    await asyncio.sleep(0)
    await db.close()
    assert all(p.done() and p.exception() is None for p in pending)
    db2 = SqliteDatabase(path)
    await db2.open()
    try:
        assert await db2.fetchone("SELECT count(*) FROM kv") == (50,)
        with pytest.raises(DatabaseError):
            await SqliteDatabase(path).write(lambda txn: txn.execute("SELECT 1"))
    finally:
        await db2.close()


def _sqlite_threads(others: frozenset[int] = frozenset()) -> list[str]:
    """Names of the live SQLite connection threads, but for those in `others` (idents)."""
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("sqlite-") and t.ident not in others]


def _thread_idents() -> frozenset[int]:
    import threading

    return frozenset(t.ident for t in threading.enumerate() if t.ident is not None)


async def test_sqlite_threads_end_with_close_and_with_a_failed_open(tmp_path: Path) -> None:
    """Each connection lives in a thread of its own: close ends them all (after the
    queued writes) and refuses work from then on; an open that fails ends those it
    started and says why."""
    others = _thread_idents()  # other tests' databases, if any are still open
    db = SqliteDatabase(str(tmp_path / "t.db"), read_connections=3)
    await db.open()
    assert sorted(_sqlite_threads(others)) == ["sqlite-reader-0", "sqlite-writer"]
    await db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    reads = await asyncio.gather(*(db.fetchone("SELECT count(*) FROM kv") for _ in range(20)))
    assert reads == [(0,)] * 20
    assert sorted(_sqlite_threads(others)) == [
        "sqlite-reader-0", "sqlite-reader-1", "sqlite-reader-2", "sqlite-writer"
    ]
    await db.close()
    assert _sqlite_threads(others) == []
    with pytest.raises(DatabaseError):
        await db.fetchall("SELECT 1")
    with pytest.raises(DatabaseError):
        await db.execute("INSERT INTO kv (k, v) VALUES ('a', 1)")

    missing = SqliteDatabase(str(tmp_path / "no" / "such" / "dir" / "t.db"))
    with pytest.raises(DatabaseError, match="cannot open SQLite database"):
        await missing.open()
    assert _sqlite_threads(others) == []


async def test_sqlite_readers_open_when_reads_wait_for_them(tmp_path: Path) -> None:
    """One reader is opened with the database; another each time a read finds every
    reader busy, up to `read_connections`, so reads never wait behind a busy reader while
    fewer are open. A reader that cannot open leaves the others serving."""
    import threading

    others = _thread_idents()
    db = SqliteDatabase(str(tmp_path / "r.db"), read_connections=3)
    await db.open()
    try:
        gate = threading.Event()

        async def held(txn: Txn) -> Row | None:  # keeps its reader busy until the gate opens
            gate.wait(10)
            return await txn.fetchone("SELECT 1")

        first = asyncio.ensure_future(db.read(held))
        await asyncio.sleep(0.05)
        assert sorted(_sqlite_threads(others)) == ["sqlite-reader-0", "sqlite-writer"]
        second = asyncio.ensure_future(db.read(held))  # reader-0 is busy: reader-1 opens for it
        more = [asyncio.ensure_future(db.read(held)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert sorted(_sqlite_threads(others)) == [
            "sqlite-reader-0", "sqlite-reader-1", "sqlite-reader-2", "sqlite-writer"
        ]
        gate.set()
        assert await asyncio.gather(first, second, *more) == [(1,)] * 5
        assert db._reads_in_flight == 0

        db.path = str(tmp_path / "no" / "such" / "dir" / "r.db")  # the next reader cannot open
        db.read_connections = 4
        gate.clear()
        busy = [asyncio.ensure_future(db.read(held)) for _ in range(4)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.gather(*busy) == [(1,)] * 4  # served by the three open readers
    finally:
        await db.close()
    assert _sqlite_threads(others) == []


async def test_sqlite_write_cancelled_before_its_batch_is_not_written(tmp_path: Path) -> None:
    """A caller gone before its batch started has nothing written; the others' writes,
    queued around it, commit as usual."""
    db = SqliteDatabase(str(tmp_path / "x.db"))
    await db.open()
    try:
        await db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        started, release = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        async def slow(txn: Txn) -> None:  # holds the writer until released
            loop.call_soon_threadsafe(started.set)
            while not release.is_set():
                await txn.fetchone("SELECT 1")

        first = asyncio.ensure_future(db.write(slow))
        await started.wait()
        gone = asyncio.ensure_future(db.execute("INSERT INTO kv (k, v) VALUES ('gone', 1)"))
        kept = asyncio.ensure_future(db.execute("INSERT INTO kv (k, v) VALUES ('kept', 1)"))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        await first
        await kept
        assert await db.fetchall("SELECT k FROM kv") == [("kept",)]
    finally:
        await db.close()


async def test_sqlite_uses_wal_and_readers_are_read_only(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "w.db"))
    await db.open()
    try:
        assert await db.fetchone("PRAGMA journal_mode") == ("wal",)
        with pytest.raises(Exception, match="readonly|read-only|attempt to write"):
            await db.fetchall("CREATE TABLE nope (x INTEGER)")
    finally:
        await db.close()


async def test_sqlite_readers_keep_a_small_page_cache(tmp_path: Path) -> None:
    """Each reader's page cache is the configured size (SQLite's default is 2 MB per
    connection, held once filled); the writer keeps the default."""
    db = SqliteDatabase(str(tmp_path / "c.db"), read_connections=3, reader_cache_kib=256)
    await db.open()
    try:
        sizes = await asyncio.gather(*(db.fetchone("PRAGMA cache_size") for _ in range(6)))
        assert set(sizes) == {(-256,)}
        assert await db.write(lambda txn: txn.fetchone("PRAGMA cache_size")) == (-2000,)
    finally:
        await db.close()


async def test_migrations_are_idempotent(db: Database) -> None:
    latest = all_migrations()[-1].version
    assert await db.fetchone("SELECT version FROM schema_version") == (latest,)
    assert await migrate(db) == latest
    assert await db.fetchone("SELECT count(*) FROM schema_version") == (1,)


async def test_newer_schema_is_refused(db: Database) -> None:
    latest = all_migrations()[-1].version
    await db.execute("UPDATE schema_version SET version = ?", (latest + 5,))
    with pytest.raises(SchemaTooNewError, match=f"version {latest + 5}.*newer Accord"):
        await migrate(db)


def test_placeholder_conversion_skips_literals() -> None:
    sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b = ?"
    assert convert_placeholders(sql) == "SELECT '?', \"a?\" FROM t WHERE a = $1 AND b = $2"


async def test_sqlite_refuses_transactions_that_await_other_things(tmp_path: Path) -> None:
    """Transaction functions run inside the SQLite thread; one that waits on the event
    loop would deadlock the writer, so it is refused and rolled back."""
    db = SqliteDatabase(str(tmp_path / "r.db"))
    await db.open()
    try:
        await db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")

        async def sleepy(txn: Txn) -> None:
            await txn.execute("INSERT INTO kv (k, v) VALUES ('a', 1)")
            await asyncio.sleep(0)  # yields to "the event loop": there is none in the SQLite thread

        with pytest.raises(RuntimeError, match="awaited something other than its Txn"):
            await db.write(sleepy)
        assert await db.fetchone("SELECT count(*) FROM kv") == (0,)
        await db.execute("INSERT INTO kv (k, v) VALUES ('b', 2)")  # the writer still works
        assert await db.fetchone("SELECT count(*) FROM kv") == (1,)
    finally:
        await db.close()


async def test_postgres_close_does_not_hang_when_the_server_went_away(pg_dsn: str) -> None:
    """A database dropped (its connections terminated) under a server: its stop still
    ends, the pool closed by force if a graceful close cannot finish."""
    import asyncio

    from tests.conftest import _pg_admin

    db = PostgresDatabase(pg_dsn, pool_size=4)
    await db.open()
    await db.fetchall("SELECT 1")
    name = pg_dsn.rsplit("/", 1)[1]
    admin = await _pg_admin()
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()
    async with asyncio.timeout(60):
        await db.close()
