"""Device management: GET /devices, GET/PUT/DELETE /devices/{id}, POST /delete_devices."""

from __future__ import annotations

from typing import Any

from tests.conftest import PASSWORD, Api, FakeClock, password_auth

PASSWORD_FLOWS = [{"stages": ["m.login.password"]}]


async def login(api: Api, device_id: str, name: str | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"device_id": device_id}
    if name is not None:
        extra["initial_device_display_name"] = name
    return await api.login("alice", **extra)


async def token_status(api: Api, token: str) -> int:
    status, _ = await api.request("GET", "account/whoami", token=token, expect=None)
    return status


async def uia_delete(api: Api, method: str, path: str, body: dict[str, Any], token: str) -> Any:
    """Run a device deletion through its password stage; returns the final response body."""
    _, challenge = await api.request(method, path, body, token=token, expect=401)
    assert challenge["flows"] == PASSWORD_FLOWS
    auth = password_auth(challenge["session"], "alice")
    return (await api.request(method, path, {**body, "auth": auth}, token=token))[1]


# --- listing and reading --------------------------------------------------------------------


async def test_list_devices(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock)
    await api.register("alice", device_id="AAA", initial_device_display_name="Phone")
    clock.advance(5000)
    b = await login(api, "BBB", "Laptop")
    clock.advance(5000)
    c = await login(api, "CCC")
    body = await api.get("devices", token=c["access_token"])
    t0 = clock.time_ms() - 10000
    assert body == {
        "devices": [
            {"device_id": "AAA", "display_name": "Phone", "last_seen_ip": "127.0.0.1",
             "last_seen_ts": t0},
            {"device_id": "BBB", "display_name": "Laptop", "last_seen_ip": "127.0.0.1",
             "last_seen_ts": t0 + 5000},
            {"device_id": "CCC", "last_seen_ip": "127.0.0.1", "last_seen_ts": t0 + 10000},
        ]
    }
    assert await api.get("devices/BBB", token=b["access_token"]) == body["devices"][1]


