"""Storage: the database interface, its engines, migrations and one store per topic."""

from __future__ import annotations

from homeserver.config import DatabaseConfig
from homeserver.storage.database import Database


def make_database(cfg: DatabaseConfig, sqlite_path: str) -> Database:
    """The engine the config names, not yet opened."""
    if cfg.engine == "postgres":
        from homeserver.storage.postgres import PostgresDatabase

        assert cfg.dsn is not None
        return PostgresDatabase(cfg.dsn, pool_size=cfg.read_connections)
    from homeserver.storage.sqlite import SqliteDatabase

    return SqliteDatabase(
        sqlite_path,
        synchronous=cfg.synchronous,
        read_connections=cfg.read_connections,
        max_batch=cfg.max_batch,
        reader_cache_kib=cfg.reader_cache_kib,
    )
