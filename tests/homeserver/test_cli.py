"""The `accord` command line as operators script it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml

from homeserver.storage.migrations import all_migrations
from tests.e2e.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]


def accord(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeserver", *args],
        capture_output=True, text=True, input=stdin, timeout=60,
    )


def test_generate_config_makes_a_runnable_config(tmp_path: Path) -> None:
    out = tmp_path / "data" / "homeserver.yaml"
    r = accord("generate-config", "--server-name", "example.org", "--data-dir", str(tmp_path / "data"),
               "--output", str(out), "--bind", "127.0.0.5", "--client-port", "9008",
               "--federation-port", "9448")
    assert r.returncode == 0, r.stderr
    for name in ("signing.key", "tls.crt", "tls.key"):
        assert (tmp_path / "data" / name).exists()
    assert oct((tmp_path / "data" / "signing.key").stat().st_mode & 0o777) == "0o600"
    config = yaml.safe_load(out.read_text())
    assert config["server_name"] == "example.org"
    assert [(lst["bind_addresses"], lst["port"], lst["tls"]) for lst in config["listeners"]] == [
        (["127.0.0.5"], 9008, False), (["127.0.0.5"], 9448, True),
    ]
    assert config["registration"]["shared_secret"]
    # The media repository is served on the client port.
    assert [lst["resources"] for lst in config["listeners"]] == [
        ["client", "media", "admin"], ["federation", "keys"],
    ]
    assert accord("check-config", "--config", str(out)).returncode == 0
    # Never overwrite an operator's config.
    again = accord("generate-config", "--server-name", "x.org", "--data-dir", str(tmp_path / "data"),
                   "--output", str(out))
    assert again.returncode != 0 and "already exists" in again.stderr
    assert yaml.safe_load(out.read_text())["server_name"] == "example.org"


def test_check_config_reports_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server_name: example.org\nlisteners: [{port: 8008, colour: blue}]\n")
    r = accord("check-config", "--config", str(path))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["accord: unknown config key 'listeners[0].colour'"]


def test_run_refuses_bad_config_without_starting(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server_name: example.org\ndatabase: {engine: oracle}\n")
    r = accord("run", "--config", str(path))
    assert r.returncode == 1
    assert "database.engine" in r.stderr
    assert "listening" not in r.stdout


def test_register_user_and_login(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs", registration={"policy": "closed"})
    cfg = str(server.config_path)
    r = accord("register-user", "--config", cfg, "boss", "--password", "a-long-password", "--admin")
    assert r.returncode == 0, r.stderr
    assert "@boss:localhost (admin)" in r.stdout
    dup = accord("register-user", "--config", cfg, "boss", "--password", "a-long-password")
    assert dup.returncode == 1 and "M_USER_IN_USE" in dup.stderr
    weak = accord("register-user", "--config", cfg, "weak", "--password", "short")
    assert weak.returncode == 1 and "M_WEAK_PASSWORD" in weak.stderr
    piped = accord("register-user", "--config", cfg, "piped", stdin="piped-password\n")
    assert piped.returncode == 0, piped.stderr

    async def login_both() -> None:
        await server.start()
        try:
            async with aiohttp.ClientSession() as s:
                for user, pw in (("boss", "a-long-password"), ("piped", "piped-password")):
                    body = {"type": "m.login.password", "password": pw,
                            "identifier": {"type": "m.id.user", "user": user}}
                    async with s.post(f"{server.client_url}/_matrix/client/v3/login", json=body) as resp:
                        assert resp.status == 200, await resp.text()
                # Registration is closed to the public even though the CLI could register.
                async with s.post(f"{server.client_url}/_matrix/client/v3/register", json={}) as resp:
                    assert resp.status == 403
        finally:
            assert await server.stop() == 0

    asyncio.run(login_both())


def test_database_newer_than_code_refuses_to_start(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    cfg = str(server.config_path)
    assert accord("register-user", "--config", cfg, "u1", "--password", "password-1").returncode == 0
    db = sqlite3.connect(tmp_path / "hs" / "homeserver.db")
    db.execute("UPDATE schema_version SET version = ?", (all_migrations()[-1].version + 1,))
    db.commit()
    db.close()
    r = accord("run", "--config", cfg)
    assert r.returncode == 1
    assert "newer Accord" in r.stderr
    assert "listening" not in r.stdout


def test_readme_start_command_serves_versions(tmp_path: Path) -> None:
    """The README's first command, with ports chosen by the OS so the test can run anywhere."""

    async def run() -> None:
        env = {**os.environ, "ACCORD_DATA_DIR": str(tmp_path / "data"), "ACCORD_CLIENT_PORT": "0",
               "ACCORD_FEDERATION_PORT": "0", "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            "bash", str(REPO / "scripts" / "start"), env=env, cwd=str(REPO),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        url = None
        lines = []
        try:
            async with asyncio.timeout(300):
                while True:
                    line = (await proc.stdout.readline()).decode()
                    assert line, "scripts/start exited:\n" + "".join(lines)
                    lines.append(line)
                    if "listening on http://" in line and "client" in line:
                        url = line.split("listening on ")[1].split(" ")[0]
                    if "register-user" in line:
                        break
            assert url is not None
            async with aiohttp.ClientSession() as s, s.get(f"{url}/_matrix/client/versions") as resp:
                assert resp.status == 200
                assert "v1.1" in (await resp.json())["versions"]
        finally:
            proc.terminate()
            assert await proc.wait() == 0

    asyncio.run(run())
