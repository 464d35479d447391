"""POST /pushers/set against hostile and malformed input, pushers going with their
sessions, and gateways the outbound guard refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Api, password_auth
from tests.homeserver.api.reading_helpers import send, user
from tests.homeserver.push.gateway import PushGateway
from tests.homeserver.push.test_pushers import push_config, pusher_body
from tests.tls_ca import TestCA

URL = "https://push.example.org/_matrix/push/v1/notify"


@pytest.mark.parametrize(("change", "errcode"), [
    ({"data": {"url": "http://push.example.org/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://push.example.org/other/path"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://10.1.2.3/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://127.0.0.1/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://[::1]/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://169.254.169.254/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://user:pw@push.example.org/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": "https://push.example.org:99999/_matrix/push/v1/notify"}}, "M_INVALID_PARAM"),
    ({"data": {"url": 5}}, "M_INVALID_PARAM"),
    ({"data": {}}, "M_INVALID_PARAM"),
    ({"data": "not an object"}, "M_BAD_JSON"),
    ({"data": {"url": URL, "format": 1}}, "M_INVALID_PARAM"),
    ({"data": {"url": URL, "big": "x" * 5000}}, "M_INVALID_PARAM"),
    ({"kind": "carrier-pigeon"}, "M_INVALID_PARAM"),
    ({"kind": 7}, "M_BAD_JSON"),
    ({"pushkey": "k" * 513}, "M_INVALID_PARAM"),
    ({"pushkey": ""}, "M_INVALID_PARAM"),
    ({"pushkey": 12}, "M_BAD_JSON"),
    ({"app_id": "a" * 65}, "M_INVALID_PARAM"),
    ({"app_id": None}, "M_MISSING_PARAM"),
    ({"lang": None}, "M_MISSING_PARAM"),
    ({"app_display_name": ["x"]}, "M_BAD_JSON"),
    ({"device_display_name": "bad\x00name"}, "M_INVALID_PARAM"),
    ({"append": "yes"}, "M_BAD_JSON"),
    ({"kind": "email"}, "M_INVALID_PARAM"),  # this server does not send e-mail
])
async def test_bad_pusher_bodies(api: Api, change: dict[str, Any], errcode: str) -> None:
    bob = await user(api, "bob")
    body = {**pusher_body(URL), **change}
    body = {k: v for k, v in body.items() if v is not None}
    _, answer = await api.request("POST", "pushers/set", body, token=bob, expect=400)
    assert answer["errcode"] == errcode
    assert (await api.get("pushers", token=bob))["pushers"] == []


async def test_missing_kind_and_not_json(api: Api) -> None:
    bob = await user(api, "bob")
    body = pusher_body(URL)
    del body["kind"]
    _, answer = await api.request("POST", "pushers/set", body, token=bob, expect=400)
    assert answer["errcode"] == "M_MISSING_PARAM"
    _, answer = await api.request("POST", "pushers/set", data="[1]", token=bob, expect=400)
    assert answer["errcode"] == "M_BAD_JSON"
    await api.request("GET", "pushers", expect=401)


async def test_set_update_append_and_delete(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await api.post("pushers/set", pusher_body(URL), token=bob)
    await api.post("pushers/set", pusher_body(URL, device_display_name="Renamed"), token=bob)
    (only,) = (await api.get("pushers", token=bob))["pushers"]
    assert only["device_display_name"] == "Renamed" and "profile_tag" not in only
    # append false (the default): the same app and pushkey for alice takes it from bob.
    await api.post("pushers/set", pusher_body(URL), token=alice)
    assert (await api.get("pushers", token=bob))["pushers"] == []
    # append true: both keep it.
    await api.post("pushers/set", pusher_body(URL), token=bob)
    await api.post("pushers/set", pusher_body(URL, append=True), token=alice)
    assert len((await api.get("pushers", token=bob))["pushers"]) == 1
    assert len((await api.get("pushers", token=alice))["pushers"]) == 1
    # kind null deletes (only the fields naming it are needed).
    await api.post("pushers/set", {"kind": None, "app_id": "org.example.app", "pushkey": "key-1"}, token=bob)
    assert (await api.get("pushers", token=bob))["pushers"] == []
    assert len((await api.get("pushers", token=alice))["pushers"]) == 1


async def test_pushers_per_user_are_capped(make_api: Any) -> None:
    api = await make_api(push={"max_pushers_per_user": 2})
    bob = await user(api, "bob")
    for i in range(2):
        await api.post("pushers/set", pusher_body(URL, pushkey=f"k{i}"), token=bob)
    _, answer = await api.request("POST", "pushers/set", pusher_body(URL, pushkey="k3"), token=bob, expect=403)
    assert answer["errcode"] == "M_FORBIDDEN"
    await api.post("pushers/set", pusher_body(URL, pushkey="k1", lang="de"), token=bob)  # updating one is fine


async def test_pushers_go_with_their_device_and_on_password_change(api: Api) -> None:
    await api.register("bob")
    phone = await api.login("bob")
    laptop = await api.login("bob")
    current = await api.login("bob")
    await api.post("pushers/set", pusher_body(URL, pushkey="phone"), token=phone["access_token"])
    await api.post("pushers/set", pusher_body(URL, pushkey="laptop"), token=laptop["access_token"])
    await api.post("pushers/set", pusher_body(URL, pushkey="current"), token=current["access_token"])

    await api.post("logout", {}, token=phone["access_token"])
    keys = {p["pushkey"] for p in (await api.get("pushers", token=current["access_token"]))["pushers"]}
    assert keys == {"laptop", "current"}

    body: dict[str, Any] = {"new_password": "a new password 123", "logout_devices": True}
    _, challenge = await api.request("POST", "account/password", body, token=current["access_token"], expect=401)
    body["auth"] = password_auth(challenge["session"], "bob")
    await api.post("account/password", body, token=current["access_token"])
    keys = {p["pushkey"] for p in (await api.get("pushers", token=current["access_token"]))["pushers"]}
    assert keys == {"current"}  # the other sessions' pushers went with them


async def test_gateway_on_a_refused_address_is_never_contacted(make_api: Any, ca: TestCA) -> None:
    """A gateway whose name resolves to loopback, with loopback not allowed: the guard
    refuses the connection and the notification is dropped, not retried forever."""
    gateway = PushGateway(ca, host="localhost")
    await gateway.start()
    try:
        config = push_config(ca)
        config["outbound"] = {"allowed_ranges": []}
        api = await make_api(**config)
        alice, bob = await user(api, "alice"), await user(api, "bob")
        room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
        await api.post(f"rooms/{room}/join", {}, token=bob)
        await api.post("pushers/set", pusher_body(gateway.url), token=bob)
        await send(api, room, alice, "hello")
        for _ in range(400):
            if (await api.hs.db.fetchall("SELECT COUNT(*) FROM push_queue"))[0][0] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await api.hs.db.fetchall("SELECT COUNT(*) FROM push_queue"))[0][0] == 0
        assert gateway.requests == 0
    finally:
        await gateway.stop()
