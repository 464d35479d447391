"""The outbound federation sender against real receiving servers: aiohttp apps on
127.0.0.x with certificates from the test CA that check our X-Matrix signature
and record every PUT /send/{txnId}.

Remote members: federated joins do not exist yet, and a remote user's membership
event cannot be created locally (the auth rules want their server's signature).
So tests write the remote user's row into the ``memberships`` table through the
store (`RoomStore.set_membership`, as persisting their join would) and drop the
cached answer; `servers_in_room` then runs its real query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from federation.request_auth import parse_authorization_header, verify_request
from homeserver.storage.rooms import RoomStore
from tests.conftest import LOOPBACK_OUTBOUND, Api, running_api
from tests.homeserver.federation.servers import free_port, start_tls_app
from tests.tls_ca import TestCA

ORIGIN = "test.local"
ALICE, BOB = f"@alice:{ORIGIN}", f"@bob:{ORIGIN}"


class Receiver:
    """A remote homeserver's /send endpoint over TLS. Answers with the statuses
    queued in `statuses` (then 200); `gate`, when cleared, holds requests."""

    def __init__(self, ca: TestCA, ip: str, verify_key: Any) -> None:
        self.ca, self.ip, self.verify_key = ca, ip, verify_key
        self.port = free_port(ip)
        self.name = f"{ip}:{self.port}"
        self.statuses: list[int] = []
        self.attempts: list[tuple[str, dict[str, Any], int, float]] = []  # txn, body, status, time
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.bad_signatures = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None

    async def _send(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        try:
            auth = parse_authorization_header(request.headers.get("Authorization", ""))
            assert auth.origin == ORIGIN
            verify_request(auth, method="PUT", uri=request.raw_path, our_server_name=self.name,
                           verify_key=self.verify_key, content=body)
        except Exception:
            self.bad_signatures += 1
            return web.json_response({"errcode": "M_UNAUTHORIZED"}, status=401)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            status = self.statuses.pop(0) if self.statuses else 200
            txn_id = request.match_info["txn_id"]
            self.attempts.append((txn_id, body, status, time.monotonic()))
            if status != 200:
                return web.json_response({"errcode": "M_UNKNOWN", "error": "test"}, status=status)
            self.accepted.append((txn_id, body))
            return web.json_response({"pdus": {}})
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/federation/v1/send/{txn_id}", self._send)
        self._runner = await start_tls_app(app, self.ca, self.ip, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # what arrived
    def pdus(self) -> list[dict[str, Any]]:
        return [p for _, body in self.accepted for p in body["pdus"]]

    def messages(self) -> list[str]:
        return [p["content"]["body"] for p in self.pdus() if p["type"] == "m.room.message"]

    def edus(self, edu_type: str) -> list[dict[str, Any]]:
        return [e for _, body in self.accepted for e in body.get("edus", []) if e["edu_type"] == edu_type]


@contextlib.asynccontextmanager
async def accord(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA, *, backoff_s: float = 0.05, **overrides: Any
) -> AsyncIterator[Api]:
    """Our server (client API over the test client), trusting the test CA, with
    a sender whose backoff is short enough for tests. Presence is off unless
    asked for: its EDUs would otherwise make transaction counts timing-dependent."""
    fed = {"enabled": True, "ca_bundle_path": str(ca.ca_path), "retry_base_s": backoff_s,
           "retry_cap_s": backoff_s * 4, **overrides.pop("federation", {})}
    overrides.setdefault("presence", {"enabled": False})
    overrides.setdefault("outbound", LOOPBACK_OUTBOUND)  # the peers are on loopback
    async with running_api(tmp_path / "hs", aiohttp_client, federation=fed, **overrides) as api:
        yield api


@contextlib.asynccontextmanager
async def receiver(ca: TestCA, ip: str, verify_key: Any) -> AsyncIterator[Receiver]:
    r = Receiver(ca, ip, verify_key)
    await r.start()
    try:
        yield r
    finally:
        r.gate.set()
        await r.stop()


async def until(cond: Callable[[], bool | Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def room(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


async def add_remote_member(api: Api, room_id: str, user_id: str) -> None:
    """The row persisting their join would write (see the module docstring)."""
    hs = api.hs
    rec = await hs.room_service.get_room(room_id)
    create = await hs.room_service.current_state_event(rec, ("m.room.create", ""))
    assert create is not None and create.stream_ordering is not None

    async def fn(txn: Any) -> None:
        await RoomStore.set_membership(txn, rec.room_nid, user_id, "join", create.nid, create.stream_ordering)

    await hs.db.write(fn)
    hs.room_servers.invalidate(rec.room_nid)


async def shared_room(api: Api, peer: Receiver) -> tuple[str, str]:
    """alice's token and a room of hers that a user of ``peer`` is in."""
    alice = await user(api, "alice")
    room_id = await room(api, alice)
    await add_remote_member(api, room_id, f"@zoe:{peer.name}")
    return alice, room_id


