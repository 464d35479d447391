"""GET /_matrix/client/v1/mutual_rooms: the rooms both users are joined to, batched
with next_batch tokens that expire, and the spec's errors."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.rooms import mutual_rooms
from tests.conftest import Api, FakeClock
from tests.homeserver.api.reading_helpers import create, invite, join, leave, uid, user


async def _mutual(api: Api, token: str, query: str, expect: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = (
        await api.request("GET", f"/_matrix/client/v1/mutual_rooms?{query}", token=token, expect=expect)
    )[1]
    return body


async def test_mutual_rooms_batched(make_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    api: Api = await make_api(clock=clock)
    monkeypatch.setattr(mutual_rooms, "BATCH_SIZE", 2)
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    shared = []
    for _ in range(5):
        room = await create(api, alice)
        await invite(api, room, alice, "bob")
        await join(api, room, bob)
        shared.append(room)
    await create(api, alice)  # alice's alone
    invited_only = await create(api, alice)
    await invite(api, invited_only, alice, "bob")  # bob is invited, not joined
    left = await create(api, alice)
    await invite(api, left, alice, "bob")
    await join(api, left, bob)
    await leave(api, left, bob)
    elsewhere = await create(api, bob)
    await invite(api, elsewhere, bob, "carol")
    await join(api, elsewhere, carol)  # bob and carol: not alice's

    seen: list[str] = []
    query = f"user_id={uid('bob')}"
    first = await _mutual(api, alice, query)
    assert first["count"] == 5 and len(first["joined"]) == 2
    page = first
    while "next_batch" in page:
        seen += page["joined"]
        page = await _mutual(api, alice, f"{query}&from={page['next_batch']}")
        assert page["count"] == 5
    seen += page["joined"]
    assert sorted(seen) == sorted(shared) and len(seen) == 5
    # The same from bob's side; none with carol for alice.
    assert (await _mutual(api, bob, f"user_id={uid('alice')}"))["count"] == 5
    assert await _mutual(api, alice, f"user_id={uid('carol')}") == {"joined": [], "count": 0}
    # An unknown user: an empty list.
    assert await _mutual(api, alice, "user_id=@nobody:elsewhere.example") == {"joined": [], "count": 0}
    # A token expires.
    clock.advance(mutual_rooms.TOKEN_LIFETIME_MS + 1)
    err = await _mutual(api, alice, f"{query}&from={first['next_batch']}", expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_errors(api: Api) -> None:
    alice = await user(api, "alice")
    assert (await _mutual(api, alice, "", expect=400))["errcode"] == "M_MISSING_PARAM"
    for query in (f"user_id={uid('alice')}", "user_id=alice", "user_id=@:x", f"user_id={uid('bob')}&from=garbage"):
        assert (await _mutual(api, alice, query, expect=400))["errcode"] == "M_INVALID_PARAM", query
    _, err = await api.request("GET", f"/_matrix/client/v1/mutual_rooms?user_id={uid('bob')}", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_unstable_path(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice)
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    path = f"/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms?user_id={uid('bob')}"
    assert await api.get(path, token=alice) == {"joined": [room]}
    _, err = await api.request("GET", path + "&batch_token=garbage", token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
