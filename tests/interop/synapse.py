"""Stock Synapse as a peer for federation interoperability tests.

Federation bugs hide in the gap between what the specification says and what the reference
implementation does, so the interop tests talk to a real, unmodified Synapse rather than to a
mock. ``SynapseServer`` runs one in a child process, on a loopback IP literal only, with real TLS
from the test CA (``tests/tls_ca.py``) and with a config tuned for tests: every rate limit out
of the way, loopback allowed as a federation destination, and no trusted key server, so Synapse
fetches keys from our server directly as the specification describes. The config Synapse
generates and the database schema it prepares are made once per session (`synapse_template`)
and copied for each server, which then starts as it would have on its own first start.

Synapse is never a dependency of Accord: it lives in its own virtualenv, named by
``ACCORD_SYNAPSE_PYTHON`` (``scripts/test`` sets it). ``synapse_python()`` turns its absence into
a skip outside CI and a failure under CI.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import hmac
import ipaddress
import itertools
import os
import secrets
import shutil
import signal
import socket
import ssl
import string
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import aiohttp
import pytest
import signedjson.key
import yaml

from tests.tls_ca import TestCA

DEFAULT_HOST = "127.0.0.3"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

# Large enough that no test ever meets a limit, small enough to stay a sane float/int in Synapse.
_UNLIMITED = {"per_second": 100_000, "burst_count": 100_000}

# Every rate limiter Synapse 1.163 reads (synapse/config/ratelimiting.py), by config path. A test
# that trips one fails with a 429 that has nothing to do with what it checks.
_RATE_LIMIT_PATHS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)


# Synapse reads ip_range_blacklist (not "blocklist"); federation_ip_range_blacklist is a legacy
# override that would replace it for federation only, so it is left unset.
_EVERYTHING_BUT_LOOPBACK = [
    *(str(net) for net in ipaddress.IPv4Network("0.0.0.0/0").address_exclude(LOOPBACK)),
    "::/0",
]


def synapse_python() -> str:
    """The interpreter with Synapse installed, or skip (fail under CI) with the reason.

    Outside CI a developer without Synapse still gets a green run of everything else; CI must
    never silently lose the interop coverage, so there a missing Synapse is an error.
    """
    python = os.environ.get("ACCORD_SYNAPSE_PYTHON", "")
    if python and Path(python).exists():
        return python
    reason = (
        "ACCORD_SYNAPSE_PYTHON must name a Python with matrix-synapse installed "
        "(scripts/test creates .venv-synapse and sets it)"
        + (f"; {python!r} does not exist" if python else "")
    )
    if os.environ.get("CI"):
        pytest.fail("CI must run the Synapse interop tests: " + reason, pytrace=False)
    pytest.skip(reason)


def free_port(host: str) -> int:
    """A port that is free on ``host`` right now (Synapse needs it before it can bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_loopback(host: str) -> None:
    """Refuse anything but 127.0.0.0/8: test servers must never be reachable from outside."""
    if ipaddress.ip_address(host) not in LOOPBACK:
        raise ValueError(f"{host} is not a loopback address (127.0.0.0/8)")


def _set_path(config: dict[str, Any], dotted: str, value: Any) -> None:
    node = config
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path.name} not written)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path.name} is empty)"


_TEMPLATE_NAME = "template.invalid"
_templates: dict[str, Path] = {}
_templates_lock = threading.Lock()