_txn = iter(range(1, 1_000_000))


async def say(api: Api, token: str, room_id: str, body: str) -> str:
    resp = await api.put(f"rooms/{room_id}/send/m.room.message/t{next(_txn)}",
                         {"msgtype": "m.text", "body": body}, token=token)
    return resp["event_id"]


def verify_key(api: Api) -> Any:
    return api.hs.signing_key.verify_key


async def settled(api: Api, *receivers: Receiver) -> None:
    """Wait until everything handed to the sender so far has been delivered to (or
    dropped for) each receiver: then what a receiver lacks was never queued for it."""
    sender = api.hs.federation_sender
    await sender.drain_intake()
    for r in receivers:
        await until(lambda r=r: _is_zero(sender.store.count(r.name)))
        await until(lambda r=r: sender.idle(r.name))


# --- tests ---


async def test_batches_of_50_in_order_one_transaction_in_flight(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice, room_id = await shared_room(api, b)
            assert await api.hs.room_servers.servers_in_room(await api.hs.room_service.get_room(room_id)) == {
                b.name
            }
            b.gate.clear()  # the first transaction is held at the receiver
            await say(api, alice, room_id, "m0")
            await until(lambda: b.in_flight == 1)
            for i in range(1, 120):
                await say(api, alice, room_id, f"m{i}")
            await api.hs.federation_sender.drain_intake()
            assert await api.hs.federation_sender.store.count(b.name) == 120
            await asyncio.sleep(0.1)
            assert b.in_flight == 1 and b.max_in_flight == 1  # the other 119 wait their turn
            b.gate.set()
            await until(lambda: len(b.messages()) == 120)
            assert [len(body["pdus"]) for _, body in b.accepted] == [1, 50, 50, 19]
            assert b.messages() == [f"m{i}" for i in range(120)]
            assert b.max_in_flight == 1 and b.bad_signatures == 0
            txn_ids = [t for t, _ in b.accepted]
            assert len(set(txn_ids)) == len(txn_ids)
            for _, body in b.accepted:
                assert body["origin"] == ORIGIN and isinstance(body["origin_server_ts"], int)
            for pdu in b.pdus():
                assert "event_id" not in pdu and pdu["room_id"] == room_id
                assert ORIGIN in pdu["signatures"] and "sha256" in pdu["hashes"]
            await until(lambda: _is_zero(api.hs.federation_sender.store.count()))


async def test_retries_with_backoff_then_delivers_in_order(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca, backoff_s=0.1) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice, room_id = await shared_room(api, b)
            b.statuses = [500, 503, 429]
            await say(api, alice, room_id, "first")
            await until(lambda: len(b.attempts) >= 2)
            await say(api, alice, room_id, "second")  # queued behind the failing transaction
            await until(lambda: b.messages() == ["first", "second"])
            first_txn = [a for a in b.attempts if "first" in _bodies(a[1])]
            # The same transaction (ID and content) until it is taken; then the next one.
            assert [a[2] for a in first_txn] == [500, 503, 429, 200]
            assert len({a[0] for a in first_txn}) == 1
            assert all(a[1] == first_txn[0][1] for a in first_txn)
            gaps = [b2[3] - b1[3] for b1, b2 in pairwise(first_txn)]
            # 0.1 s doubling, less at most a quarter of jitter: >= 0.075, 0.15, 0.3.
            assert gaps[0] >= 0.07 and gaps[1] >= 0.14 and gaps[2] >= 0.28, gaps
            assert [len(body["pdus"]) for _, body in b.accepted] == [1, 1]
            await settled(api, b)
            assert api.hs.federation_sender.destination_state(b.name) == (0, False)  # reset


async def test_unreachable_destination_is_retried_until_it_comes_up(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca) as api:
        b = Receiver(ca, "127.0.0.3", verify_key(api))  # not listening yet
        alice, room_id = await shared_room(api, b)
        await say(api, alice, room_id, "hello")
        await until(lambda: api.hs.federation_sender.destination_state(b.name)[0] >= 2)
        await b.start()
        try:
            await until(lambda: b.messages() == ["hello"])
        finally:
            await b.stop()


async def test_other_4xx_drops_the_transaction_and_moves_on(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice, room_id = await shared_room(api, b)
            b.statuses = [400]
            await say(api, alice, room_id, "refused")
            await until(lambda: len(b.attempts) == 1)
            await say(api, alice, room_id, "taken")
            await until(lambda: b.messages() == ["taken"])
            assert [a[2] for a in b.attempts] == [400, 200]  # never retried
            # The receiver holds the message before the sender hears its answer and
            # deletes the queued row: wait for the queue to empty.
            await until(lambda: _is_zero(api.hs.federation_sender.store.count()))


async def test_queue_survives_a_restart(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA, db_overrides: dict[str, Any]
) -> None:
    b = None
    async with accord(tmp_path, aiohttp_client, ca, **db_overrides) as api:
        b = Receiver(ca, "127.0.0.3", verify_key(api))  # down during the first life
        alice, room_id = await shared_room(api, b)
        for i in range(60):
            await say(api, alice, room_id, f"m{i}")
        await until(lambda: api.hs.federation_sender.destination_state(b.name)[0] >= 1)
        # stop() returns although the destination is in backoff: the retry is cancelled.
    async with accord(tmp_path, aiohttp_client, ca, **db_overrides) as api:
        assert await api.hs.federation_sender.store.count(b.name) == 60
        await b.start()
        try:
            await until(lambda: len(b.messages()) == 60)
            assert b.messages() == [f"m{i}" for i in range(60)]
            assert [len(body["pdus"]) for _, body in b.accepted] == [50, 10]
            assert b.bad_signatures == 0
            await until(lambda: _is_zero(api.hs.federation_sender.store.count()))
        finally:
            await b.stop()


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_rooms_with_m_federate_false_send_nothing(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice = await user(api, "alice")
            local = await room(api, alice, creation_content={"m.federate": False})
            shared = await room(api, alice)
            for r in (local, shared):
                await add_remote_member(api, r, f"@zoe:{b.name}")
            for i in range(3):
                await say(api, alice, local, f"secret{i}")
            await api.put(f"rooms/{local}/typing/{ALICE}", {"typing": True, "timeout": 20000}, token=alice)
            event_id = await say(api, alice, local, "secret3")
            await api.post(f"rooms/{local}/receipt/m.read/{event_id}", {}, token=alice)
            await api.post(f"rooms/{local}/ban", {"user_id": f"@zoe:{b.name}"}, token=alice)
            await say(api, alice, shared, "public")  # a control: the receiver does hear this room
            await until(lambda: b.messages() == ["public"])
            await settled(api, b)
            assert {p["room_id"] for p in b.pdus()} == {shared}
            assert not [e for e in b.edus("m.typing") + b.edus("m.receipt") if local in json.dumps(e)]


async def test_federation_disabled_sends_nothing(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca, federation={"enabled": False}) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice, room_id = await shared_room(api, b)
            for i in range(3):
                await say(api, alice, room_id, f"m{i}")
            await api.put(f"rooms/{room_id}/typing/{ALICE}", {"typing": True, "timeout": 20000}, token=alice)
            await settled(api, b)
            assert b.attempts == []
            assert await api.hs.federation_sender.store.count() == 0


async def test_ban_of_a_remote_user_reaches_their_server(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca) as api:
        async with (
            receiver(ca, "127.0.0.3", verify_key(api)) as b,
            receiver(ca, "127.0.0.4", verify_key(api)) as c,
        ):
            alice, room_id = await shared_room(api, b)
            await api.post(f"rooms/{room_id}/ban", {"user_id": f"@carl:{c.name}"}, token=alice)
            await settled(api, b, c)
            for r in (b, c):
                [ban] = r.pdus()  # the ban only: the room's creation came before b joined
                assert (ban["type"], ban["state_key"]) == ("m.room.member", f"@carl:{c.name}")
                assert ban["content"]["membership"] == "ban"
            await say(api, alice, room_id, "after")  # c is not in the room: only b hears on
            await until(lambda: b.messages() == ["after"])
            await settled(api, b, c)
            assert c.messages() == [] and len(c.pdus()) == 1


async def test_edus_reach_the_servers_of_the_room_only(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    async with accord(tmp_path, aiohttp_client, ca, presence={"enabled": True}) as api:
        async with (
            receiver(ca, "127.0.0.3", verify_key(api)) as b,
            receiver(ca, "127.0.0.4", verify_key(api)) as c,
        ):
            alice, bob = await user(api, "alice"), await user(api, "bob")
            room_b = await room(api, alice)  # alice + a user on b
            room_c = await room(api, bob)  # bob + a user on c
            await add_remote_member(api, room_b, f"@zoe:{b.name}")
            await add_remote_member(api, room_c, f"@carl:{c.name}")
            # Receipts first, so both destinations are known to the sender before typing
            # and presence go out: sending those to "everyone known" would show.

            # receipts: public ones to c only; private ones to nobody
            event_id = await say(api, bob, room_c, "read me")
            await api.post(f"rooms/{room_c}/receipt/m.read.private/{event_id}", {}, token=bob)
            await api.post(f"rooms/{room_c}/receipt/m.read/{event_id}", {"thread_id": "main"}, token=bob)
            await until(lambda: len(c.edus("m.receipt")) == 1)
            [receipt] = c.edus("m.receipt")
            entry = receipt["content"][room_c]["m.read"][BOB]
            assert entry["event_ids"] == [event_id]
            assert entry["data"]["thread_id"] == "main" and isinstance(entry["data"]["ts"], int)
            assert set(receipt["content"][room_c]) == {"m.read"}

            # typing: start and stop, to b only
            await api.put(f"rooms/{room_b}/typing/{ALICE}", {"typing": True, "timeout": 20000}, token=alice)
            await api.put(f"rooms/{room_b}/typing/{ALICE}", {"typing": False}, token=alice)
            await until(lambda: any(not e["content"]["typing"] for e in b.edus("m.typing")))
            for e in b.edus("m.typing"):
                assert e["content"]["room_id"] == room_b and e["content"]["user_id"] == ALICE
            assert b.edus("m.typing")[-1]["content"]["typing"] is False

            # presence: alice's reaches b (shares room_b), bob's reaches c
            await api.put(f"presence/{ALICE}/status", {"presence": "unavailable", "status_msg": "away"},
                          token=alice)
            await until(lambda: any(_presence_of(e, ALICE).get("status_msg") == "away"
                                    for e in b.edus("m.presence")))
            push = [_presence_of(e, ALICE) for e in b.edus("m.presence")][-1]
            assert push["presence"] == "unavailable" and isinstance(push["last_active_ago"], int)
            await api.put(f"presence/{BOB}/status", {"presence": "online"}, token=bob)
            await until(lambda: any(_presence_of(e, BOB) for e in c.edus("m.presence")))

            await settled(api, b, c)
            # nothing crossed over
            assert all(_presence_of(e, ALICE) == {} for e in c.edus("m.presence"))
            assert all(_presence_of(e, BOB) == {} for e in b.edus("m.presence"))
            assert c.edus("m.typing") == [] and b.edus("m.receipt") == []
            assert b.messages() == [] and c.messages() == ["read me"]
            assert b.bad_signatures == c.bad_signatures == 0


def _bodies(body: dict[str, Any]) -> list[str]:
    """The message bodies in one transaction."""
    return [p["content"]["body"] for p in body["pdus"] if p["type"] == "m.room.message"]


def _presence_of(edu: dict[str, Any], user_id: str) -> dict[str, Any]:
    for push in edu["content"]["push"]:
        if push["user_id"] == user_id:
            return push
    return {}


async def test_receipt_survives_a_restart(tmp_path: Path, aiohttp_client: Any, ca: TestCA) -> None:
    b = None
    async with accord(tmp_path, aiohttp_client, ca) as api:
        b = Receiver(ca, "127.0.0.3", verify_key(api))  # down during the first life
        alice, room_id = await shared_room(api, b)
        event_id = await say(api, alice, room_id, "hi")
        await api.post(f"rooms/{room_id}/receipt/m.read/{event_id}", {}, token=alice)
        await api.hs.federation_sender.drain_intake()
    async with accord(tmp_path, aiohttp_client, ca) as api:
        await b.start()
        try:
            await until(lambda: len(b.edus("m.receipt")) == 1 and b.messages() == ["hi"])
            [receipt] = b.edus("m.receipt")
            assert receipt["content"][room_id]["m.read"][ALICE]["event_ids"] == [event_id]
        finally:
            await b.stop()


async def test_an_unencodable_event_does_not_stall_the_destination(
    tmp_path: Path, aiohttp_client: Any, ca: TestCA
) -> None:
    """An event stored before the nesting bound existed, too deep to encode, is
    left out of its transaction; what is queued with it and after it is sent."""
    async with accord(tmp_path, aiohttp_client, ca) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice, room_id = await shared_room(api, b)
            await say(api, alice, room_id, "before")
            await until(lambda: b.messages() == ["before"])
            b.gate.clear()  # hold the next transaction so the two below queue together
            await say(api, alice, room_id, "held")
            await until(lambda: b.in_flight == 1)
            poisoned = await say(api, alice, room_id, "poisoned")
            stored = await api.hs.event_store.get_event(poisoned)
            assert stored is not None
            raw = orjson.dumps(stored.event).decode()
            deep = '{"a":' * 299 + "{}" + "}" * 299
            legacy = raw.replace('"content":{', '"content":{"legacy":' + deep + ",", 1)

            async def fn(txn: Any) -> None:
                await txn.execute("UPDATE events SET json = ? WHERE event_id = ?", (legacy, poisoned))

            await api.hs.db.write(fn)
            api.hs.event_store.forget(poisoned)
            await say(api, alice, room_id, "after")
            await api.hs.federation_sender.drain_intake()
            b.gate.set()
            await until(lambda: b.messages() == ["before", "held", "after"])
            await settled(api, b)
            assert await api.hs.federation_sender.store.count() == 0


async def test_401_is_retried(tmp_path: Path, aiohttp_client: Any, ca: TestCA) -> None:
    """A peer that cannot verify us yet (it could not fetch our key, say right after
    we started) answers 401: the transaction is retried, not dropped."""
    async with accord(tmp_path, aiohttp_client, ca) as api:
        async with receiver(ca, "127.0.0.3", verify_key(api)) as b:
            alice, room_id = await shared_room(api, b)
            b.statuses = [401, 401]
            await say(api, alice, room_id, "kept")
            await until(lambda: b.messages() == ["kept"])
            assert [a[2] for a in b.attempts] == [401, 401, 200]
