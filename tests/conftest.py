"""Shared fixtures: a real homeserver on a real database file, driven over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from homeserver.clock import Clock
from homeserver.config import RESOURCES, Config, parse_config
from homeserver.server import HomeServer
from homeserver.signing_key import write_new_signing_key
from homeserver.storage.database import Database
from homeserver.storage.postgres import PostgresDatabase
from homeserver.storage.sqlite import SqliteDatabase
from tests.db_templates import drop_pg_database_later, dsn_of, pg_template, seed_sqlite
from tests.tls_ca import TestCA

# Tests never reach a public server: every certificate they meet comes from a test CA that is
# trusted explicitly (a CA bundle in the config, a cafile in a client). So the system trust
# store, which every default TLS context parses (~70 ms, about twice per server started), is an
# empty one here; trust and verification work exactly as they do in production, and a test that
# would lean on a public CA fails instead of passing by accident. Child processes (the accord
# command, Synapse) inherit it. Set unconditionally: CI images often point SSL_CERT_FILE at
# the very bundle this avoids.
os.environ["SSL_CERT_FILE"] = os.devnull

SERVER_NAME = "test.local"
PASSWORD = "correct horse battery"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# Test servers federate over loopback, which the outbound guard refuses by default:
# configs of servers that federate allow it with ``outbound=LOOPBACK_OUTBOUND``.
LOOPBACK_OUTBOUND: dict[str, Any] = {"allowed_ranges": ["127.0.0.0/8", "::1/128"]}


def config_dict(data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A test config: open registration, cheap scrypt, no rate limits unless asked; an SQLite
    database that does not exist yet starts with the migrated schema (tests/db_templates.py)."""
    key = data_dir / "signing.key"
    if not key.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        write_new_signing_key(str(key))
    base = {
        "server_name": SERVER_NAME,
        "data_dir": str(data_dir),
        "listeners": [{"port": 0, "resources": list(RESOURCES)}],
        "registration": {"policy": "open", "shared_secret": "test-shared-secret"},
        "auth": {"scrypt_n": 1024},
        "rate_limits": {"enabled": False},
        "database": {"synchronous": "normal"},
        # Tests that federate say so; no other test may try to reach another server
        # (a remote name in a room would otherwise send it transactions via DNS).
        "federation": {"enabled": False},
    }
    config = _merge(base, overrides)
    database = config.get("database") or {}
    if database.get("engine", "sqlite") == "sqlite":
        db_path = data_dir / database.get("path", "homeserver.db")
        if not db_path.exists():
            seed_sqlite(db_path)
    return config


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        return parse_config(config_dict(tmp_path / "hs", **overrides))

    return make


HsFactory = Callable[..., Awaitable[HomeServer]]


class FakeClock(Clock):
    """A clock that moves only when a test says so (token expiry, UIA sessions, rate limits)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now_ms = start_ms
        self.mono = 1000.0

    def time_ms(self) -> int:
        return self.now_ms

    def monotonic(self) -> float:
        return self.mono

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.mono += ms / 1000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    """A test certificate authority: servers' TLS certificates and the trust to check them."""
    return TestCA(tmp_path / "ca")


@pytest.fixture
async def make_hs(make_config: Callable[..., Config]) -> AsyncIterator[HsFactory]:
    started: list[HomeServer] = []

    async def make(*, clock: Clock | None = None, **overrides: Any) -> HomeServer:
        hs = HomeServer(make_config(**overrides), clock=clock)
        await hs.start()
        started.append(hs)
        return hs

    yield make
    for hs in started:
        await hs.stop()


@contextlib.asynccontextmanager
async def running_hs(config: Config, *, clock: Clock | None = None) -> AsyncIterator[HomeServer]:
    """A server started on ``config`` and stopped on exit: for tests that start a
    server again on the same data, or start its listeners."""
    hs = HomeServer(config, clock=clock)
    await hs.start()
    try:
        yield hs
    finally:
        await hs.stop()


ClientFactory = Callable[..., Awaitable["Api"]]


@pytest.fixture
async def make_api(make_hs: HsFactory, aiohttp_client: Any) -> ClientFactory:
    async def make(*, clock: Clock | None = None, **overrides: Any) -> Api:
        hs = await make_hs(clock=clock, **overrides)
        client = await aiohttp_client(hs.build_app(list(RESOURCES)))
        return Api(client, hs)

    return make


@pytest.fixture
async def api(make_api: ClientFactory) -> Api:
    return await make_api()


