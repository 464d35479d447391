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
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from homeserver.storage.migrations import all_migrations, migrate
from homeserver.storage.sqlite import SqliteDatabase

T = TypeVar("T")

_lock = threading.Lock()
_sqlite_template: Path | None = None


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
