"""The async database interface every store is written against.

Stores hold SQL (with `?` placeholders, portable between SQLite and PostgreSQL)
and never see an engine's own types. Writes go through `write()`, which runs a
whole transaction function per call so an engine can batch many of them into one
commit (SQLite) or run them concurrently (PostgreSQL).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence, Sized
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]


# Values per IN (...) list: well under SQLite's and asyncpg's parameter limits.
IN_CHUNK = 500


def in_chunks(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """`values` in lists of at most `size`, for one IN (...) query each."""
    batch = list(values)
    for i in range(0, len(batch), size):
        yield batch[i : i + size]


def marks(values: Sized) -> str:
    """"?,?,?" for an IN (...) list of these values."""
    return ",".join("?" * len(values))


class DatabaseError(Exception):
    """A storage failure the caller cannot fix (engine down, schema mismatch)."""


class IntegrityError(DatabaseError):
    """A uniqueness or foreign-key constraint refused a write."""


class Txn(Protocol):
    """One transaction's view of the database; only valid inside `write()`/`read()`."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        ...

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None: ...

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None: ...

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...


TxnFn = Callable[[Txn], Awaitable[T]]


class Database(abc.ABC):
    """An open database: a write path that serialises or batches, and concurrent reads."""

    engine: str
    dialect: dict[str, str]
    ordered_writes = False  # whether `queue_write` is supported (writes run in queue order)

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def write(self, fn: TxnFn[T]) -> T:
        """Run `fn` in a write transaction; returns once it is durably committed.

        `fn` must only touch the database (no network, no sleeping): it may share
        its commit with other callers' transactions.
        """

    def queue_write(self, fn: TxnFn[T]) -> asyncio.Future[T] | None:
        """`write`, queued at once: the future completes once `fn` is committed. Writes
        queued this way run in the order they were queued, each seeing the ones before
        it, which lets a caller queue a write that depends on one not yet committed
        (the event writer's pipeline). None: this engine runs writes concurrently and
        cannot promise that order; use `write`."""
        return None

    @abc.abstractmethod
    async def read(self, fn: TxnFn[T]) -> T:
        """Run `fn` on a read connection with a consistent snapshot."""

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        rows = await self.fetchall(sql, args)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """A single-statement write."""

        async def fn(txn: Txn) -> int:
            return await txn.execute(sql, args)

        return await self.write(fn)
