"""Two rooms created by one user within one millisecond.

A v12 room's ID is its create event's hash, so two identical create events would name
the same room; the creator asked for two rooms and must get two, on either engine."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ClientFactory, FakeClock
from tests.homeserver.api.reading_helpers import user


async def test_two_rooms_in_one_millisecond(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    clock = FakeClock()
    api = await make_api(clock=clock, **db_overrides)
    alice = await user(api, "alice")
    first = (await api.post("createRoom", {"name": "One"}, token=alice))["room_id"]
    second = (await api.post("createRoom", {"name": "Two"}, token=alice))["room_id"]
    racing = await asyncio.gather(*(api.post("createRoom", {}, token=alice) for _ in range(3)))
    ids = {first, second, *(r["room_id"] for r in racing)}
    assert len(ids) == 5
    joined = (await api.get("joined_rooms", token=alice))["joined_rooms"]
    assert ids <= set(joined)
