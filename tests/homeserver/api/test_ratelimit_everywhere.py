"""Rate limits on everything a client or another server can make this server work
for: createRoom, invites, joins, typing, receipts, presence, and inbound federation
per origin server (transactions, queries, joins). Each answer is 429 M_LIMIT_EXCEEDED
with a Retry-After header and `retry_after_ms`; bots stay exempt.

A fake clock stands still unless moved, so bucket refills are exact.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from federation.events.canonical import encode_base64
from federation.events.signing import key_id_of, signing_key_from_seed
from federation.request_auth import sign_request
from homeserver.config import _default_rate_limits
from homeserver.records.server_keys import StoredKey
from tests.conftest import Api, FakeClock
from tests.homeserver.api.reading_helpers import create, uid, user

BOT = "@bot:test.local"
_txn = itertools.count()


def limits(**actions: tuple[float, int]) -> dict[str, Any]:
    return {
        "enabled": True,
        "actions": {k: {"per_second": ps, "burst": b} for k, (ps, b) in actions.items()},
        "exempt_users": [BOT],
    }


async def limited(api: Api, method: str, path: str, body: Any = None, *, token: str | None = None,
                  headers: dict[str, str] | None = None, retry_after_ms: int) -> None:
    """The request is refused with 429, both forms of the wait, and CORS headers."""
    status, err = await api.request(method, path, body, token=token, headers=headers, expect=None)
    assert status == 429, (status, err)
    assert err["errcode"] == "M_LIMIT_EXCEEDED"
    assert err["retry_after_ms"] == retry_after_ms
    async with api.client.request(
        method, path if path.startswith("/") else "/_matrix/client/v3/" + path,
        json=body, headers={**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})},
    ) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == str(-(-retry_after_ms // 1000))


def test_defaults_cover_every_action() -> None:
    """Enabled out of the box, and generous enough for people using a client."""
    defaults = _default_rate_limits()
    for action in ("create_room", "invite", "join", "typing", "receipt", "presence",
                   "federation_transaction", "federation_query", "federation_join"):
        assert defaults[action].burst >= 10, action


async def test_create_room(make_api: Any, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(create_room=(0.1, 2)))
    alice = await user(api, "alice")
    await create(api, alice)
    clock.advance(1)  # same creator, content and millisecond: the same v12 create event
    await create(api, alice)
    await limited(api, "POST", "createRoom", {}, token=alice, retry_after_ms=10_000)
    # Per user; bots are exempt.
    bob = await user(api, "bob")
    await create(api, bob)
    bot = (await api.hs.registration.create_account(BOT, "bot-password-1"))["access_token"]
    for _ in range(5):
        clock.advance(1)
        await create(api, bot)
    clock.advance(10_000)
    await create(api, alice)


async def test_invites_and_joins(make_api: Any, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(invite=(0.5, 1), join=(0.5, 1)))
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    clock.advance(1)
    other = await create(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/invite", {"user_id": uid("bob")}, token=alice)
    await limited(api, "POST", f"rooms/{room}/invite", {"user_id": uid("carol")}, token=alice,
                  retry_after_ms=2001)
    await api.post(f"join/{room}", token=bob)
    await limited(api, "POST", f"join/{other}", {}, token=bob, retry_after_ms=2001)
    await limited(api, "POST", f"rooms/{other}/join", {}, token=bob, retry_after_ms=2001)
    await limited(api, "POST", f"knock/{other}", {}, token=bob, retry_after_ms=2001)
    clock.advance(2001)
    await api.post(f"rooms/{other}/join", token=bob)


async def test_typing_receipts_presence(make_api: Any, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(typing=(1.0, 2), receipt=(1.0, 2), presence=(1.0, 2)))
    alice = await user(api, "alice")
    room = await create(api, alice)
    typing = f"rooms/{room}/typing/{uid('alice')}"
    for _ in range(2):
        await api.put(typing, {"typing": True, "timeout": 1000}, token=alice)
    await limited(api, "PUT", typing, {"typing": False}, token=alice, retry_after_ms=1001)

    event_id = (await api.put(f"rooms/{room}/send/m.room.message/t{next(_txn)}",
                              {"msgtype": "m.text", "body": "hi"}, token=alice))["event_id"]
    await api.post(f"rooms/{room}/receipt/m.read/{event_id}", token=alice)
    await api.post(f"rooms/{room}/read_markers", {"m.fully_read": event_id}, token=alice)
    await limited(api, "POST", f"rooms/{room}/receipt/m.read/{event_id}", {}, token=alice, retry_after_ms=1001)
    await limited(api, "POST", f"rooms/{room}/read_markers", {"m.fully_read": event_id}, token=alice,
                  retry_after_ms=1001)

    presence = f"presence/{uid('alice')}/status"
    for _ in range(2):
        await api.put(presence, {"presence": "online"}, token=alice)
    await limited(api, "PUT", presence, {"presence": "unavailable"}, token=alice, retry_after_ms=1001)
    clock.advance(1001)
    await api.put(presence, {"presence": "unavailable"}, token=alice)


# --- inbound federation, per origin --------------------------------------------------------


class Peer:
    """A remote server this test plays: its key is in our key store (so nothing is
    fetched over the network) and it signs requests as the spec's X-Matrix."""

    def __init__(self, api: Api, name: str, seed: bytes) -> None:
        self.api, self.name = api, name
        self.key = signing_key_from_seed(seed, "k1")

    async def trust(self) -> None:
        now = self.api.hs.clock.time_ms()
        await self.api.hs.server_keys.store_keys([StoredKey(
            self.name, key_id_of(self.key), encode_base64(self.key.verify_key.encode()),
            now + 86_400_000, None, now, self.name,
        )])

    async def request(self, method: str, uri: str, content: Any = None) -> tuple[int, Any, dict[str, str]]:
        auth = sign_request(method=method, uri=uri, origin=self.name, destination="test.local",
                            signing_key=self.key, content=content)
        data = orjson.dumps(content) if content is not None else None
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        async with self.api.client.request(method, uri, data=data, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)


