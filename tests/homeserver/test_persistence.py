"""Accounts survive a restart, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import running_api


async def test_restart_keeps_users_devices_tokens(
    tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]
) -> None:
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        reg = await api.register("alice", initial_device_display_name="laptop")
        token, device = reg["access_token"], reg["device_id"]
        await api.put(f"devices/{device}", {"display_name": "work laptop"}, token=token)
        await api.put("profile/@alice:test.local/displayname", {"displayname": "Alice"}, token=token)
        second = await api.login("alice")

    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        who = await api.get("account/whoami", token=token)
        assert who["device_id"] == device
        devices = await api.get("devices", token=second["access_token"])
        names = {d["device_id"]: d.get("display_name") for d in devices["devices"]}
        assert names == {device: "work laptop", second["device_id"]: None}
        assert await api.get("profile/@alice:test.local") == {"displayname": "Alice"}
        await api.login("alice")
        # Logging out in the second life is durable too.
        await api.post("logout", token=token)

    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        status, body = await api.request("GET", "account/whoami", token=token, expect=401)
        assert body["errcode"] == "M_UNKNOWN_TOKEN"
        assert (await api.get("account/whoami", token=second["access_token"]))["user_id"] == "@alice:test.local"


async def test_restart_keeps_rooms_and_continues_the_dag(
    tmp_path: Path, aiohttp_client: Any, db_overrides: dict[str, Any]
) -> None:
    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        token = (await api.register("alice"))["access_token"]
        room = (await api.post("createRoom", {"name": "Durable"}, token=token))["room_id"]
        sent = [
            (await api.put(f"rooms/{room}/send/m.room.message/{i}", {"body": str(i)}, token=token))["event_id"]
            for i in range(5)
        ]

    async with running_api(tmp_path / "hs", aiohttp_client, **db_overrides) as api:
        # The transaction ID still maps to the same event after a restart.
        again = await api.put(f"rooms/{room}/send/m.room.message/4", {"body": "4"}, token=token)
        assert again["event_id"] == sent[4]
        new = (await api.put(f"rooms/{room}/send/m.room.message/5", {"body": "5"}, token=token))["event_id"]
        msgs = await api.get(f"rooms/{room}/messages?dir=b&limit=6", token=token)
        assert [m["event_id"] for m in msgs["chunk"]] == [new, *reversed(sent)]
        event = await api.get(f"rooms/{room}/event/{new}", token=token)
        stored = await api.hs.event_store.get_event(new)
        assert stored is not None and stored.event["prev_events"] == [sent[4]]
        assert event["content"] == {"body": "5"}
        assert await api.get(f"rooms/{room}/state/m.room.name", token=token) == {"name": "Durable"}
