"""End-to-end encryption between two real servers: keys queried and claimed
across servers, remote device lists cached while a room is shared and kept
current by m.device_list_update and m.signing_key_update (a gap refetches the
list), to-device messages both ways, delivered once; and hostile EDUs (forged
senders, malformed or oversized ones) dropped while the transaction answers 200.
Both servers run on SQLite, then both on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from homeserver.server import HomeServer
from tests.conftest import fresh_pg_database
from tests.homeserver.e2ee.keyhelpers import device_keys, new_key, otk, public, signed
from tests.homeserver.federation.servers import Client, Pair, Servers, running_pair
from tests.tls_ca import TestCA


async def _until(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def _device(client: Client) -> str:
    return str((await client.call("GET", "/account/whoami"))["device_id"])


async def _upload(client: Client, n_otks: int = 0) -> tuple[str, Any]:
    """Device keys (and `n_otks` one-time keys) for the client's device."""
    device_id = await _device(client)
    key = new_key(device_id)
    body: dict[str, Any] = {"device_keys": device_keys(client.user_id, device_id, key)}
    if n_otks:
        body["one_time_keys"] = {f"signed_curve25519:K{i}": otk(client.user_id, key, i) for i in range(n_otks)}
    await client.call("POST", "/keys/upload", body)
    return device_id, key


def _cross_signing(user_id: str) -> dict[str, Any]:
    master = new_key("master")
    ssk = new_key("ssk")
    master_key = {"user_id": user_id, "usage": ["master"], "keys": {f"ed25519:{public(master)}": public(master)}}
    ssk_key = signed(
        {"user_id": user_id, "usage": ["self_signing"], "keys": {f"ed25519:{public(ssk)}": public(ssk)}},
        user_id, _renamed(master),
    )
    return {"master_key": master_key, "self_signing_key": ssk_key}


def _renamed(key: Any) -> Any:
    key.version = public(key)  # cross-signing keys are named by their public key
    return key


async def _send_edus(sender: HomeServer, dest: str, txn: str, edus: list[dict[str, Any]]) -> Any:
    """A transaction of EDUs straight from `sender` to `dest` (signed by `sender`)."""
    assert sender.federation_client is not None
    return await sender.federation_client.put_json(
        dest, f"/_matrix/federation/v1/send/{txn}",
        {"origin": sender.config.server_name, "origin_server_ts": sender.clock.time_ms(), "pdus": [], "edus": edus},
    )


