"""The admin APIs the console needs, on a real server: a user's devices (Synapse's
shape), our organization's profile edited at run time, the analytics read from daily
rollups (figures checked against a known workload, across a restart, on both engines),
their Prometheus export, and the console's files with their security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, running_api
from tests.homeserver.api.admin.helpers import (
    V2,
    assert_refused_to_non_admins,
    make_admin,
    make_room,
    make_user,
    send_text,
)
from tests.homeserver.api.admin.test_synadm import SYNADM, Synadm
from tests.homeserver.partners.helpers import until

ANALYTICS = "/_accord/admin/v1/analytics"
ORGANIZATION = "/_accord/admin/v1/organization"
DAY_MS = 86_400_000


async def test_devices_of_a_user(api: Any) -> None:
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    await api.login("alice", initial_device_display_name="laptop")
    path = f"{V2}/users/@alice:test.local/devices"
    await assert_refused_to_non_admins(api, "GET", path, alice)
    listing = await api.get(path, token=admin)
    assert listing["total"] == 2 and len(listing["devices"]) == 2
    laptop = next(d for d in listing["devices"] if d["display_name"] == "laptop")
    assert set(laptop) == {"device_id", "display_name", "last_seen_ip", "last_seen_ts",
                           "last_seen_user_agent", "user_id"}
    assert laptop["user_id"] == "@alice:test.local"
    one = f"{path}/{laptop['device_id']}"
    assert (await api.get(one, token=admin))["device_id"] == laptop["device_id"]
    await api.put(one, {"display_name": "old laptop"}, token=admin)
    assert (await api.get(one, token=admin))["display_name"] == "old laptop"
    _, err = await api.request("PUT", one, {"display_name": 5}, token=admin, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    # Deleting logs the device out; deleting again is no error.
    await api.request("DELETE", one, token=admin)
    await api.request("DELETE", one, token=admin)
    _, err = await api.request("GET", one, token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    remaining = (await api.get(path, token=admin))["devices"]
    assert [d["display_name"] for d in remaining] != ["old laptop"] and len(remaining) == 1
    await api.post(f"{V2}/users/@alice:test.local/delete_devices", {"devices": [remaining[0]["device_id"]]},
                   token=admin)
    assert (await api.get(path, token=admin))["total"] == 0
    _, err = await api.request("GET", "account/whoami", token=alice, expect=401)  # logged out
    _, err = await api.request("POST", f"{V2}/users/@alice:test.local/delete_devices", {"devices": "x"},
                               token=admin, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("GET", f"{V2}/users/@nobody:test.local/devices", token=admin, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", f"{V2}/users/@bob:elsewhere.org/devices", token=admin, expect=400)
    actions = [e.action for e in await api.hs.audit.query(action="admin.device.")]
    assert actions.count("admin.device.delete") == 3 and "admin.device.rename" in actions


async def test_analytics_from_rollups_across_a_restart(
    tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]
) -> None:
    clock = FakeClock(start_ms=20_000 * DAY_MS + 3_600_000)  # 2024-10-04 01:00 UTC
    async with running_api(tmp_path / "hs", aiohttp_client, clock=clock, **db_overrides) as api:
        admin = await make_admin(api)
        alice = await make_user(api, "alice")
        bob = await make_user(api, "bob")
        await assert_refused_to_non_admins(api, "GET", ANALYTICS, alice)
        room = await make_room(api, alice, preset="public_chat")
        await api.post(f"join/{room}", {}, token=bob)
        for i in range(3):
            await send_text(api, alice, room, f"a{i}", f"a{i}")
        await send_text(api, bob, room, "b0", "b0")
        # Not messages: state, and a redaction (a sent message stays counted).
        await api.put(f"rooms/{room}/state/m.room.topic/", {"topic": "t"}, token=alice)
        clock.advance(DAY_MS)
        first_of_day_two = await send_text(api, bob, room, "b1", "b1")
        await api.put(f"rooms/{room}/redact/{first_of_day_two}/r1", {}, token=bob)
        report = await api.get(f"{ANALYTICS}?days=3", token=admin)
        assert report["days"] == ["2024-10-03", "2024-10-04", "2024-10-05"]
        assert report["messages"] == {"internal": [0, 4, 1], "federated": [0, 0, 0]}
        assert report["active_users"] == [0, 2, 1]
        assert report["partners"] == [0, 0, 0]
        assert report["partner_traffic"] == [] and report["response_times"] == []
        for bad in ("0", "367", "x"):
            _, err = await api.request("GET", f"{ANALYTICS}?days={bad}", token=admin, expect=400)
            assert err["errcode"] == "M_INVALID_PARAM"
        text = await (await api.client.get("/metrics")).text()
        assert 'accord_messages_today{scope="internal"} 1' in text
        assert "accord_active_users_today 1" in text and "accord_partners_active 0" in text
    async with running_api(tmp_path / "hs", aiohttp_client, clock=clock, **db_overrides) as api:
        admin = (await api.login("root"))["access_token"]
        alice = (await api.login("alice"))["access_token"]
        await send_text(api, alice, room, "a3", "after-restart")
        report = await api.get(f"{ANALYTICS}?days=2", token=admin)
        assert report["messages"]["internal"] == [4, 2]
        assert report["active_users"] == [2, 2]


async def test_organization_profile_edited_at_run_time(
    tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]
) -> None:
    org = {"name": "Seed Org", "description": "From the config", "specialties": ["Logistics"]}
    sections: dict[str, Any] = {"organization": org, **db_overrides}
    async with running_api(tmp_path / "hs", aiohttp_client, **sections) as api:
        admin = await make_admin(api)
        alice = await make_user(api, "alice")
        await assert_refused_to_non_admins(api, "GET", ORGANIZATION, alice)
        await assert_refused_to_non_admins(api, "PUT", ORGANIZATION, alice, {"name": "x"})
        got = await api.get(ORGANIZATION, token=admin)
        assert (got["name"], got["source"], got["specialties"]) == ("Seed Org", "config", ["Logistics"])
        assert "publication" in got
        hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
        body = {"name": "Edited Org", "description": hostile, "specialties": ["Freight", "freight"],
                "contacts": ["@alice:test.local"], "website": "https://example.org", "publish_partners": True}
        put = await api.put(ORGANIZATION, body, token=admin)
        assert put["source"] == "edited" and put["updated_by"] == "@root:test.local"
        assert put["description"] == hostile  # stored as text; the console shows it as text
        assert put["specialties"] == ["Freight"] and put["location"] is None
        assert api.hs.partners.organization_name == "Edited Org"
        for bad, code in (({"name": ""}, "M_INVALID_PARAM"), ({"name": 5}, "M_BAD_JSON"),
                          ({"name": "x", "website": "javascript:alert(1)"}, "M_INVALID_PARAM"),
                          ({"name": "x", "contacts": ["nobody"]}, "M_INVALID_PARAM"),
                          ({"name": "x" * 200}, "M_TOO_LARGE"),
                          ({"name": "x", "publish_partners": "yes"}, "M_BAD_JSON")):
            _, err = await api.request("PUT", ORGANIZATION, bad, token=admin, expect=400)
            assert err["errcode"] == code, (bad, err)
        assert [e.action for e in await api.hs.audit.query(action="organization.")] == ["organization.update"]
    # The edit outlives a restart and the config no longer overrides it.
    async with running_api(tmp_path / "hs", aiohttp_client, **sections) as api:
        admin = (await api.login("root"))["access_token"]
        got = await api.get(ORGANIZATION, token=admin)
        assert (got["name"], got["source"], got["publish_partners"]) == ("Edited Org", "edited", True)
        assert (await api.hs.partner_directory_publisher.profile())["name"] == "Edited Org"


async def test_config_seed_follows_the_config_until_edited(tmp_path: Path, aiohttp_client: Any) -> None:
    async with running_api(tmp_path / "hs", aiohttp_client, organization={"name": "First"}) as api:
        assert api.hs.organization.to_json()["name"] == "First"
    async with running_api(tmp_path / "hs", aiohttp_client, organization={"name": "Second"}) as api:
        assert api.hs.organization.to_json()["name"] == "Second"
        assert api.hs.organization.source == "config"


async def test_console_files_and_headers(api: Any) -> None:
    resp = await api.client.get("/_accord/console", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/_accord/console/"
    resp = await api.client.get("/_accord/console/")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script type="module" src="js/main.js"></script>' in html and "<style" not in html
    assert " style=" not in html and "onclick" not in html
    resp = await api.client.get("/_accord/console/js/main.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    for bad in ("/_accord/console/nope.js", "/_accord/console/../server.py",
                "/_accord/console/%2e%2e/__init__.py", "/_accord/console/js/../../__init__.py"):
        resp = await api.client.get(bad)
        assert resp.status == 404, bad
        assert (await resp.json())["errcode"] in ("M_NOT_FOUND", "M_UNRECOGNIZED")


async def test_an_edited_profile_is_republished_at_once(tmp_path: Path, aiohttp_client: Any) -> None:
    """A server that is its own directory: the edit reaches the directory entry without
    waiting for the next refresh."""
    sections: dict[str, Any] = {
        "federation": {"enabled": True},
        "organization": {"name": "Seed Org"},
        "partner_directory": {"serve": True, "publish_to": ["test.local"]},
    }
    async with running_api(tmp_path / "hs", aiohttp_client, **sections) as api:
        admin = await make_admin(api)

        async def listed_as(name: str) -> bool:
            entry = (await api.hs.partner_directory.get_entry("test.local"))["entry"]
            return entry is not None and entry["profile"]["name"] == name

        await until(lambda: listed_as("Seed Org"))
        await api.put(ORGANIZATION, {"name": "Renamed Org", "specialties": ["Rivers"]}, token=admin)
        await until(lambda: listed_as("Renamed Org"))
        got = await api.get(ORGANIZATION, token=admin)
        (publication,) = got["publication"]["publications"]
        assert publication["directory"] == "test.local" and publication["last_error"] is None


async def test_destination_state_survives_a_restart(
    tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]
) -> None:
    """What the sender and the policy reported is kept across a restart (both engines)."""
    path = "/_synapse/admin/v1/federation/destinations"
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        admin = await make_admin(api)
        analytics = api.hs.analytics
        analytics.failed("down.example", "connection refused", 4.0)
        analytics.failed("down.example", "connection refused again", 8.0)
        analytics.delivered("up.example", 12)
        analytics.refused("stranger.example")
        listing = await api.get(path, token=admin)
        assert [d["destination"] for d in listing["destinations"]] == ["down.example", "stranger.example", "up.example"]
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        admin = (await api.login("root"))["access_token"]
        down = await api.get(f"{path}/down.example", token=admin)
        assert (down["consecutive_failures"], down["retry_interval"], down["last_error"]) == (
            2, 8000, "connection refused again")
        assert down["failure_ts"] is not None and down["last_success_ts"] is None
        assert down["queue_depth"] == 0 and down["partner"] is False
        assert (await api.get(f"{path}/stranger.example", token=admin))["refusals"] == 1
        assert (await api.get(f"{path}/up.example", token=admin))["last_success_ts"] is not None
        ordered = await api.get(f"{path}?order_by=retry_interval&dir=b&limit=1", token=admin)
        assert [d["destination"] for d in ordered["destinations"]] == ["down.example"]
        assert ordered["total"] == 3 and ordered["next_token"] == "1"
        report = await api.get("/_accord/admin/v1/analytics?days=1", token=admin)
        assert report["response_times"] == [{"server_name": "up.example", "transactions": 1, "avg_ms": 12.0}]


async def test_synadm_prunes_devices(make_api: Any, tmp_path: Path) -> None:
    """synadm (a real Synapse admin tool) reads a user's devices through the device admin
    API and picks the oldest to prune, parsing our answers as it parses Synapse's. The
    server's clock is in 2023, so every device was last seen long ago. (Its deletion step
    sends the bare localpart as the user ID, which Synapse refuses too: not exercised.)"""
    if SYNADM is None:
        pytest.skip("synadm is not installed (pip install -e '.[test]')")
    api = await make_api(clock=FakeClock())
    admin = await make_admin(api)
    synadm = Synadm(api, admin, tmp_path)
    await make_user(api, "alice")
    for _ in range(2):
        await api.login("alice")
    listed = await synadm("user", "prune-devices", "alice", "--list-only", "-d", "1", "-s", "1", "--ts")
    assert len(listed) == 2 and all(d["user_id"] == "@alice:test.local" for d in listed)
    devices = (await api.get(f"{V2}/users/@alice:test.local/devices", token=admin))["devices"]
    newest = max(devices, key=lambda d: (d["last_seen_ts"] or 0, d["device_id"]))
    assert newest["device_id"] not in {d["device_id"] for d in listed}