def _assert_429(answer: tuple[int, Any, dict[str, str]], retry_after_ms: int) -> None:
    status, body, headers = answer
    assert (status, body["errcode"], body["retry_after_ms"]) == (429, "M_LIMIT_EXCEEDED", retry_after_ms)
    assert headers["Retry-After"] == str(-(-retry_after_ms // 1000))


async def test_inbound_federation_per_origin(make_api: Any, clock: FakeClock) -> None:
    api = await make_api(
        clock=clock, federation={"enabled": True},
        rate_limits=limits(federation_transaction=(1.0, 2), federation_query=(1.0, 2), federation_join=(1.0, 2)),
    )
    alice = await user(api, "alice")
    room = await create(api, alice, preset="public_chat")
    peer, other = Peer(api, "peer.example", b"\x01" * 32), Peer(api, "other.example", b"\x02" * 32)
    await peer.trust()
    await other.trust()

    def txn(origin: str) -> dict[str, Any]:
        return {"origin": origin, "origin_server_ts": clock.time_ms(), "pdus": [], "edus": []}

    for _ in range(2):
        answer = await peer.request("PUT", f"/_matrix/federation/v1/send/t{next(_txn)}", txn(peer.name))
        assert answer[0] == 200, answer
    _assert_429(await peer.request("PUT", f"/_matrix/federation/v1/send/t{next(_txn)}", txn(peer.name)), 1001)
    # Another origin has a bucket of its own.
    assert (await other.request("PUT", f"/_matrix/federation/v1/send/t{next(_txn)}", txn(other.name)))[0] == 200

    # Unescaped where legal, so the test client sends the target exactly as signed.
    profile = "/_matrix/federation/v1/query/profile?user_id=@alice:test.local"
    directory = "/_matrix/federation/v1/query/directory?room_alias=%23nowhere:test.local"
    assert (await peer.request("GET", profile))[0] == 200
    assert (await peer.request("GET", directory))[0] == 404
    _assert_429(await peer.request("GET", profile), 1001)

    make_join = f"/_matrix/federation/v1/make_join/{room}/@bob:peer.example?ver=12"
    assert (await peer.request("GET", make_join))[0] == 200
    assert (await peer.request("GET", make_join))[0] == 200
    _assert_429(await peer.request("GET", make_join), 1001)
    _assert_429(await peer.request("PUT", f"/_matrix/federation/v2/send_join/{room}/$x", {}), 1001)
    _assert_429(await peer.request("PUT", f"/_matrix/federation/v2/invite/{room}/$x", {}), 1001)
    clock.advance(1001)
    assert (await peer.request("GET", make_join))[0] == 200
