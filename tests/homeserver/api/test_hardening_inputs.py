"""Hostile or careless inputs get the spec's 4xx, never a 500: integers beyond what the
database stores, wrongly typed createRoom fields, oversized identifiers and fields."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Api, running_hs
from tests.homeserver.api.reading_helpers import create, user

HUGE = str(2**64)
BEYOND_INT64 = [HUGE, "-" + HUGE, str(2**63), "-" + str(2**63 + 1), "9" * 400]


async def _status(api: Api, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    return await api.request(method, path, body, expect=None, **kw)


# --- integers beyond signed 64 bits -----------------------------------------------------


@pytest.mark.parametrize("ts", BEYOND_INT64 + ["٣", "1_0", " 5"])
async def test_timestamp_to_event_out_of_range(api: Api, ts: str) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    status, body = await _status(
        api, "GET", f"/_matrix/client/v1/rooms/{room}/timestamp_to_event?dir=f&ts={quote(ts)}", token=alice
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


async def test_timestamp_to_event_int64_bounds_still_work(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    path = f"/_matrix/client/v1/rooms/{room}/timestamp_to_event"
    assert (await api.get(f"{path}?dir=b&ts={2**63 - 1}", token=alice))["event_id"].startswith("$")
    await api.request("GET", f"{path}?dir=b&ts={-(2**63)}", token=alice, expect=404)


@pytest.mark.parametrize(
    "token", ["t-99999999999999999999999", "t99999999999999999999999", "s" + HUGE, "t٣", "s²_1"]
)
async def test_messages_token_out_of_range(api: Api, token: str) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    for param in ("from", "to"):
        status, body = await _status(
            api, "GET", f"rooms/{room}/messages?dir=b&{param}={quote(token)}", token=alice
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), param


@pytest.mark.parametrize("token", ["s" + HUGE, f"s1_2_{HUGE}", "s1_²"])
async def test_sync_since_out_of_range(api: Api, token: str) -> None:
    alice = await user(api, "alice")
    status, body = await _status(api, "GET", f"sync?since={quote(token)}", token=alice)
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize(
    "path",
    [
        "rooms/{room}/messages?dir=b&limit=" + HUGE,
        "sync?timeout=" + HUGE,
        "publicRooms?limit=" + HUGE,
        "/_synapse/admin/v2/users?from=" + HUGE,
        "/_synapse/admin/v1/rooms?limit=" + HUGE,
        "/_synapse/admin/v1/event_reports/" + HUGE,
        "/_synapse/admin/v1/event_reports/²",
    ],
)
async def test_integer_query_params_out_of_range(api: Api, path: str) -> None:
    admin = (await api.hs.registration.create_account("@admin:test.local", "pw-pw-pw-pw", admin=True))
    room = await create(api, admin["access_token"])
    status, body = await _status(api, "GET", path.format(room=room), token=admin["access_token"])
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")


# --- createRoom field types -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"preset": {"a": 1}},
        {"preset": ["public_chat"]},
        {"preset": 1},
        {"visibility": {"public": True}},
        {"visibility": ["public"]},
        {"room_alias_name": ["x"]},
        {"name": {"n": 1}},
        {"topic": 5},
        {"invite": "@bob:test.local"},
        {"invite": [["@bob:test.local"]]},
        {"invite_3pid": "x"},
        {"invite_3pid": {"a": 1}},
        {"room_version": 12},
        {"room_version": ["12"]},
        {"creation_content": []},
        {"initial_state": {}},
        {"initial_state": [["m.room.topic"]]},
        {"initial_state": [{"type": 1, "content": {}}]},
        {"initial_state": [{"type": "m.room.topic", "state_key": [], "content": {}}]},
        {"initial_state": [{"type": "x" * 300, "content": {}}]},
        {"initial_state": [{"type": "m.room.topic", "state_key": "k" * 300, "content": {}}]},
        {"power_level_content_override": "x"},
        {"power_level_content_override": {"users": "x"}},
        {"power_level_content_override": {"users": {"@a:test.local": "100"}}},
        {"power_level_content_override": {"ban": {"a": 1}}},
        {"power_level_content_override": {"events": []}},
        {"is_direct": "yes"},
        {"creation_content": {"additional_creators": "x"}},
        {"creation_content": {"m.federate": "no"}},
    ],
)
async def test_create_room_wrong_types(api: Api, body: dict[str, Any]) -> None:
    alice = await user(api, "alice")
    status, err = await _status(api, "POST", "createRoom", body, token=alice)
    assert 400 <= status < 500 and status != 404, (status, err)
    assert err["errcode"] in ("M_BAD_JSON", "M_INVALID_PARAM", "M_UNRECOGNIZED", "M_UNSUPPORTED_ROOM_VERSION")
    # Nothing half-made was left behind.
    assert (await api.get("joined_rooms", token=alice))["joined_rooms"] == []


# --- identifiers and fields with a length ------------------------------------------------


@pytest.mark.parametrize("device_id", ["D" * 10_000 + "\x00", "DEV\x00ICE", "DEV\nICE", "D" * 256, "\x7f"])
async def test_login_refuses_bad_device_ids(api: Api, device_id: str) -> None:
    await api.register("alice")
    status, err = await _status(api, "POST", "login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "correct horse battery", "device_id": device_id,
    })
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")


@pytest.mark.parametrize("device_id", ["D" * 10_000 + "\x00", "DEV\x00ICE", "D" * 256])
async def test_register_refuses_bad_device_ids(api: Api, device_id: str) -> None:
    status, err = await _status(
        api, "POST", "register", {"username": "alice", "password": "correct horse battery", "device_id": device_id}
    )
    assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    # Still free: the refusal came before any account or UIA session was made.
    assert (await api.get("register/available?username=alice"))["available"] is True


async def test_ordinary_device_ids_still_accepted(api: Api) -> None:
    await api.register("alice", device_id="PHONE-é_1")
    login = await api.login("alice", device_id="D" * 255)
    assert login["device_id"] == "D" * 255


async def test_presence_status_msg_bounded(api: Api) -> None:
    from homeserver.presence import MAX_STATUS_MSG

    alice = await user(api, "alice")
    path = "presence/@alice:test.local/status"
    status, err = await _status(api, "PUT", path, {"presence": "online", "status_msg": "x" * 100_000}, token=alice)
    assert (status, err["errcode"]) == (400, "M_TOO_LARGE")
    await api.put(path, {"presence": "online", "status_msg": "é" * MAX_STATUS_MSG}, token=alice)
    assert (await api.get(path, token=alice))["status_msg"] == "é" * MAX_STATUS_MSG
    status, err = await _status(
        api, "PUT", path, {"presence": "online", "status_msg": "x" * (MAX_STATUS_MSG + 1)}, token=alice
    )
    assert status == 400


# --- server names in requests ------------------------------------------------------------


@pytest.mark.parametrize("origin", ["127.0.0.1:99999", "127.0.0.1:0", "[::1]:65536"])
async def test_x_matrix_origin_with_impossible_port(make_api: Any, origin: str) -> None:
    api = await make_api(federation={"enabled": True})
    header = f'X-Matrix origin="{origin}",destination="test.local",key="ed25519:a",sig="c2ln"'
    status, err = await _status(
        api, "GET", "/_matrix/federation/v1/query/profile?user_id=@a:test.local",
        headers={"Authorization": header},
    )
    assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")


# --- our own federation policy -----------------------------------------------------------


async def test_invite_refused_by_our_federation_policy(make_api: Any) -> None:
    api = await make_api(federation={"enabled": True, "policy": "partners"})
    alice = await user(api, "alice")
    room = await create(api, alice)
    status, err = await _status(
        api, "POST", f"rooms/{room}/invite", {"user_id": "@bob:stranger.example"}, token=alice
    )
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    # From createRoom too, and before any room is made.
    status, err = await _status(api, "POST", "createRoom", {"invite": ["@bob:stranger.example"]}, token=alice)
    assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
    assert (await api.get("joined_rooms", token=alice))["joined_rooms"] == [room]


async def test_send_invite_maps_our_policy_refusal_to_403(make_api: Any) -> None:
    """The last line, for a policy that changes while an invite is being made."""
    from homeserver.errors import MatrixError

    api = await make_api(federation={"enabled": True, "policy": "partners"})
    alice = await user(api, "alice")
    room = await api.hs.room_store.get_room(await create(api, alice))
    assert room is not None
    with pytest.raises(MatrixError) as caught:
        await api.hs.federated_invites.send_invite(
            room, {"state_key": "@bob:stranger.example", "event_id": "$invite", "type": "m.room.member"}
        )
    assert (caught.value.status, caught.value.errcode) == (403, "M_FORBIDDEN")


# --- the listeners: metrics, and requests aiohttp's parser refuses ------------------------


def _generate(tmp_path: Path, *extra: str) -> Path:
    import argparse

    from homeserver.__main__ import generate_config

    out = tmp_path / f"homeserver{len(extra)}.yaml"
    args = argparse.Namespace(
        server_name="localhost", data_dir=str(tmp_path / "data"), output=str(out), bind="127.0.0.1",
        client_port=0, federation_port=0, metrics_port=None,
    )
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        setattr(args, flag.lstrip("-").replace("-", "_"), int(value))
    assert generate_config(args) == 0
    return out


async def test_generated_config_keeps_metrics_off_the_client_listener(tmp_path: Path) -> None:
    from homeserver.config import load_config

    async with running_hs(load_config(str(_generate(tmp_path)))) as hs:
        await hs.start_listeners()
        client_port = next(port for lst, _, port in hs.bound if "client" in lst.resources)
        assert not any("metrics" in lst.resources for lst, _, _ in hs.bound)
        async with aiohttp.ClientSession() as s:
            for path in ("/metrics", "/_synapse/metrics"):
                async with s.get(f"http://127.0.0.1:{client_port}{path}") as r:
                    assert r.status == 404
                    assert (await r.json())["errcode"] == "M_UNRECOGNIZED"
    # Asked for, it gets a loopback listener of its own.
    config = load_config(str(_generate(tmp_path, "--metrics-port", "9101")))
    (metrics,) = [lst for lst in config.listeners if "metrics" in lst.resources]
    assert (metrics.resources, metrics.bind_addresses, metrics.port) == (["metrics"], ["127.0.0.1"], 9101)


async def _raw_request(port: int, head: bytes) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    header_block, _, body = raw.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /_matrix/client/versions?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: h\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: h\r\nX-" + b"c" * 9000 + b": 1\r\n\r\n", 431),
        (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 400),
    ],
)
async def test_requests_the_http_parser_refuses_get_matrix_json(
    make_hs: Any, head: bytes, status: int
) -> None:
    hs = await make_hs(listeners=[{"port": 0, "bind_addresses": ["127.0.0.1"], "resources": ["client"]}])
    await hs.start_listeners()
    port = hs.bound[0][2]
    got, headers, body = await _raw_request(port, head)
    assert got == status
    assert headers["Content-Type"].startswith("application/json")
    assert body["errcode"] == ("M_TOO_LARGE" if status != 400 else "M_UNKNOWN")
    assert isinstance(body["error"], str)
    # The listener still serves ordinary requests.
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/_matrix/client/versions") as r:
        assert r.status == 200


async def test_two_identical_create_rooms_in_one_millisecond(make_api: Any) -> None:
    """v12 room IDs hash the create event, which would be the same for both."""
    from tests.conftest import FakeClock

    api = await make_api(clock=FakeClock())
    alice = await user(api, "alice")
    first = await create(api, alice, preset="private_chat")
    second = await create(api, alice, preset="private_chat")
    assert first != second
    assert sorted((await api.get("joined_rooms", token=alice))["joined_rooms"]) == sorted([first, second])


@pytest.mark.parametrize("filter_id", ["²", "١٢", "9" * 40])
async def test_filter_ids_that_are_not_ascii_numbers(api: Api, filter_id: str) -> None:
    alice = await user(api, "alice")
    status, err = await _status(api, "GET", f"user/@alice:test.local/filter/{quote(filter_id)}", token=alice)
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
    status, err = await _status(api, "GET", f"sync?filter={quote(filter_id)}", token=alice)
    assert 400 <= status < 500


async def test_notary_minimum_valid_until_ts_out_of_range(make_api: Any) -> None:
    api = await make_api(federation={"enabled": True})
    for ts in BEYOND_INT64 + ["²"]:
        status, err = await _status(
            api, "GET", f"/_matrix/key/v2/query/test.local?minimum_valid_until_ts={quote(ts)}"
        )
        assert (status, err["errcode"]) == (400, "M_INVALID_PARAM"), ts
    status, err = await _status(
        api, "POST", "/_matrix/key/v2/query",
        data=f'{{"server_keys": {{"test.local": {{"minimum_valid_until_ts": {2**64}}}}}}}',
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= status < 500, (status, err)