async def _sync_since(client: Client, since: str, want: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            got = await client.call("GET", f"/sync?since={since}&timeout=1000")
            if want(got):
                return got
            since = got["next_batch"]


async def test_keys_device_lists_and_to_device_across_servers(
    tmp_path: Path, ca: TestCA, db_overrides: dict[str, Any]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        b_config: dict[str, Any] = {}
        if db_overrides:  # both on PostgreSQL: each side's tables are exercised there
            b_config = {"database": {"engine": "postgres", "dsn": await stack.enter_async_context(fresh_pg_database(migrated=True))}}
        pair = await stack.enter_async_context(running_pair(tmp_path, ca, a_config=db_overrides, b_config=b_config))
        await _across(pair)


async def _across(pair: Pair) -> None:
    a, b, alice, bob, alice_id, bob_id = pair.a, pair.b, pair.alice, pair.bob, pair.alice_id, pair.bob_id
    alice_dev, _ = await _upload(alice, n_otks=2)
    bob_dev, _ = await _upload(bob, n_otks=1)

    # No shared room: bob's server asks alice's (/user/keys/query), nothing is cached.
    q = await bob.call("POST", "/keys/query", {"device_keys": {alice_id: []}, "timeout": 10000})
    assert q["failures"] == {}
    assert q["device_keys"][alice_id][alice_dev]["user_id"] == alice_id
    assert "device_display_name" not in q["device_keys"][alice_id][alice_dev].get("unsigned", {})
    assert await b.remote_keys.store.get(alice_id) is None

    # Claims across servers, in both directions; each key handed out once.
    claim = {"one_time_keys": {alice_id: {alice_dev: "signed_curve25519"}}}
    first = (await bob.call("POST", "/keys/claim", claim))["one_time_keys"][alice_id][alice_dev]
    second = (await bob.call("POST", "/keys/claim", claim))["one_time_keys"][alice_id][alice_dev]
    assert first != second
    assert (await bob.call("POST", "/keys/claim", claim))["one_time_keys"] == {}
    back = await alice.call("POST", "/keys/claim", {"one_time_keys": {bob_id: {bob_dev: "signed_curve25519"}}})
    assert list(back["one_time_keys"][bob_id][bob_dev]) == ["signed_curve25519:K0"]

    # An encrypted room they share: bob's server caches alice's list on the next query.
    room = (await alice.call("POST", "/createRoom", {
        "preset": "private_chat", "invite": [bob_id],
        "initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    }))["room_id"]
    await _until(lambda: _invited(bob, room))
    await bob.call("POST", f"/join/{room}", {})
    await _until(lambda: b.remote_keys.tracked(alice_id))
    await bob.call("POST", "/keys/query", {"device_keys": {alice_id: []}})
    cached = await b.remote_keys.store.get(alice_id)
    assert cached is not None and cached.up_to_date and set(cached.devices) == {alice_dev}
    since = (await bob.call("GET", "/sync?timeout=0"))["next_batch"]

    # A new device of alice's: an m.device_list_update reaches B, whose cache follows
    # without a refetch, and bob's /sync says alice changed.
    fetched: list[str] = []
    assert b.federation_client is not None
    b.federation_client.observers.append(lambda m, d, target, c: fetched.append(target))
    alice2 = pair.client(pair.a_spec)
    await alice2.login("alice")
    alice_dev2, _ = await _upload(alice2)
    synced = await _sync_since(bob, since, lambda s: alice_id in s.get("device_lists", {}).get("changed", []))
    await _until(lambda: _cached_devices(b, alice_id, {alice_dev, alice_dev2}))
    q = await bob.call("POST", "/keys/query", {"device_keys": {alice_id: []}})
    assert set(q["device_keys"][alice_id]) == {alice_dev, alice_dev2}
    assert not [t for t in fetched if "/user/" in t]  # from the cache, kept current by the EDU
    changes = await bob.call("GET", f"/keys/changes?from={since}&to={synced['next_batch']}")
    assert alice_id in changes["changed"]

    # The device logs out: the deletion travels too.
    await alice2.call("POST", "/logout", {})
    await _until(lambda: _cached_devices(b, alice_id, {alice_dev}))

    # Cross-signing keys: m.signing_key_update, served from B's cache.
    await alice.call("POST", "/keys/device_signing/upload", _cross_signing(alice_id))
    await _until(lambda: _cached_master(b, alice_id))
    q = await bob.call("POST", "/keys/query", {"device_keys": {alice_id: []}})
    assert q["master_keys"][alice_id]["usage"] == ["master"]
    assert q["self_signing_keys"][alice_id]["usage"] == ["self_signing"]

    # To-device both ways, each delivered once (a retransmitted request sends nothing more).
    alice_since = (await alice.call("GET", "/sync?timeout=0"))["next_batch"]
    for _ in range(2):
        await bob.call("PUT", "/sendToDevice/m.room_key_request/tx1", {"messages": {alice_id: {"*": {"n": 1}}}})
    got = await _sync_since(alice, alice_since, lambda s: bool(s.get("to_device", {}).get("events")))
    assert [(e["sender"], e["type"], e["content"]) for e in got["to_device"]["events"]] == [
        (bob_id, "m.room_key_request", {"n": 1})
    ]
    await alice.call("PUT", "/sendToDevice/m.dummy/tx1", {"messages": {bob_id: {bob_dev: {"hello": "bob"}}}})
    got = await _sync_since(bob, since, lambda s: bool(s.get("to_device", {}).get("events")))
    assert got["to_device"]["events"][0]["content"] == {"hello": "bob"}
    await asyncio.sleep(0.5)  # nothing more arrives
    again = await alice.call("GET", f"/sync?since={got['next_batch']}&timeout=0")
    assert not again.get("to_device", {}).get("events")

    # A gap: an update naming a stream ID B never saw makes B fetch the list whole.
    await _send_edus(a, pair.b_spec.name, "gap1", [{"edu_type": "m.device_list_update", "content": {
        "user_id": alice_id, "device_id": "GHOST", "stream_id": 10_000, "prev_id": [9_999], "deleted": False,
    }}])
    assert [t for t in fetched if "/user/devices/" in t]
    cached = await b.remote_keys.store.get(alice_id)
    assert cached is not None and set(cached.devices) == {alice_dev} and 10_000 in cached.seen

    # Bob leaves: no one on B shares a room with alice, her list is dropped.
    await bob.call("POST", f"/rooms/{room}/leave", {})
    await _until(lambda: _dropped(b, alice_id))


async def _invited(client: Client, room: str) -> bool:
    sync = await client.call("GET", "/sync?timeout=0")
    return room in sync.get("rooms", {}).get("invite", {})


async def _cached_devices(hs: HomeServer, user_id: str, devices: set[str]) -> bool:
    cached = await hs.remote_keys.store.get(user_id)
    return cached is not None and set(cached.devices) == devices


async def _cached_master(hs: HomeServer, user_id: str) -> bool:
    cached = await hs.remote_keys.store.get(user_id)
    return cached is not None and cached.master_key is not None and cached.self_signing_key is not None


async def _dropped(hs: HomeServer, user_id: str) -> bool:
    return await hs.remote_keys.store.get(user_id) is None


async def test_hostile_e2ee_edus_are_dropped(pair: Pair) -> None:
    a, b, alice, bob, alice_id, bob_id = pair.a, pair.b, pair.alice, pair.bob, pair.alice_id, pair.bob_id
    alice_dev, _ = await _upload(alice)
    bob_dev, _ = await _upload(bob)
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    await bob.call("POST", f"/join/{room}?server_name={pair.a_spec.name}", {})
    await _until(lambda: a.remote_keys.tracked(bob_id))
    await alice.call("POST", "/keys/query", {"device_keys": {bob_id: []}})  # A caches bob's list
    before = await a.remote_keys.store.get(bob_id)
    assert before is not None and set(before.devices) == {bob_dev}
    alice_since = (await alice.call("GET", "/sync?timeout=0"))["next_batch"]
    ghost = new_key("GHOST")
    elsewhere = "@mallory:127.0.0.9:1234"
    hostile = [
        # B speaking for A's user and for a third server's user.
        {"edu_type": "m.device_list_update", "content": {
            "user_id": alice_id, "device_id": "EVIL", "stream_id": 1, "prev_id": [], "deleted": True}},
        {"edu_type": "m.device_list_update", "content": {
            "user_id": elsewhere, "device_id": "EVIL", "stream_id": 1, "prev_id": []}},
        # Bob's, but keys that are not the device's (another device's ID, bad signature).
        {"edu_type": "m.device_list_update", "content": {
            "user_id": bob_id, "device_id": "GHOST", "stream_id": before.stream_id + 1, "prev_id": [before.stream_id],
            "keys": device_keys(bob_id, "OTHER", ghost)}},
        {"edu_type": "m.device_list_update", "content": {
            "user_id": bob_id, "device_id": "GHOST", "stream_id": "1", "prev_id": "x"}},
        {"edu_type": "m.signing_key_update", "content": {"user_id": alice_id, **_cross_signing(alice_id)}},
        {"edu_type": "m.signing_key_update", "content": {"user_id": bob_id, "master_key": {"user_id": alice_id}}},
        # To-device messages from a user who is not B's, malformed, and too many devices.
        {"edu_type": "m.direct_to_device", "content": {
            "sender": alice_id, "type": "m.forged", "message_id": "m1", "messages": {alice_id: {"*": {"x": 1}}}}},
        {"edu_type": "m.direct_to_device", "content": {
            "sender": bob_id, "type": "m.bad", "message_id": "m2", "messages": {alice_id: {alice_dev: "text"}}}},
        {"edu_type": "m.direct_to_device", "content": {
            "sender": bob_id, "type": "m.flood", "message_id": "m3",
            "messages": {alice_id: {f"D{i}": {} for i in range(1001)} | {"*": {"x": 1}}}}},
        "not an object",
    ]
    answer = await _send_edus(b, pair.a_spec.name, "hostile1", hostile)
    assert answer == {"pdus": {}}
    after = await a.remote_keys.store.get(bob_id)
    assert after is not None and after.devices == before.devices  # bad keys: refetched, not taken
    assert await a.remote_keys.store.get(elsewhere) is None
    assert await a.remote_keys.store.get(alice_id) is None
    assert (await a.keys.store.get_cross_signing_keys(alice_id)) == {}
    assert set(await a.keys.store.get_device_keys(alice_id)) == {alice_dev}

    # A well-formed message from bob, sent twice with one message_id: delivered once.
    good = {"edu_type": "m.direct_to_device", "content": {
        "sender": bob_id, "type": "m.ok", "message_id": "m4", "messages": {alice_id: {alice_dev: {"x": 1}}}}}
    await _send_edus(b, pair.a_spec.name, "good1", [good])
    await _send_edus(b, pair.a_spec.name, "good2", [good])
    got = await _sync_since(alice, alice_since, lambda s: bool(s.get("to_device", {}).get("events")))
    assert [(e["sender"], e["type"]) for e in got["to_device"]["events"]] == [(bob_id, "m.ok")]


async def test_silent_and_unreachable_servers_are_failures(pair: Pair) -> None:
    """One query asks every server at once: a server that accepts connections and
    never answers is a failure once the request's `timeout` is spent, one that
    refuses connections a failure at once, and the server that answers is served."""
    alice, bob, alice_id = pair.alice, pair.bob, pair.alice_id
    alice_dev, _ = await _upload(alice, n_otks=1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never a byte back
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.4", 0)
    port = server.sockets[0].getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.5", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    silent_name, closed_name = f"127.0.0.4:{port}", f"127.0.0.5:{closed_port}"
    try:
        q = await bob.call("POST", "/keys/query", {"timeout": 500, "device_keys": {
            alice_id: [], f"@x:{silent_name}": [], f"@y:{closed_name}": []}})
        assert set(q["failures"]) == {silent_name, closed_name}
        assert q["failures"][silent_name]["status"] == 504
        assert list(q["device_keys"][alice_id]) == [alice_dev]
        c = await bob.call("POST", "/keys/claim", {"timeout": 500, "one_time_keys": {
            alice_id: {alice_dev: "signed_curve25519"}, f"@x:{silent_name}": {"D": "signed_curve25519"}}})
        assert set(c["failures"]) == {silent_name}
        assert list(c["one_time_keys"][alice_id]) == [alice_dev]
    finally:
        server.close()


async def test_non_partners_get_no_keys_and_no_to_device(tmp_path: Path, ca: TestCA) -> None:
    """A under `federation.policy: partners`, B not its partner: B's users cannot
    read or claim A's users' keys, A asks B nothing and queues nothing for B, and
    B's to-device messages never reach A's users."""
    async with running_pair(tmp_path, ca, a_config={"federation": {"policy": "partners"}}) as pair:
        a, b, alice, bob, alice_id, bob_id = pair.a, pair.b, pair.alice, pair.bob, pair.alice_id, pair.bob_id
        alice_dev, _ = await _upload(alice, n_otks=1)
        bob_dev, _ = await _upload(bob, n_otks=1)
        q = await bob.call("POST", "/keys/query", {"device_keys": {alice_id: []}})
        assert pair.a_spec.name in q["failures"] and q["device_keys"] == {}
        c = await bob.call("POST", "/keys/claim", {"one_time_keys": {alice_id: {alice_dev: "signed_curve25519"}}})
        assert pair.a_spec.name in c["failures"] and c["one_time_keys"] == {}
        q = await alice.call("POST", "/keys/query", {"device_keys": {bob_id: []}})
        assert pair.b_spec.name in q["failures"] and q["device_keys"] == {}
        assert await b.keys.store.one_time_key_counts(bob_id, bob_dev) == {"signed_curve25519": 1}

        await alice.call("PUT", "/sendToDevice/m.x/t1", {"messages": {bob_id: {"*": {"n": 1}}}})
        assert await a.federation_sender.store.count(pair.b_spec.name) == 0
        alice_since = (await alice.call("GET", "/sync?timeout=0"))["next_batch"]
        await bob.call("PUT", "/sendToDevice/m.x/t1", {"messages": {alice_id: {"*": {"n": 1}}}})
        await b.federation_sender.drain_intake()
        await _until(lambda: _outbox_empty(b, pair.a_spec.name))  # refused by A: dropped
        got = await alice.call("GET", f"/sync?since={alice_since}&timeout=0")
        assert not got.get("to_device", {}).get("events")


async def _outbox_empty(hs: HomeServer, destination: str) -> bool:
    return await hs.federation_sender.store.count(destination) == 0 and hs.federation_sender.idle(destination)


async def test_to_device_for_a_server_that_is_down_survives_a_restart(servers: Servers) -> None:
    """A message for a user of a server that is down waits in the outbox, is still
    there after the sending server restarts, and arrives once when the peer is back."""
    fast = {"retry_base_s": 0.2, "retry_cap_s": 1.0}
    a_spec, b_spec = servers.spec("127.0.0.2"), servers.spec("127.0.0.3")
    await servers.start(a_spec, federation=fast)
    await servers.start(b_spec, federation=fast)
    alice, bob = servers.client(a_spec), servers.client(b_spec)
    alice_id, bob_id = await alice.register("alice"), await bob.register("bob")
    bob_dev = await _device(bob)
    since = (await bob.call("GET", "/sync?timeout=0"))["next_batch"]
    await servers.stop(b_spec)
    await alice.call("PUT", "/sendToDevice/m.x/t1", {"messages": {bob_id: {bob_dev: {"kept": True}}}})
    await alice.call("PUT", "/sendToDevice/m.x/t1", {"messages": {bob_id: {bob_dev: {"kept": True}}}})
    await servers.stop(a_spec)
    a = await servers.start(a_spec, federation=fast)
    assert await a.federation_sender.store.count(b_spec.name) == 1
    await servers.start(b_spec, federation=fast)
    got = await _sync_since(bob, since, lambda s: bool(s.get("to_device", {}).get("events")))
    assert [(e["sender"], e["content"]) for e in got["to_device"]["events"]] == [(alice_id, {"kept": True})]
    await _until(lambda: _outbox_empty(a, b_spec.name))
    again = await bob.call("GET", f"/sync?since={got['next_batch']}&timeout=0")
    assert not again.get("to_device", {}).get("events")
