"""override_ratelimit: stored, honoured by the limiter at once, and kept across restarts."""

from __future__ import annotations

import pytest

from tests.conftest import Api, FakeClock
from tests.homeserver.api.admin.helpers import (
    V1,
    assert_refused_to_non_admins,
    make_admin,
    make_room,
    make_user,
)

ALICE = "@alice:test.local"
PATH = V1 + f"/users/{ALICE}/override_ratelimit"
LIMITS = {"enabled": True, "actions": {"message": {"per_second": 0.1, "burst": 2}}}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_non_admins_are_refused(api: Api, method: str) -> None:
    alice = await make_user(api, "alice")
    await assert_refused_to_non_admins(api, method, PATH, alice, {} if method == "POST" else None)


async def _sends(api: Api, token: str, room: str, n: int, prefix: str) -> list[int]:
    statuses = []
    for i in range(n):
        status, _ = await api.request(
            "PUT", f"rooms/{room}/send/m.room.message/{prefix}{i}", {"msgtype": "m.text", "body": "x"},
            token=token, expect=None,
        )
        statuses.append(status)
    return statuses


async def test_override_is_honoured(make_api, make_hs) -> None:  # noqa: ANN001
    clock = FakeClock()
    api = await make_api(clock=clock, rate_limits=LIMITS)
    admin = await make_admin(api)
    alice = await make_user(api, "alice")
    room = await make_room(api, alice)
    assert await api.get(PATH, token=admin) == {}
    assert 429 in await _sends(api, alice, room, 5, "a")  # the server's limit applies
    # exempt: 0/0
    assert await api.post(PATH, {"messages_per_second": 0, "burst_count": 0}, token=admin) == {
        "messages_per_second": 0, "burst_count": 0,
    }
    assert api.hs.is_ratelimit_exempt(ALICE)
    assert set(await _sends(api, alice, room, 10, "b")) == {200}
    # a more generous rate than the server's
    assert await api.post(PATH, {"messages_per_second": 100, "burst_count": 20}, token=admin) == {
        "messages_per_second": 100, "burst_count": 20,
    }
    assert not api.hs.is_ratelimit_exempt(ALICE)
    assert set(await _sends(api, alice, room, 15, "c")) == {200}
    assert await api.get(PATH, token=admin) == {"messages_per_second": 100, "burst_count": 20}
    # kept across a restart: a second server on the same database reads it back
    assert await api.hs.user_admin.store.get_override(ALICE) == (100, 20)
    assert await api.request("DELETE", PATH, token=admin) == (200, {})
    assert await api.get(PATH, token=admin) == {}
    clock.advance(60_000)
    assert 429 in await _sends(api, alice, room, 5, "d")


async def test_override_survives_restart(make_hs) -> None:  # noqa: ANN001
    hs = await make_hs()
    await hs.registration.create_account(ALICE, "a long enough password", login=False)
    await hs.user_admin.set_ratelimit_override(ALICE, (3, 7))
    await hs.registration.create_account("@bot:test.local", None, login=False)
    await hs.user_admin.set_ratelimit_override("@bot:test.local", (0, 0))
    await hs.stop()
    again = await make_hs()
    assert again.ratelimiter._overrides[ALICE].burst == 7
    assert again.is_ratelimit_exempt("@bot:test.local")


async def test_bad_input(api: Api) -> None:
    admin = await make_admin(api)
    await make_user(api, "alice")
    for body in ({"messages_per_second": -1}, {"burst_count": "10"}, {"messages_per_second": 1.5},
                 {"burst_count": True}):
        _, err = await api.request("POST", PATH, body, token=admin, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM", body
    for method in ("GET", "POST", "DELETE"):
        await api.request(method, V1 + "/users/@ghost:test.local/override_ratelimit",
                          {} if method == "POST" else None, token=admin, expect=404)
        _, err = await api.request(method, V1 + "/users/@x:elsewhere.example/override_ratelimit",
                                   {} if method == "POST" else None, token=admin, expect=400)
    _, err = await api.request("POST", PATH, data=b"{", token=admin, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
