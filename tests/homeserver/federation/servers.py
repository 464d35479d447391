"""Real Accord servers on loopback addresses with TLS certificates from a test CA,
named by IP literal and port ("127.0.0.2:PORT") so no DNS is involved."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from federation.events.canonical import encode_base64
from federation.events.signing import key_id_of
from federation.outbound_guard import AddressPolicy, OutboundGuard
from homeserver.config import parse_config
from homeserver.server import HomeServer
from homeserver.signing_key import load_signing_key, write_new_signing_key
from tests.conftest import LOOPBACK_OUTBOUND, config_dict
from tests.tls_ca import TestCA


def free_port(host: str) -> int:
    """A port free on ``host`` now; the server name must contain it before the
    server starts, so port 0 cannot be used."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def loopback_guard() -> OutboundGuard:
    """An outbound guard for clients a test builds itself: the test servers are
    on loopback, which the default guard refuses."""
    return OutboundGuard(AddressPolicy.parse(LOOPBACK_OUTBOUND["allowed_ranges"]))


class ServerSpec:
    """Name, address, data dir and signing key of a server, known before it starts."""

    def __init__(self, root: Path, ip: str) -> None:
        self.ip = ip
        self.port = free_port(ip)
        self.name = f"{ip}:{self.port}"
        self.data_dir = root / ip
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.data_dir / "signing.key"
        if not key_path.exists():
            write_new_signing_key(str(key_path))
        self.signing_key = load_signing_key(str(key_path))
        self.key_id = key_id_of(self.signing_key)
        self.verify_key_b64 = encode_base64(self.signing_key.verify_key.encode())

    def as_notary(self) -> dict[str, Any]:
        return {"server_name": self.name, "verify_keys": {self.key_id: self.verify_key_b64}}


@contextlib.asynccontextmanager
async def running_server(
    spec: ServerSpec, ca: TestCA | None, *, trust_ca: bool = True,
    outbound: dict[str, Any] | None = None, **federation: Any
) -> AsyncIterator[HomeServer]:
    """Start ``spec`` as a real server with a TLS listener serving client,
    federation and keys; ``trust_ca`` puts the test CA in its federation trust.
    ``outbound`` is its outbound section (default: loopback allowed, as the
    test servers are all on loopback)."""
    listener: dict[str, Any] = {
        "port": spec.port,
        "bind_addresses": [spec.ip],
        "resources": ["client", "federation", "keys"],
    }
    if ca is not None:
        cert = ca.issue(spec.ip, name=f"{spec.ip}-{spec.port}")
        listener.update(tls=True, tls_certificate_path=str(cert.cert_path),
                        tls_private_key_path=str(cert.key_path))
    fed = {"enabled": True, **federation}
    if trust_ca and ca is not None:
        fed["ca_bundle_path"] = str(ca.ca_path)
    config = parse_config(
        config_dict(spec.data_dir, server_name=spec.name, listeners=[listener], federation=fed,
                    outbound=LOOPBACK_OUTBOUND if outbound is None else outbound)
    )
    hs = HomeServer(config)
    await hs.start()
    try:
        await hs.start_listeners()
        yield hs
    finally:
        await hs.stop()
