"""Migrated schemas made once per test session, so a test's database starts migrated.

Almost every test starts a server on a fresh database, and bringing an empty database up to
the current schema (every migration, each in its own transaction) costs far more than the
test itself: a few hundred milliseconds on SQLite, seconds on PostgreSQL. The schema is the
same each time, so the session migrates one database per engine with the real migrations and
gives each test a copy: a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL.

Nothing about the server under test changes: it still opens the copy, runs ``migrate`` (which
finds the schema current) and writes everything else it writes on first start itself; only
the schema is shared. Tests of migrations themselves (tests/homeserver/storage) and the
end-to-end tests, which start the ``accord`` command on an empty data dir, still migrate from
nothing.

Dropping a PostgreSQL database makes the server checkpoint, which takes seconds on a busy
machine; the test has no use for the wait, so a thread of its own drops databases in the
background (`drop_pg_database_later`) while the next tests run, and the session waits for it
to finish at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import queue
import secrets
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from homeserver.storage.migrations import all_migrations, migrate
from homeserver.storage.postgres import PostgresDatabase
from homeserver.storage.sqlite import SqliteDatabase

T = TypeVar("T")

_lock = threading.Lock()
_sqlite_template: Path | None = None
_pg_templates: dict[str, str] = {}  # admin DSN -> name of its migrated template database


def run_in_own_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` run to completion on a new event loop in a thread of its own: callers may
    be inside a running loop (an async fixture) or outside any (a sync helper)."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as e:  # re-raised in the caller's thread
            error.append(e)

    thread = threading.Thread(target=target, name="db-template")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


async def _migrate_sqlite(path: Path) -> None:
    db = SqliteDatabase(str(path), synchronous="normal")
    await db.open()
    try:
        await migrate(db)
    finally:
        await db.close()


def sqlite_template() -> Path:
    """An SQLite file migrated to the current schema (made on first use, removed at exit)."""
    global _sqlite_template
    with _lock:
        if _sqlite_template is None:
            directory = Path(tempfile.mkdtemp(prefix="accord-schema-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            path = directory / f"v{all_migrations()[-1].version}.db"
            run_in_own_loop(_migrate_sqlite(path))
            # Closed cleanly, the database is all in the main file (no -wal/-shm to copy).
            leftovers = [p.name for p in directory.iterdir() if p != path]
            assert not leftovers, f"schema template not checkpointed: {leftovers}"
            _sqlite_template = path
        return _sqlite_template


def seed_sqlite(path: Path) -> None:
    """Give ``path`` (not yet existing) the migrated schema."""
    shutil.copyfile(sqlite_template(), path)


def dsn_of(admin_dsn: str, name: str) -> str:
    """The DSN of database ``name`` on the server ``admin_dsn`` connects to."""
    return f"{admin_dsn.rpartition('/')[0]}/{name}"


async def _admin_execute(admin_dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=30)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _make_pg_template(admin_dsn: str, name: str) -> None:
    await _admin_execute(admin_dsn, f"CREATE DATABASE {name}")
    db = PostgresDatabase(dsn_of(admin_dsn, name))
    await db.open()
    try:
        await migrate(db)
    finally:
        await db.close()


def pg_template(admin_dsn: str) -> str:
    """The name of a PostgreSQL database migrated to the current schema, to be cloned with
    ``CREATE DATABASE ... TEMPLATE`` (made on first use, dropped at exit). Its name is the
    session's own: other test runs on the same server have theirs."""
    with _lock:
        if admin_dsn not in _pg_templates:
            name = "accord_test_schema_" + secrets.token_hex(6)
            try:
                run_in_own_loop(_make_pg_template(admin_dsn, name))
            except BaseException:
                drop_pg_database_later(admin_dsn, name)
                raise
            _pg_templates[admin_dsn] = name
        return _pg_templates[admin_dsn]


_drops: queue.Queue[tuple[str, str]] = queue.Queue()
_dropper: threading.Thread | None = None
_dropper_lock = threading.Lock()


def _drop_forever() -> None:
    while True:
        admin_dsn, name = _drops.get()
        try:
            asyncio.run(_admin_execute(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        except Exception as e:  # a leftover database must not fail an unrelated test
            print(f"could not drop test database {name}: {e!r}")
        finally:
            _drops.task_done()


def drop_pg_database_later(admin_dsn: str, name: str) -> None:
    """Drop database ``name`` soon, in the background; the session waits for it at exit."""
    global _dropper
    with _dropper_lock:
        if _dropper is None:
            _dropper = threading.Thread(target=_drop_forever, name="pg-dropper", daemon=True)
            _dropper.start()
    _drops.put((admin_dsn, name))


@atexit.register
def _drop_templates_and_wait() -> None:
    """At exit: the templates go too, and every queued drop finishes before the process does."""
    for admin_dsn, name in _pg_templates.items():
        drop_pg_database_later(admin_dsn, name)
    _drops.join()