def _run_synapse_tool(python: str, *args: str, cwd: Path) -> None:
    done = subprocess.run(
        [python, "-m", *args], cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{done.stdout.decode(errors='replace')}")


def synapse_template(python: str) -> Path:
    """A directory holding a config Synapse generated and a database it prepared with its
    own schema code, made once per session and interpreter (removed at exit).

    Each of the two costs a Synapse start-up's worth of imports, and preparing the schema
    runs Synapse's full schema: seconds apiece on a loaded machine, for every test module.
    The config is only a base (`SynapseServer` gives each server its own name, secrets and
    signing key) and the database holds the schema and nothing else (no users, so nothing
    names a server), which Synapse accepts under any server name: what it would have made
    itself on first start."""
    with _templates_lock:
        if python not in _templates:
            directory = Path(tempfile.mkdtemp(prefix="accord-synapse-template-"))
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            config_path = directory / "homeserver.yaml"
            _run_synapse_tool(
                python, "synapse.app.homeserver", "--server-name", _TEMPLATE_NAME,
                "--config-path", str(config_path), "--data-directory", str(directory),
                "--generate-config", "--report-stats=no", cwd=directory,
            )
            config = yaml.safe_load(config_path.read_text())
            assert config["database"]["args"]["database"] == str(directory / "homeserver.db")
            _run_synapse_tool(
                python, "synapse._scripts.update_synapse_database",
                "--database-config", str(config_path), cwd=directory,
            )
            assert (directory / "homeserver.db").exists(), "Synapse prepared no database"
            _templates[python] = directory
        return _templates[python]


def _new_synapse_signing_key(path: Path) -> None:
    """A fresh ed25519 key in Synapse's key file format, with a version like the ones
    Synapse generates (``a_`` and four random letters or digits)."""
    version = "a_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4))
    with path.open("x") as f:
        signedjson.key.write_signing_keys(f, [signedjson.key.generate_signing_key(version)])


@dataclass(frozen=True)
class SynapseUser:
    """What shared-secret registration hands back: enough to act as the user."""

    user_id: str
    access_token: str
    device_id: str


class MatrixError(Exception):
    """A non-2xx answer from Synapse, with its status and body for the assertion message."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.status = status
        self.body = body


class SynapseServer:
    """One Synapse homeserver on ``https://<host>:<port>``, server name ``<host>:<port>``.

    Use as ``async with SynapseServer(directory, ca) as synapse:`` or call ``start``/``stop``.
    ``directory`` holds the config, database, signing key and the log, and is left in place so
    a failed run can be examined; ``log_tail()`` gives the end of the log.

    ``verify_federation_certificates`` (default on) makes Synapse verify peers' certificates
    against the test CA only (``federation_custom_ca_list``), which is how a real deployment
    behaves; turn it off to exercise a peer whose certificate the CA did not issue.
    ``config_overrides`` are merged over the generated config last (top-level keys replace).
    """

    running: ClassVar[set[SynapseServer]] = set()

    def __init__(
        self,
        directory: Path | None,
        ca: TestCA,
        *,
        host: str = DEFAULT_HOST,
        port: int | None = None,
        verify_federation_certificates: bool = True,
        python: str | None = None,
        config_overrides: Mapping[str, Any] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        ensure_loopback(host)
        self.directory = directory or Path(tempfile.mkdtemp(prefix="accord-synapse-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = ca
        self.host = host
        self.port = port or free_port(host)
        self.verify_federation_certificates = verify_federation_certificates
        self.python = python or synapse_python()
        self.config_overrides = dict(config_overrides or {})
        self.startup_timeout = startup_timeout
        self.config_path = self.directory / "homeserver.yaml"
        self.log_path = self.directory / "homeserver.log"
        self.output_path = self.directory / "stdout.log"
        self.registration_shared_secret = secrets.token_hex(16)
        self.signing_key_path = self.directory / "signing.key"
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- identity ------------------------------------------------------------

    @property
    def server_name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.ca.ca_path

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the test CA only: a certificate problem must fail, not be waved through."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    @property
    def signing_key_id(self) -> str:
        """The ID (``ed25519:<version>``) of the key Synapse signs with, from its key file."""
        alg, version, _seed = self.signing_key_path.read_text().split()
        return f"{alg}:{version}"

    @property
    def session(self) -> aiohttp.ClientSession:
        """An HTTP session to this server (TLS verified against the test CA); open while running."""
        if self._session is None:
            raise RuntimeError("Synapse is not running")
        return self._session

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> SynapseServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if not self.config_path.exists():
            await self._generate_config()
        else:
            self._adopt_existing_config()
        self.running.add(self)
        try:
            with self.output_path.open("ab") as output:
                self._proc = await asyncio.create_subprocess_exec(
                    self.python, "-m", "synapse.app.homeserver", "-c", str(self.config_path),
                    cwd=self.directory, stdin=asyncio.subprocess.DEVNULL,
                    stdout=output, stderr=asyncio.subprocess.STDOUT,
                )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.ssl_context())
            )
            await self._wait_until_up()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (Synapse shuts down cleanly and flushes its log), SIGKILL if it lingers."""
        self.running.discard(self)
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        """The end of Synapse's log and of its stdout/stderr (startup errors land there)."""
        return (
            f"--- {self.log_path} ---\n{_tail(self.log_path, lines)}\n"
            f"--- {self.output_path} ---\n{_tail(self.output_path, lines)}"
        )

    def _adopt_existing_config(self) -> None:
        """Restarting over an existing directory keeps its identity: port and shared secret."""
        config = yaml.safe_load(self.config_path.read_text())
        self.port = int(config["listeners"][0]["port"])
        self.registration_shared_secret = config["registration_shared_secret"]

    async def _generate_config(self) -> None:
        """This server's config from the session's Synapse-generated one (`synapse_template`)
        with secrets and a signing key of its own, adapted for tests; its database starts as
        the template's schema."""
        template = await asyncio.to_thread(synapse_template, self.python)
        config = yaml.safe_load((template / "homeserver.yaml").read_text())
        config["macaroon_secret_key"] = secrets.token_urlsafe(32)
        config["form_secret"] = secrets.token_urlsafe(32)
        _new_synapse_signing_key(self.signing_key_path)
        config["signing_key_path"] = str(self.signing_key_path)
        config.pop("log_config", None)  # the template's; _adapt_config writes this server's
        shutil.copyfile(template / "homeserver.db", self.directory / "homeserver.db")
        config = self._adapt_config(config)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _adapt_config(self, config: dict[str, Any]) -> dict[str, Any]:
        cert = self.ca.issue(self.host, name=f"synapse-{self.host}-{self.port}")
        log_config = self.directory / "log.config"
        log_config.write_text(
            yaml.safe_dump({
                "version": 1,
                "formatters": {"precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s",
                }},
                "handlers": {"file": {
                    "class": "logging.FileHandler", "formatter": "precise",
                    "filename": str(self.log_path), "encoding": "utf8",
                }},
                "root": {"level": "WARNING", "handlers": ["file"]},
                "disable_existing_loggers": False,
            })
        )
        config.update({
            "server_name": self.server_name,
            "public_baseurl": self.base_url + "/",
            "pid_file": str(self.directory / "homeserver.pid"),
            "signing_key_path": str(self.signing_key_path),
            "media_store_path": str(self.directory / "media_store"),
            "database": {"name": "sqlite3", "args": {"database": str(self.directory / "homeserver.db")}},
            "log_config": str(log_config),
            # One TLS listener for everything, as a federating server is reached at server_name.
            "listeners": [{
                "port": self.port, "bind_addresses": [self.host], "type": "http", "tls": True,
                "x_forwarded": False,
                "resources": [{"names": ["client", "federation", "keys"], "compress": False}],
            }],
            "tls_certificate_path": str(cert.cert_path),
            "tls_private_key_path": str(cert.key_path),
            # Keys come from the origin server itself, never from matrix.org.
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            # Outbound requests (federation included) may go to loopback and nowhere else.
            # Synapse's default blocklist covers 127.0.0.0/8, and ip_range_whitelist cannot undo
            # that for federation: 1.163 checks IP-literal destinations against the blocklist
            # alone. So the blocklist is "everything but 127.0.0.0/8", which also keeps a test
            # that names a real server from ever reaching it.
            "ip_range_blacklist": _EVERYTHING_BUT_LOOPBACK,
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": self.registration_shared_secret,
            "report_stats": False,
            "enable_metrics": False,
            "presence": {"enabled": True},
            "allow_public_rooms_over_federation": True,
            # Synapse's default publication rules let no one publish a room (createRoom with
            # visibility "public" silently leaves it unpublished); interop tests need to.
            "room_list_publication_rules": [{"action": "allow"}],
            # Rate limits of federation ingress, per origin: sleep/reject far beyond any test.
            "rc_federation": {
                "window_size": 1000, "sleep_limit": 100_000, "sleep_delay": 1,
                "reject_limit": 100_000, "concurrent": 10_000,
            },
            "federation_rr_transactions_per_room_per_second": 100_000,
        })
        if self.verify_federation_certificates:
            config["federation_verify_certificates"] = True
            config["federation_custom_ca_list"] = [str(self.ca_path)]
        else:
            config["federation_verify_certificates"] = False
            config.pop("federation_custom_ca_list", None)
        for path in _RATE_LIMIT_PATHS:
            _set_path(config, path, dict(_UNLIMITED))
        for key in ("federation_domain_whitelist", "federation_ip_range_blacklist",
                    "default_room_version"):
            config.pop(key, None)
        config.update(self.config_overrides)
        return config

    async def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = self.base_url + "/_matrix/client/versions"
        last_error = "no attempt"
        while True:
            assert self._proc is not None
            if self._proc.returncode is not None:
                raise RuntimeError(
                    f"Synapse exited with code {self._proc.returncode} during startup\n"
                    + self.log_tail()
                )
            try:
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                last_error = repr(e)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Synapse did not answer {url} within {self.startup_timeout}s "
                    f"(last: {last_error})\n" + self.log_tail()
                )
            await asyncio.sleep(0.2)

    # -- requests ----------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
        expect: int | None = 200,
    ) -> Any:
        """A JSON request to this server; raises MatrixError unless the status is ``expect``."""
        return await _json_request(
            self.session, method, self.base_url + path, body,
            token=token, params=params, expect=expect,
        )

    async def register_user(
        self, localpart: str, password: str, admin: bool = False
    ) -> SynapseUser:
        """Create an account with the shared-secret admin API (nonce + HMAC-SHA1).

        This works whatever the registration flows are and needs no UIA dance, and it is the
        only way to make a server admin from outside.
        """
        path = "/_synapse/admin/v1/register"
        nonce = (await self.request("GET", path))["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([
            nonce.encode(), localpart.encode(), password.encode(),
            b"admin" if admin else b"notadmin",
        ]))
        body = {
            "nonce": nonce, "username": localpart, "password": password,
            "admin": admin, "mac": mac.hexdigest(),
        }
        data = await self.request("POST", path, body)
        return SynapseUser(data["user_id"], data["access_token"], data["device_id"])

    def client(self, user: SynapseUser) -> SynapseClient:
        return SynapseClient(self, user)


