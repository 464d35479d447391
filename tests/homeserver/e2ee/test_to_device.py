"""To-device messages: PUT /sendToDevice, delivery in /sync's to_device to one
device or all (`*`), idempotent retransmission, deletion once a later token
acknowledges them, the per-device bound, the rate limit, and wake-ups."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from tests.conftest import Api, ClientFactory
from tests.homeserver.api.reading_helpers import uid

_txns = itertools.count()


async def _device(api: Api, name: str, device_id: str, *, register: bool = False) -> str:
    if register:
        return (await api.register(name, device_id=device_id))["access_token"]
    return (await api.login(name, device_id=device_id))["access_token"]


async def _send(api: Api, token: str, messages: dict[str, Any], txn: str | None = None, expect: int = 200) -> Any:
    txn = txn or f"t{next(_txns)}"
    return (await api.request("PUT", f"sendToDevice/m.test/{txn}", {"messages": messages}, token=token, expect=expect))[1]


async def _sync(api: Api, token: str, since: str | None = None) -> tuple[list[dict[str, Any]], str]:
    body = await api.get("sync" + (f"?since={since}" if since else ""), token=token)
    return body.get("to_device", {}).get("events", []), body["next_batch"]


async def test_delivery_to_one_device_and_to_all(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    bob1 = await _device(api, "bob", "B1", register=True)
    bob2 = await _device(api, "bob", "B2")
    _, t1 = await _sync(api, bob1)
    _, t2 = await _sync(api, bob2)
    assert await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}}) == {}
    got1, t1 = await _sync(api, bob1, t1)
    assert got1 == [{"sender": uid("alice"), "type": "m.test", "content": {"n": 1}}]
    got2, t2 = await _sync(api, bob2, t2)
    assert got2 == []
    await _send(api, alice, {uid("bob"): {"*": {"n": 2}}, "@x:elsewhere.example": {"D": {"n": 3}}})
    got1, t1 = await _sync(api, bob1, t1)
    got2, t2 = await _sync(api, bob2, t2)
    assert [e["content"] for e in got1] == [{"n": 2}] and [e["content"] for e in got2] == [{"n": 2}]
    # Unknown devices get nothing, and nothing is kept for them.
    await _send(api, alice, {uid("bob"): {"NOPE": {"n": 4}}})
    assert await api.hs.to_device.store.count_pending(uid("bob"), "NOPE") == 0
    # An initial sync of a device gets all that waits for it, unacknowledged n=2 too.
    await _send(api, alice, {uid("bob"): {"B2": {"n": 5}}})
    got, _ = await _sync(api, bob2)
    assert [e["content"] for e in got] == [{"n": 2}, {"n": 5}]


async def test_retransmission_is_delivered_once(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    bob = await _device(api, "bob", "B1", register=True)
    _, since = await _sync(api, bob)
    await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}}, txn="same")
    await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}}, txn="same")
    got, _ = await _sync(api, bob, since)
    assert len(got) == 1
    # The transaction ID is the sender device's: another device of alice's may reuse it.
    alice2 = await _device(api, "alice", "A2")
    await _send(api, alice2, {uid("bob"): {"B1": {"n": 2}}}, txn="same")
    got, _ = await _sync(api, bob, since)
    assert [e["content"] for e in got] == [{"n": 1}, {"n": 2}]


async def test_transaction_ids_are_forgotten_after_the_retention_window(make_api: ClientFactory, clock: Any) -> None:
    """A retransmission within the window is still dropped; the table of remembered
    transaction IDs does not grow forever: a week later they are gone."""
    from homeserver.e2ee.to_device import TXN_RETENTION_MS

    api = await make_api(clock=clock)
    alice = await _device(api, "alice", "A1", register=True)
    bob = await _device(api, "bob", "B1", register=True)
    _, since = await _sync(api, bob)
    await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}}, txn="old")
    clock.advance(TXN_RETENTION_MS - 60_000)
    await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}}, txn="old")  # a late retry: still a repeat
    got, _ = await _sync(api, bob, since)
    assert len(got) == 1

    async def remembered() -> list[str]:
        rows = await api.hs.db.fetchall("SELECT txn_id FROM to_device_txns WHERE user_id = ?", (uid("alice"),))
        return sorted(r[0] for r in rows)

    assert await remembered() == ["old"]
    clock.advance(2 * 3600 * 1000)  # past the window, and past the hourly prune's interval
    await _send(api, alice, {uid("bob"): {"B1": {"n": 2}}}, txn="new")
    assert await remembered() == ["new"]


async def test_kept_until_a_later_token_acknowledges(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    bob = await _device(api, "bob", "B1", register=True)
    _, t0 = await _sync(api, bob)
    await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}})
    got, t1 = await _sync(api, bob, t0)
    assert len(got) == 1
    # The response was lost: the old token gets the message again.
    got, t1 = await _sync(api, bob, t0)
    assert len(got) == 1
    await _send(api, alice, {uid("bob"): {"B1": {"n": 2}}})
    got, t2 = await _sync(api, bob, t1)  # acknowledges n=1
    assert [e["content"] for e in got] == [{"n": 2}]
    assert await api.hs.to_device.store.count_pending(uid("bob"), "B1") == 1
    got, _ = await _sync(api, bob, t0)  # n=1 is gone for good
    assert [e["content"] for e in got] == [{"n": 2}]
    await _send(api, alice, {uid("bob"): {"*": {"n": 3}}})
    got, _ = await _sync(api, bob, t2)
    assert [e["content"] for e in got] == [{"n": 3}]
    assert await api.hs.to_device.store.count_pending(uid("bob"), "B1") == 1


async def test_bound_drops_the_oldest(api: Api) -> None:
    api.hs.to_device.max_pending = 3
    alice = await _device(api, "alice", "A1", register=True)
    bob = await _device(api, "bob", "B1", register=True)
    for n in range(5):
        await _send(api, alice, {uid("bob"): {"B1": {"n": n}}})
    got, _ = await _sync(api, bob)
    assert [e["content"]["n"] for e in got] == [2, 3, 4]


async def test_validation(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    assert (await _send(api, alice, "nope", expect=400))["errcode"] == "M_BAD_JSON"  # type: ignore[arg-type]
    assert (await _send(api, alice, {uid("bob"): []}, expect=400))["errcode"] == "M_BAD_JSON"
    assert (await _send(api, alice, {uid("bob"): {"B1": 1}}, expect=400))["errcode"] == "M_BAD_JSON"
    err = (await api.request("PUT", "sendToDevice/m.test/x", {}, token=alice, expect=400))[1]
    assert err["errcode"] == "M_MISSING_PARAM"
    await api.request("PUT", "sendToDevice/m.test/x", {"messages": {}}, expect=401)


async def test_rate_limited_per_sender(make_api: ClientFactory) -> None:
    api = await make_api(rate_limits={"enabled": True, "actions": {"to_device": {"per_second": 0.001, "burst": 2}}})
    alice = await _device(api, "alice", "A1", register=True)
    carol = await _device(api, "carol", "C1", register=True)
    await _send(api, alice, {})
    await _send(api, alice, {})
    err = await _send(api, alice, {}, expect=429)
    assert err["errcode"] == "M_LIMIT_EXCEEDED"
    await _send(api, carol, {})  # another sender has their own bucket


async def test_message_wakes_the_recipient(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    bob = await _device(api, "bob", "B1", register=True)
    _, since = await _sync(api, bob)
    waiting = asyncio.ensure_future(api.get(f"sync?since={since}&timeout=20000", token=bob))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await _send(api, alice, {uid("bob"): {"B1": {"hello": True}}})
    body = await asyncio.wait_for(waiting, 5)
    assert body["to_device"]["events"][0]["content"] == {"hello": True}


async def test_idle_sync_touches_no_inbox(api: Api) -> None:
    bob = await _device(api, "bob", "B1", register=True)
    _, since = await _sync(api, bob)
    store = api.hs.to_device.store

    async def refuse(*args: Any) -> Any:
        raise AssertionError("an idle sync read the inbox")

    store.pending = refuse  # type: ignore[method-assign]
    store.acknowledge = refuse  # type: ignore[method-assign]
    _, again = await _sync(api, bob, since)
    assert again == since


async def test_messages_to_others_make_no_inbox_read(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    bob = await _device(api, "bob", "B1", register=True)
    carol = await _device(api, "carol", "C1", register=True)
    _, since = await _sync(api, carol)
    await _send(api, alice, {uid("bob"): {"B1": {"n": 1}}})
    store = api.hs.to_device.store
    pending = store.pending

    async def refuse(*args: Any) -> Any:
        raise AssertionError("carol's sync read an inbox")

    store.pending = refuse  # type: ignore[method-assign]
    got, _ = await _sync(api, carol, since)
    assert got == []
    store.pending = pending  # type: ignore[method-assign]
    got, _ = await _sync(api, bob)
    assert len(got) == 1


async def test_deleted_device_inbox_goes(api: Api) -> None:
    alice = await _device(api, "alice", "A1", register=True)
    await _device(api, "bob", "B1", register=True)
    second = await _device(api, "bob", "B2")
    await _send(api, alice, {uid("bob"): {"*": {"n": 1}}})
    assert await api.hs.to_device.store.count_pending(uid("bob"), "B2") == 1
    await api.post("logout", {}, token=second)
    assert await api.hs.to_device.store.count_pending(uid("bob"), "B2") == 0
    assert await api.hs.to_device.store.count_pending(uid("bob"), "B1") == 1