async def test_devices_are_per_user(api: Api) -> None:
    alice = await api.register("alice", device_id="AAA")
    bob = await api.register("bob", device_id="BOB")
    devices = (await api.get("devices", token=alice["access_token"]))["devices"]
    assert [d["device_id"] for d in devices] == ["AAA"]
    _, err = await api.request("GET", "devices/BOB", token=alice["access_token"], expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    await api.get("devices/BOB", token=bob["access_token"])


async def test_get_unknown_device(api: Api) -> None:
    reg = await api.register("alice")
    _, err = await api.request("GET", "devices/NOPE", token=reg["access_token"], expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_device_endpoints_require_auth(api: Api) -> None:
    for method, path, body in (
        ("GET", "devices", None),
        ("GET", "devices/AAA", None),
        ("PUT", "devices/AAA", {"display_name": "x"}),
        ("DELETE", "devices/AAA", {}),
        ("POST", "delete_devices", {"devices": []}),
    ):
        _, err = await api.request(method, path, body, expect=401)
        assert err["errcode"] == "M_MISSING_TOKEN", path


async def test_guests_cannot_manage_devices(make_api) -> None:
    api = await make_api(registration={"allow_guests": True})
    guest = await api.post("register?kind=guest", {})
    token = guest["access_token"]
    for method, path, body in (
        ("GET", "devices", None),
        ("GET", f"devices/{guest['device_id']}", None),
        ("PUT", f"devices/{guest['device_id']}", {"display_name": "x"}),
        ("DELETE", f"devices/{guest['device_id']}", {}),
        ("POST", "delete_devices", {"devices": []}),
    ):
        _, err = await api.request(method, path, body, token=token, expect=403)
        assert err["errcode"] == "M_GUEST_ACCESS_FORBIDDEN", path


# --- renaming --------------------------------------------------------------------------------


async def test_rename_device(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA", initial_device_display_name="Phone")
    assert await api.put("devices/AAA", {"display_name": "Work phone"}, token=reg["access_token"]) == {}
    assert (await api.get("devices/AAA", token=reg["access_token"]))["display_name"] == "Work phone"


async def test_rename_without_display_name_leaves_it_unchanged(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA", initial_device_display_name="Phone")
    assert await api.put("devices/AAA", {}, token=reg["access_token"]) == {}
    assert (await api.get("devices/AAA", token=reg["access_token"]))["display_name"] == "Phone"


async def test_rename_unknown_device(api: Api) -> None:
    reg = await api.register("alice")
    await api.register("bob", device_id="BOB")
    for body in ({"display_name": "x"}, {}):
        for device in ("NOPE", "BOB"):
            _, err = await api.request(
                "PUT", f"devices/{device}", body, token=reg["access_token"], expect=404
            )
            assert err["errcode"] == "M_NOT_FOUND"


async def test_rename_bad_values(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    _, err = await api.request(
        "PUT", "devices/AAA", {"display_name": 5}, token=reg["access_token"], expect=400
    )
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request(
        "PUT", "devices/AAA", {"display_name": "x" * 101}, token=reg["access_token"], expect=400
    )
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("PUT", "devices/AAA", data=b"[]", token=reg["access_token"], expect=400)
    assert err["errcode"] == "M_BAD_JSON"


# --- deleting one device ------------------------------------------------------------------------


async def test_delete_device(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    other = await login(api, "BBB")
    assert await uia_delete(api, "DELETE", "devices/BBB", {}, reg["access_token"]) == {}
    assert await token_status(api, other["access_token"]) == 401
    _, err = await api.request("GET", "devices/BBB", token=reg["access_token"], expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    assert await token_status(api, reg["access_token"]) == 200


async def test_delete_own_current_device(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    await api.get("account/whoami", token=reg["access_token"])  # cached
    assert await uia_delete(api, "DELETE", "devices/AAA", {}, reg["access_token"]) == {}
    assert await token_status(api, reg["access_token"]) == 401


async def test_delete_device_needs_auth_first(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    other = await login(api, "BBB")
    _, challenge = await api.request("DELETE", "devices/BBB", {}, token=reg["access_token"], expect=401)
    assert challenge["flows"] == PASSWORD_FLOWS
    assert await token_status(api, other["access_token"]) == 200
    # Empty body too (the request body is optional in practice).
    _, challenge = await api.request("DELETE", "devices/BBB", token=reg["access_token"], expect=401)
    assert challenge["flows"] == PASSWORD_FLOWS


async def test_delete_device_wrong_password(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    other = await login(api, "BBB")
    _, challenge = await api.request("DELETE", "devices/BBB", {}, token=reg["access_token"], expect=401)
    _, err = await api.request(
        "DELETE", "devices/BBB",
        {"auth": password_auth(challenge["session"], "alice", "wrong password")},
        token=reg["access_token"], expect=401,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    assert err["session"] == challenge["session"]
    assert await token_status(api, other["access_token"]) == 200


async def test_delete_device_session_is_bound_to_the_device(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    await login(api, "BBB")
    other = await login(api, "CCC")
    _, challenge = await api.request("DELETE", "devices/BBB", {}, token=reg["access_token"], expect=401)
    _, err = await api.request(
        "DELETE", "devices/CCC", {"auth": password_auth(challenge["session"], "alice")},
        token=reg["access_token"], expect=403,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    assert await token_status(api, other["access_token"]) == 200


async def test_delete_unknown_device_succeeds(api: Api) -> None:
    """The spec answers 200 for a device that "had been removed previously"."""
    reg = await api.register("alice", device_id="AAA")
    bob = await api.register("bob", device_id="BOB")
    assert await uia_delete(api, "DELETE", "devices/NOPE", {}, reg["access_token"]) == {}
    # Another user's device ID is just unknown to alice: bob keeps his device.
    assert await uia_delete(api, "DELETE", "devices/BOB", {}, reg["access_token"]) == {}
    assert await token_status(api, bob["access_token"]) == 200


# --- deleting several devices -------------------------------------------------------------------


async def test_delete_devices(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    b = await login(api, "BBB")
    c = await login(api, "CCC")
    d = await login(api, "DDD")
    body = {"devices": ["BBB", "CCC", "NOPE", "BBB"]}
    assert await uia_delete(api, "POST", "delete_devices", body, reg["access_token"]) == {}
    assert await token_status(api, b["access_token"]) == 401
    assert await token_status(api, c["access_token"]) == 401
    assert await token_status(api, d["access_token"]) == 200
    devices = (await api.get("devices", token=reg["access_token"]))["devices"]
    assert [x["device_id"] for x in devices] == ["AAA", "DDD"]


async def test_delete_devices_empty_list(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    assert await uia_delete(api, "POST", "delete_devices", {"devices": []}, reg["access_token"]) == {}
    assert await token_status(api, reg["access_token"]) == 200


async def test_delete_devices_bad_bodies(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    _, err = await api.request("POST", "delete_devices", {}, token=reg["access_token"], expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    for devices in ("AAA", [1, 2], ["AAA", None]):
        _, err = await api.request(
            "POST", "delete_devices", {"devices": devices}, token=reg["access_token"], expect=400
        )
        assert err["errcode"] == "M_BAD_JSON", devices


async def test_delete_devices_wrong_password(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    b = await login(api, "BBB")
    body = {"devices": ["BBB"]}
    _, challenge = await api.request("POST", "delete_devices", body, token=reg["access_token"], expect=401)
    _, err = await api.request(
        "POST", "delete_devices",
        {**body, "auth": password_auth(challenge["session"], "alice", "wrong" + PASSWORD)},
        token=reg["access_token"], expect=401,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    assert await token_status(api, b["access_token"]) == 200


async def test_delete_devices_of_another_user_is_a_no_op(api: Api) -> None:
    reg = await api.register("alice", device_id="AAA")
    bob = await api.register("bob", device_id="BOB")
    await uia_delete(api, "POST", "delete_devices", {"devices": ["BOB"]}, reg["access_token"])
    assert await token_status(api, bob["access_token"]) == 200


async def test_last_seen_follows_use(db_overrides: dict[str, Any], make_api: Any, clock: FakeClock) -> None:
    """A device's last use is its latest request, not its login: recorded at most once a
    minute (sooner when its client or address changes) and written in batches, the last
    batch at the server's stop at the latest."""
    from tests.homeserver.api.admin.helpers import make_admin

    api = await make_api(clock=clock, **db_overrides)
    await api.register("alice", device_id="AAA")
    a = await login(api, "BBB")
    login_ts = clock.time_ms()
    clock.advance(120_000)
    await api.request("GET", "account/whoami", token=a["access_token"], headers={"User-Agent": "Element/1.11"})
    used_ts = clock.time_ms()
    clock.advance(10_000)  # within the minute, same client: not recorded again
    await api.request("GET", "account/whoami", token=a["access_token"], headers={"User-Agent": "Element/1.11"})
    await api.hs.auth.flush_seen()
    body = await api.get("devices/BBB", token=a["access_token"])
    assert body["last_seen_ts"] == used_ts != login_ts and body["last_seen_ip"] == "127.0.0.1"
    # Another client on the same token is recorded at once (the device list shows it).
    await api.request("GET", "account/whoami", token=a["access_token"], headers={"User-Agent": "curl/8"})
    await api.hs.auth.flush_seen()
    root = await make_admin(api)
    devices = (await api.get("/_synapse/admin/v2/users/@alice:test.local/devices", token=root))["devices"]
    bbb = next(d for d in devices if d["device_id"] == "BBB")
    assert bbb["last_seen_user_agent"] == "curl/8" and bbb["last_seen_ts"] == clock.time_ms()
