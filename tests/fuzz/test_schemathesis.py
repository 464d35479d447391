"""Schemathesis against a real Accord process, driven by the Matrix spec's client-server OpenAPI:
every operation of the spec gets generated valid and invalid requests, bounded in time, and
no request may ever get a 5xx answer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from homeserver.config import RESOURCES, parse_config
from homeserver.server import HomeServer
from tests.conftest import config_dict
from tests.e2e.server_process import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
# shared/ sits beside the repository's clone, here and in CI.
SPEC = REPO_ROOT.parent / "shared" / "matrix-spec" / "openapi" / "openapi-client-server.json"
# Wall-clock budget of the fuzzing run itself (schemathesis' --max-time); the whole test,
# server start and setup included, stays well under the suite's per-test timeout.
MAX_TIME_S = int(os.environ.get("ACCORD_FUZZ_SECONDS", "75"))
PASSWORD = "fuzz-password-not-guessable-7c1e"

# Operations the fuzzer may not run, because they end the session it fuzzes with: its own
# access token is the only credential it has, so logging it out (or every device out) turns
# every later request into a 401 and the rest of the run tests nothing beyond authentication.
EXCLUDED_OPERATIONS = ["logout", "logout_all"]


def spec_path() -> Path:
    if not SPEC.is_file():
        reason = f"the Matrix spec's OpenAPI bundle is not at {SPEC}"
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the schemathesis fuzzing: " + reason)
        pytest.skip(reason)
    return SPEC


async def unimplemented_operations(paths: dict[str, Any], data_dir: Path) -> list[str]:
    """The operation IDs of the spec that Accord's router does not serve, so the fuzzing time
    goes to the endpoints that exist (one implemented later is fuzzed without a change here)."""
    hs = HomeServer(parse_config(config_dict(data_dir)))
    app = hs.build_app(list(RESOURCES))
    missing = []
    for path, item in paths.items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method, operation in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            match = await app.router.resolve(make_mocked_request(method.upper(), concrete, app=app))
            if match.http_exception is not None:
                missing.append(operation["operationId"])
    return missing


def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _st_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.fail(f"schemathesis is not installed beside {sys.executable} (the 'test' extra pins it)")
    return [str(st)]


async def _call(s: aiohttp.ClientSession, method: str, url: str, body: Any = None,
                token: str | None = None, expect: int = 200) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with s.request(method, url, json=body, headers=headers) as r:
        data = await r.json(content_type=None)
        assert r.status == expect, (method, url, r.status, data)
        return data


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def _write_config(path: Path, token: str, dictionaries: dict[str, list[str]],
                  bindings: dict[str, str], spare_bindings: dict[str, str]) -> None:
    lines = [
        f"headers = {{ Authorization = {_toml_str('Bearer ' + token)} }}",
        "",
        "[dictionaries]",
    ]
    for name, values in dictionaries.items():
        lines.append(f"{name} = {{ values = [{', '.join(_toml_str(v) for v in values)}] }}")
    lines += ["", "[parameters]"]
    for key, name in bindings.items():
        # Half the time the real object, so handlers get past "not found"; otherwise
        # whatever the fuzzer makes of the parameter's schema.
        lines.append(f"{_toml_str(key)} = {{ dictionary = {_toml_str(name)}, probability = 0.5 }}")
    lines += [
        "",
        # Leaving or forgetting a room, locking or suspending a user: on objects of their own,
        # so the room and the admin every other operation uses stay usable.
        "[[operations]]",
        'include-operation-id = ["leaveRoom", "forgetRoom", "setAdminLockUser", "setAdminSuspendUser"]',
        "[operations.parameters]",
    ]
    for key, name in spare_bindings.items():
        lines.append(f"{_toml_str(key)} = {{ dictionary = {_toml_str(name)}, probability = 0.5 }}")
    lines += [
        "",
        # Long polls answer when their timeout ends, which may rightly be minutes away: a
        # fuzzed timeout past the fuzzer's own request timeout would read as a hung server.
        "[[operations]]",
        'include-operation-id = ["sync", "getEvents", "peekEvents"]',
        "[operations.parameters]",
        '"query.timeout" = 0',
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(MAX_TIME_S + 120)
async def test_no_server_errors_under_schemathesis(tmp_path: Path) -> None:
    spec = spec_path()
    st = _st_command()
    unimplemented = await unimplemented_operations(_load(spec)["paths"], tmp_path / "routes")
    print(f"{len(unimplemented)} operations of the spec are not served by Accord (left out): "
          + ", ".join(sorted(unimplemented)))
    server = ServerProcess(tmp_path / "hs", federation={"enabled": False})
    # The fuzzing account is an admin, so the admin operations of the spec run their handlers
    # rather than stopping at 403.
    made = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "homeserver", "register-user", "--config", str(server.config_path),
        "--admin", "--password", PASSWORD, "fuzzer",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    made_output, _ = await made.communicate()
    assert made.returncode == 0, made_output.decode(errors="replace")
    await server.start()
    try:
        base = server.client_url
        c = base + "/_matrix/client/v3"
        async with aiohttp.ClientSession() as s:
            login = await _call(s, "POST", c + "/login", {
                "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "fuzzer"},
                "password": PASSWORD})
            token, user_id, device_id = login["access_token"], login["user_id"], login["device_id"]
            # Objects for path parameters: a room with an alias and an event, a second room
            # and a second user for the operations that would take the first ones away.
            room = (await _call(s, "POST", c + "/createRoom", {
                "preset": "public_chat", "room_alias_name": "fuzz", "name": "fuzz"}, token))["room_id"]
            spare = (await _call(s, "POST", c + "/createRoom", {"preset": "private_chat"}, token))["room_id"]
            event = (await _call(s, "PUT", f"{c}/rooms/{room}/send/m.room.message/t1",
                                 {"msgtype": "m.text", "body": "hello"}, token))["event_id"]
            victim_body: dict[str, Any] = {"username": "victim", "password": PASSWORD}
            challenge = await _call(s, "POST", c + "/register", victim_body, expect=401)
            victim_body["auth"] = {"type": "m.login.dummy", "session": challenge["session"]}
            victim = (await _call(s, "POST", c + "/register", victim_body))["user_id"]
            server_name = user_id.split(":", 1)[1]
            # Media to download and thumbnail, where the server has a media repository: a
            # text file and a 1x1 PNG.
            media = []
            for content_type, data in (("text/plain", b"hello"), ("image/png", _png_1x1())):
                async with s.post(base + "/_matrix/media/v3/upload?filename=f", data=data,
                                  headers={"Authorization": f"Bearer {token}",
                                           "Content-Type": content_type}) as r:
                    if r.status == 200:
                        media.append((await r.json())["content_uri"].rsplit("/", 1)[1])

            config = tmp_path / "schemathesis.toml"
            _write_config(
                config, token,
                dictionaries={
                    "rooms": [room], "spare_rooms": [spare], "events": [event],
                    "users": [user_id], "victims": [victim], "devices": [device_id],
                    "aliases": [f"#fuzz:{server_name}"], "room_refs": [room, f"#fuzz:{server_name}"],
                    "servers": [server_name], "media": media or ["none"],
                },
                bindings={
                    "path.roomId": "rooms", "path.eventId": "events", "path.userId": "users",
                    "path.deviceId": "devices", "path.roomAlias": "aliases",
                    "path.roomIdOrAlias": "room_refs", "path.serverName": "servers",
                    "path.mediaId": "media",
                },
                spare_bindings={"path.roomId": "spare_rooms", "path.userId": "victims"},
            )
            report = tmp_path / "report.ndjson"
            proc = await asyncio.create_subprocess_exec(
                *st, "--config-file", str(config), "run", str(spec), "--url", base,
                "--checks", "not_a_server_error", "--max-time", str(MAX_TIME_S),
                "--workers", "1", "--request-timeout", "20", "--no-color",
                "--generation-database", "none", "--suppress-health-check", "all",
                "--report", "ndjson", "--report-ndjson-path", str(report),
                *[arg for op in EXCLUDED_OPERATIONS + unimplemented
                  for arg in ("--exclude-operation-id", op)],
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
            )
            out, _ = await proc.communicate()
            output = out.decode(errors="replace")
            print(output[-20000:])

            # The session the fuzzer used is still alive: the run was not all 401s.
            assert (await _call(s, "GET", c + "/account/whoami", token=token))["user_id"] == user_id
    finally:
        code = await server.stop()
    assert code == 0, "".join(server.output[-200:])
    server_errors, network_errors, tool_errors, cases = read_report(report)
    assert cases > 500, f"the fuzzer sent only {cases} requests:\n{output[-5000:]}"
    assert not server_errors, "5xx answers:\n" + "\n\n".join(server_errors)
    # A request that got no answer at all (timeout, connection reset) is a hung or crashed
    # server, worse than a 500.
    assert not network_errors, "requests without an answer:\n" + "\n".join(network_errors)
    unhandled = [line for line in server.output if "unhandled error" in line]
    assert not unhandled, "".join(server.output[-400:])
    if tool_errors:  # schemathesis' own failures (not the server's): shown, not failed on
        print("schemathesis errors:\n" + "\n".join(tool_errors))


_NETWORK_ERRORS = ("Timeout", "ConnectionError", "ChunkedEncodingError", "RemoteDisconnected",
                   "ProtocolError", "ReadError", "ConnectError")


def read_report(path: Path) -> tuple[list[str], list[str], list[str], int]:
    """From schemathesis' NDJSON event stream: each 5xx (request and answer), each request
    that got no answer, schemathesis' other errors, and how many requests were sent."""
    server_errors: list[str] = []
    network_errors: list[str] = []
    tool_errors: list[str] = []
    cases = 0
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if "NonFatalError" in event:
            err = event["NonFatalError"]
            text = f"{err.get('label')}: {err['value']['type']}: {err['value']['message'][:300]}"
            if any(name in err["value"]["type"] for name in _NETWORK_ERRORS):
                network_errors.append(text)
            else:
                tool_errors.append(text)
            continue
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        interactions = recorder.get("interactions") or {}
        cases += len(interactions)
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check["name"] != "not_a_server_error" or check["status"] == "success":
                    continue
                interaction = interactions.get(case_id) or {}
                request = interaction.get("request") or {}
                response = interaction.get("response") or {}
                server_errors.append(
                    f"{recorder['label']}: {request.get('method')} {request.get('uri')}\n"
                    f"  body: {_decoded(request.get('body'))[:2000]}\n"
                    f"  -> {response.get('status_code')} {_decoded(response.get('content'))[:500]}"
                )
    return server_errors, network_errors, tool_errors, cases


def _decoded(payload: Any) -> str:
    if isinstance(payload, dict) and "$base64" in payload:
        return base64.b64decode(payload["$base64"]).decode(errors="replace")
    return "" if payload is None else str(payload)