class Api:
    """A thin client over the test server: raw requests plus the common multi-step flows."""

    def __init__(self, client: TestClient, hs: HomeServer) -> None:
        self.client = client
        self.hs = hs

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        token: str | None = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        expect: int | None = 200,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if not path.startswith("/"):
            path = "/_matrix/client/v3/" + path
        kwargs: dict[str, Any] = {"headers": hdrs}
        if json is not None:
            kwargs["json"] = json
        elif data is not None:
            kwargs["data"] = data
        async with self.client.request(method, path, **kwargs) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            if expect is not None:
                assert resp.status == expect, (resp.status, body)
            return resp.status, body

    async def get(self, path: str, **kw: Any) -> Any:
        return (await self.request("GET", path, **kw))[1]

    async def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return (await self.request("POST", path, json if json is not None else {}, **kw))[1]

    async def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return (await self.request("PUT", path, json if json is not None else {}, **kw))[1]

    async def register(
        self, username: str, password: str = PASSWORD, **extra: Any
    ) -> dict[str, Any]:
        """Register through the full UIA dance (dummy stage)."""
        body = {"username": username, "password": password, **extra}
        status, challenge = await self.request("POST", "register", body, expect=401)
        assert challenge["flows"] == [{"stages": ["m.login.dummy"]}]
        body["auth"] = {"type": "m.login.dummy", "session": challenge["session"]}
        return await self.post("register", body)

    async def login(self, username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
        return await self.post(
            "login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": username},
                "password": password,
                **extra,
            },
        )


PG_ADMIN_DSN = os.environ.get("ACCORD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_admin() -> Any:
    """A connection to the test PostgreSQL, or a skip (a failure under CI) when none answers."""
    import asyncpg

    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_DSN} ({e}); these tests need a running PostgreSQL"
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: " + reason)
        pytest.skip(reason)


@contextlib.asynccontextmanager
async def fresh_pg_database(*, migrated: bool = False) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped afterwards (in the background); yields its DSN.

    Empty by default; ``migrated`` gives it the current schema, cloned from the session's
    template (tests/db_templates.py): what a server would make of an empty one on first start,
    without the seconds of migrations."""
    import secrets

    admin = await _pg_admin()
    name = "accord_test_" + secrets.token_hex(6)
    try:
        if migrated:
            template = await asyncio.to_thread(pg_template, PG_ADMIN_DSN)
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        else:
            await admin.execute(f"CREATE DATABASE {name}")
        # A commit returns before its WAL reaches the disk, as the SQLite tests' "normal"
        # synchronous mode: every transaction is as real, only a crash of PostgreSQL itself
        # (which no test causes) could lose the last ones; waiting for each flush made a
        # test that writes thousands of events spend minutes in fsync on a busy machine.
        await admin.execute(f"ALTER DATABASE {name} SET synchronous_commit TO off")
    finally:
        await admin.close()
    try:
        yield dsn_of(PG_ADMIN_DSN, name)
    finally:
        drop_pg_database_later(PG_ADMIN_DSN, name)


@contextlib.asynccontextmanager
async def open_empty_database(engine: str, path: Path) -> AsyncIterator[Database]:
    """An opened, empty database on either engine (a SQLite file at `path`, or a fresh
    PostgreSQL database), closed afterwards: for storage tests that build their own schema."""
    async with contextlib.AsyncExitStack() as stack:
        if engine == "sqlite":
            database: Database = SqliteDatabase(str(path), synchronous="normal")
        else:
            database = PostgresDatabase(await stack.enter_async_context(fresh_pg_database()))
        await database.open()
        try:
            yield database
        finally:
            await database.close()


def password_auth(session: str | None, user: str, password: str = PASSWORD) -> dict[str, Any]:
    """A UIA m.login.password stage naming the user by an m.id.user identifier."""
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A PostgreSQL database with the current schema, for a server (see `fresh_pg_database`)."""
    async with fresh_pg_database(migrated=True) as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
async def db_overrides(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """The test once per database engine: config overrides for SQLite (none) or a
    fresh PostgreSQL database. Name it before `make_api`/`make_hs` in a test's
    parameters: fixtures are torn down in reverse order, and a database dropped while
    its server still runs can leave the server's stop waiting on its pool."""
    if request.param == "sqlite":
        yield {}
        return
    async with fresh_pg_database(migrated=True) as dsn:
        yield {"database": {"engine": "postgres", "dsn": dsn}}


@contextlib.asynccontextmanager
async def running_api(
    data_dir: Path, aiohttp_client: Any, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[Api]:
    """A server on ``data_dir`` with its client API over a test client, stopped on
    exit: for tests that stop a server and start it again on the same data."""
    async with running_hs(parse_config(config_dict(data_dir, **overrides)), clock=clock) as hs:
        client = await aiohttp_client(hs.build_app(list(RESOURCES)))
        try:
            yield Api(client, hs)
        finally:
            await client.close()
