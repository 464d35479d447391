"""GET /voip/turnServer: TURN REST credentials under a shared secret (checked by a real
coturn allocation when coturn is installed), static credentials, guests, and the answer
when no TURN server is configured."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from homeserver.voip import turn_rest_password
from tests.conftest import ClientFactory
from tests.homeserver.api.reading_helpers import uid, user

SECRET = "turn-shared-secret-for-tests"


async def test_no_turn_server_is_not_implemented(make_api: ClientFactory) -> None:
    """The spec lets a server provide no TURN server: then the endpoint is absent, like
    any unimplemented one, and never answers with made-up servers."""
    api = await make_api()
    alice = await user(api, "alice")
    for token in (alice, None):
        _, err = await api.request("GET", "voip/turnServer", token=token, expect=404)
        assert err["errcode"] == "M_UNRECOGNIZED"


async def test_shared_secret_credentials(make_api: ClientFactory, clock: Any) -> None:
    uris = ["turn:turn.test.local:3478?transport=udp", "turns:turn.test.local:5349?transport=tcp"]
    api = await make_api(clock=clock, voip={"turn_uris": uris, "turn_shared_secret": SECRET,
                                            "turn_user_lifetime_s": 3600})
    alice = await user(api, "alice")
    creds = await api.get("voip/turnServer", token=alice)
    assert creds["uris"] == uris and creds["ttl"] == 3600
    expiry = clock.time_ms() // 1000 + 3600
    assert creds["username"] == f"{expiry}:{uid('alice')}"
    # Standard padded base64 of HMAC-SHA1 (vector from `openssl dgst -sha1 -hmac secret -binary | base64`).
    assert turn_rest_password("secret", "1443779631:@user:example.com") == "Xm0lErj7sx/fpxQLH9q1I3FF0uw="
    assert creds["password"] == turn_rest_password(SECRET, creds["username"])
    # Later requests carry a later expiry; a missing or bad token is refused first.
    clock.advance(10_000)
    assert (await api.get("voip/turnServer", token=alice))["username"] == f"{expiry + 10}:{uid('alice')}"
    _, err = await api.request("GET", "voip/turnServer", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_static_credentials_and_guests(make_api: ClientFactory) -> None:
    voip = {"turn_uris": ["turn:turn.test.local"], "turn_username": "calls", "turn_password": "pw",
            "turn_allow_guests": False}
    api = await make_api(voip=voip, registration={"policy": "open", "allow_guests": True})
    alice = await user(api, "alice")
    creds = await api.get("voip/turnServer", token=alice)
    assert creds == {"username": "calls", "password": "pw", "uris": ["turn:turn.test.local"], "ttl": 86400}
    guest = (await api.post("register?kind=guest", {}))["access_token"]
    _, err = await api.request("GET", "voip/turnServer", token=guest, expect=403)
    assert err["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _allocate(port: int, username: str, password: str) -> tuple[int, str]:
    """A TURN allocation (and relayed messages back to ourselves) with coturn's client."""
    proc = await asyncio.create_subprocess_exec(
        "turnutils_uclient", "-u", username, "-w", password, "-p", str(port), "-n", "1", "-m", "1",
        "-y", "-c", "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_credentials_allocate_on_a_real_coturn(make_api: ClientFactory, clock: Any, tmp_path: Path) -> None:
    """coturn under use-auth-secret accepts the credentials we hand out, and refuses them
    once expired or with the wrong secret. scripts/test installs coturn where apt can; a
    machine without it skips, CI never does."""
    if shutil.which("turnserver") is None or shutil.which("turnutils_uclient") is None:
        reason = "coturn is not installed (apt-get install coturn; scripts/test does it as root)"
        if os.environ.get("CI"):
            pytest.fail("CI must run the TURN test: " + reason)
        pytest.skip(reason)
    port = _free_udp_port()
    turn = await asyncio.create_subprocess_exec(
        "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
        "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=test.local", "--no-tls", "--no-dtls",
        "--no-cli", "--allow-loopback-peers", "--log-file=stdout", "--simple-log",
        f"--pidfile={tmp_path / 'turn.pid'}", f"--userdb={tmp_path / 'turn.db'}",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # Real time: coturn checks the expiry against its own clock.
        clock.now_ms = time.time_ns() // 1_000_000
        api = await make_api(clock=clock, voip={"turn_uris": [f"turn:127.0.0.1:{port}?transport=udp"],
                                                "turn_shared_secret": SECRET, "turn_user_lifetime_s": 600})
        alice = await user(api, "alice")
        creds = await api.get("voip/turnServer", token=alice)
        for _ in range(20):  # coturn takes a moment to listen
            rc, out = await _allocate(port, creds["username"], creds["password"])
            if rc == 0:
                break
            await asyncio.sleep(0.5)
        assert rc == 0, out
        assert "Total lost packets 0" in out
        rc, out = await _allocate(port, creds["username"], turn_rest_password("another secret", creds["username"]))
        assert rc != 0 and "Cannot complete Allocation" in out
        clock.advance(-3_600_000)  # credentials made an hour ago, valid for ten minutes
        expired = await api.get("voip/turnServer", token=alice)
        rc, out = await _allocate(port, expired["username"], expired["password"])
        assert rc != 0 and "Cannot complete Allocation" in out
    finally:
        turn.terminate()
        await turn.wait()