async def _json_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any,
    *,
    token: str | None,
    params: Mapping[str, str] | None,
    expect: int | None,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, url, json=body, headers=headers, params=params) as resp:
        data = await resp.json(content_type=None) if resp.content_length != 0 else None
        if expect is not None and resp.status != expect:
            raise MatrixError(method, url, resp.status, data)
        return data


class ClientAPI:
    """Any homeserver's HTTP API at ``base_url`` (ours, in interop tests), with the same
    ``request`` as ``SynapseServer``, so ``SynapseClient`` can act as a user of either side.
    TLS is verified against ``ca_path`` only. Use as ``async with ClientAPI(...) as api:``."""

    def __init__(self, base_url: str, ca_path: Path) -> None:
        self.base_url = base_url
        self.ca_path = ca_path
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ClientAPI:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
        expect: int | None = 200,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("ClientAPI is not open")
        return await _json_request(
            self._session, method, self.base_url + path, body,
            token=token, params=params, expect=expect,
        )


def _q(value: str) -> str:
    """Percent-encode a path segment (room IDs, user IDs and event types contain reserved chars)."""
    return urllib.parse.quote(value, safe="")


class SynapseClient:
    """The client-server calls interop tests make as a Synapse user, returning parsed JSON.

    Nothing here is Synapse-specific: over a ``ClientAPI`` it is a user of our server."""

    _txn = itertools.count()

    def __init__(self, server: SynapseServer | ClientAPI, user: SynapseUser) -> None:
        self.server = server
        self.user = user

    @property
    def user_id(self) -> str:
        return self.user.user_id

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """Any client API call; ``path`` is relative to ``/_matrix/client/v3`` unless absolute."""
        if not path.startswith("/_"):
            path = "/_matrix/client/v3" + path
        return await self.server.request(method, path, body, token=self.user.access_token, **kw)

    async def create_room(self, **body: Any) -> str:
        return (await self.request("POST", "/createRoom", body))["room_id"]

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.request("POST", f"/rooms/{_q(room_id)}/invite", {"user_id": user_id})

    async def join(self, room_id_or_alias: str, via: list[str] | None = None) -> str:
        params = [("via", server) for server in via or []]
        path = f"/join/{_q(room_id_or_alias)}"
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return (await self.request("POST", path, {}))["room_id"]

    async def leave(self, room_id: str) -> None:
        await self.request("POST", f"/rooms/{_q(room_id)}/leave", {})

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"/rooms/{_q(room_id)}/kick", body)

    async def ban(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        body = {"user_id": user_id, **({"reason": reason} if reason else {})}
        await self.request("POST", f"/rooms/{_q(room_id)}/ban", body)

    async def redact(self, room_id: str, event_id: str, reason: str | None = None) -> str:
        txn = f"interop{os.getpid()}.{next(self._txn)}"
        path = f"/rooms/{_q(room_id)}/redact/{_q(event_id)}/{txn}"
        body = {"reason": reason} if reason else {}
        return (await self.request("PUT", path, body))["event_id"]

    async def set_displayname(self, displayname: str) -> None:
        path = f"/profile/{_q(self.user_id)}/displayname"
        await self.request("PUT", path, {"displayname": displayname})

    async def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/rooms/{_q(room_id)}/event/{_q(event_id)}")

    async def messages(
        self, room_id: str, direction: str = "b", limit: int = 100, **params: str
    ) -> dict[str, Any]:
        query = {"dir": direction, "limit": str(limit), **params}
        return await self.request("GET", f"/rooms/{_q(room_id)}/messages", params=query)

    async def send(
        self, room_id: str, content: Mapping[str, Any], event_type: str = "m.room.message"
    ) -> str:
        txn = f"interop{os.getpid()}.{next(self._txn)}"
        path = f"/rooms/{_q(room_id)}/send/{_q(event_type)}/{txn}"
        return (await self.request("PUT", path, dict(content)))["event_id"]

    async def send_text(self, room_id: str, text: str) -> str:
        return await self.send(room_id, {"msgtype": "m.text", "body": text})

    async def send_state(
        self, room_id: str, event_type: str, content: Mapping[str, Any], state_key: str = ""
    ) -> str:
        path = f"/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return (await self.request("PUT", path, dict(content)))["event_id"]

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        return await self.request("GET", f"/rooms/{_q(room_id)}/state")

    async def state_event(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        return await self.request(
            "GET", f"/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        )

    async def typing(self, room_id: str, typing: bool = True, timeout_ms: int = 30_000) -> None:
        body: dict[str, Any] = {"typing": typing}
        if typing:
            body["timeout"] = timeout_ms
        await self.request("PUT", f"/rooms/{_q(room_id)}/typing/{_q(self.user_id)}", body)

    async def receipt(
        self, room_id: str, event_id: str, receipt_type: str = "m.read",
        thread_id: str | None = None,
    ) -> None:
        body = {} if thread_id is None else {"thread_id": thread_id}
        await self.request(
            "POST", f"/rooms/{_q(room_id)}/receipt/{_q(receipt_type)}/{_q(event_id)}", body
        )

    async def sync(self, since: str | None = None, timeout_ms: int = 0, **params: str) -> Any:
        query = {"timeout": str(timeout_ms), **params}
        if since:
            query["since"] = since
        return await self.request("GET", "/sync", params=query)

    async def sync_until(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        since: str | None = None,
        within: float = 20.0,
    ) -> dict[str, Any]:
        """Long-poll /sync until ``predicate(response)`` holds; federation is asynchronous.

        Returns the matching response; fails the test with the last response after ``within``
        seconds.
        """
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            response = await self.sync(since, timeout_ms=max(0, int(min(left, 5) * 1000)))
            if predicate(response):
                return response
            since = response["next_batch"]
            if time.monotonic() >= deadline:
                raise AssertionError(f"sync condition not met within {within}s; last: {response}")


def timeline_events(sync: Mapping[str, Any], room_id: str) -> list[dict[str, Any]]:
    """The joined-room timeline events for ``room_id`` in a /sync response."""
    room = sync.get("rooms", {}).get("join", {}).get(room_id, {})
    return list(room.get("timeline", {}).get("events", []))
