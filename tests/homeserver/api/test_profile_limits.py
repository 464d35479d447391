"""The operator's limits on profile lookups (config `profiles`): public by default
as the spec defines it; signed-in users only; users sharing a room only."""

from __future__ import annotations

from tests.conftest import Api, ClientFactory


async def test_profiles_are_public_by_default(api: Api) -> None:
    await api.register("alice")
    assert await api.get("profile/@alice:test.local") == {"displayname": "alice"}
    # A stale token changes nothing for a public lookup (it must not log the client out).
    assert await api.get("profile/@alice:test.local", token="bogus") == {"displayname": "alice"}


async def test_require_auth(make_api: ClientFactory) -> None:
    api = await make_api(profiles={"require_auth": True})
    bob = (await api.register("bob"))["access_token"]
    await api.register("alice")
    _, err = await api.request("GET", "profile/@alice:test.local", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    _, err = await api.request("GET", "profile/@alice:test.local/displayname", token="bogus", expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    assert await api.get("profile/@alice:test.local", token=bob) == {"displayname": "alice"}


async def test_limit_to_shared_rooms(make_api: ClientFactory) -> None:
    api = await make_api(profiles={"limit_to_shared_rooms": True})
    alice = (await api.register("alice"))["access_token"]
    bob = (await api.register("bob"))["access_token"]
    await api.register("carol")
    # Strangers, and users that do not exist, look the same: 403.
    for path in ("profile/@alice:test.local", "profile/@alice:test.local/displayname", "profile/@nobody:test.local"):
        _, err = await api.request("GET", path, token=bob, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    assert await api.get("profile/@alice:test.local", token=alice) == {"displayname": "alice"}
    _, err = await api.request("GET", "profile/@alice:test.local", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    room = (await api.post("createRoom", {"preset": "private_chat"}, token=alice))["room_id"]
    # Invited is enough to see who invited you (and for the inviter to see the invitee).
    await api.post(f"rooms/{room}/invite", {"user_id": "@bob:test.local"}, token=alice)
    assert await api.get("profile/@bob:test.local", token=alice) == {"displayname": "bob"}
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await api.get("profile/@alice:test.local/displayname", token=bob) == {"displayname": "alice"}
    _, err = await api.request("GET", "profile/@carol:test.local", token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
