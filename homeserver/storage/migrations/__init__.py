"""Versioned schema migrations, applied in order at startup.

Each migration is a module `vNNN_name.py` with a `statements(dialect)` function
returning its SQL. The schema version lives in the database, so a database that
was upgraded by a newer Accord is recognised and refused instead of misread.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from homeserver.storage.database import Database, DatabaseError, Txn


class SchemaTooNewError(DatabaseError):
    """The database was written by a newer version of Accord."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


def all_migrations() -> list[Migration]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("v"):
            continue
        num, _, name = info.name[1:].partition("_")
        found.append(Migration(int(num), name, importlib.import_module(f"{__name__}.{info.name}")))
    found.sort(key=lambda m: m.version)
    for i, m in enumerate(found, start=1):
        if m.version != i:
            raise RuntimeError(f"migrations must be numbered 1..N without gaps; {m.version} at {i}")
    return found


async def current_version(db: Database) -> int:
    async def fn(txn: Txn) -> int:
        await txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = await txn.fetchone("SELECT version FROM schema_version")
        if row is None:
            await txn.execute("INSERT INTO schema_version (version) VALUES (0)")
            return 0
        return int(row[0])

    return await db.write(fn)


async def migrate(db: Database) -> int:
    """Bring the schema up to date; returns the version now in force."""
    migrations = all_migrations()
    latest = migrations[-1].version if migrations else 0
    version = await current_version(db)
    if version > latest:
        raise SchemaTooNewError(
            f"the database schema is version {version}, but this Accord only knows up to "
            f"version {latest}: it was used by a newer Accord; upgrade Accord or restore a backup"
        )
    for m in migrations[version:]:

        async def apply(txn: Txn, m: Migration = m) -> None:
            for stmt in m.module.statements(db.dialect):
                await txn.execute(stmt)
            await txn.execute("UPDATE schema_version SET version = ?", (m.version,))

        await db.write(apply)
    return latest
