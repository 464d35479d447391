"""Hostile or careless inputs get the spec's 4xx, never a 500: integers beyond what the
database stores, wrongly typed createRoom fields, oversized identifiers and fields."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api
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
