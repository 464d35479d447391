"""The PostgreSQL engine through asyncpg, for organizations that outgrow one machine.

PostgreSQL runs concurrent transactions itself, so each `write()` gets its own
pooled connection and transaction; there is no single writer. Stores' `?`
placeholders are rewritten to `$n` once per statement text and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from homeserver.storage.database import Database, DatabaseError, IntegrityError, Row, T, TxnFn

DIALECT = {
    "bigint_pk": "BIGINT PRIMARY KEY",
    "blob": "BYTEA",
    "bigint": "BIGINT",
}


@functools.lru_cache(maxsize=4096)
def convert_placeholders(sql: str) -> str:
    """Rewrite `?` placeholders to `$1, $2, ...`, leaving quoted literals alone."""
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
            out.append(ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag, e.g. "UPDATE 3" or "INSERT 0 1".
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0


class _PgTxn:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        import asyncpg

        try:
            status = await self._conn.execute(convert_placeholders(sql), *args)
        except asyncpg.IntegrityConstraintViolationError as e:
            raise IntegrityError(str(e)) from e
        return _rowcount(status)

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        import asyncpg

        try:
            await self._conn.executemany(convert_placeholders(sql), [tuple(a) for a in args])
        except asyncpg.IntegrityConstraintViolationError as e:
            raise IntegrityError(str(e)) from e

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        row = await self._conn.fetchrow(convert_placeholders(sql), *args)
        return tuple(row) if row is not None else None

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        rows = await self._conn.fetch(convert_placeholders(sql), *args)
        return [tuple(r) for r in rows]


class PostgresDatabase(Database):
    engine = "postgres"
    dialect = DIALECT

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: Any = None

    async def open(self) -> None:
        try:
            import asyncpg
        except ImportError as e:
            raise DatabaseError(
                "database.engine is postgres but asyncpg is not installed "
                "(pip install 'accord-homeserver[postgres]')"
            ) from e
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=max(2, self.pool_size)
            )
        except (OSError, asyncpg.PostgresError) as e:
            raise DatabaseError(f"cannot connect to PostgreSQL: {e}") from e

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def write(self, fn: TxnFn[T]) -> T:
        async with self._pool.acquire() as conn, conn.transaction():
            return await fn(_PgTxn(conn))

    async def read(self, fn: TxnFn[T]) -> T:
        async with self._pool.acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True
        ):
            return await fn(_PgTxn(conn))

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(convert_placeholders(sql), *args)
            return [tuple(r) for r in rows]
