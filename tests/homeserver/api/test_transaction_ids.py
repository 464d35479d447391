"""A transaction ID reaches only the device that sent the event: device IDs are unique
per user alone, so users who share one (`PHONE`) must not see each other's."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api

DEVICE = "PHONE"


def _txn_ids(events: list[dict[str, Any]]) -> dict[str, str | None]:
    return {e["event_id"]: e.get("unsigned", {}).get("transaction_id") for e in events}


def _walk_txn_ids(value: Any) -> list[str]:
    """Every transaction ID anywhere in a response (bundled events included)."""
    if isinstance(value, dict):
        found = [value["transaction_id"]] if isinstance(value.get("transaction_id"), str) else []
        return found + [t for v in value.values() for t in _walk_txn_ids(v)]
    if isinstance(value, list):
        return [t for v in value for t in _walk_txn_ids(v)]
    return []


async def test_users_sharing_a_device_id_see_only_their_own_transaction_ids(api: Api) -> None:
    alice, bob, carol = [await api.register(name, device_id=DEVICE) for name in ("alice", "bob", "carol")]
    assert {alice["device_id"], bob["device_id"], carol["device_id"]} == {DEVICE}
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice["access_token"]))["room_id"]
    for who in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=who["access_token"])
    since = {who["user_id"]: (await api.get("sync", token=who["access_token"]))["next_batch"]
             for who in (alice, bob, carol)}

    said = (await api.put(f"rooms/{room}/send/m.room.message/a1", {"msgtype": "m.text", "body": "hi"},
                          token=alice["access_token"]))["event_id"]
    edit = (await api.put(f"rooms/{room}/send/m.room.message/a2", {
        "msgtype": "m.text", "body": "* hello", "m.new_content": {"msgtype": "m.text", "body": "hello"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": said},
    }, token=alice["access_token"]))["event_id"]
    reply = (await api.put(f"rooms/{room}/send/m.room.message/b1", {"msgtype": "m.text", "body": "hey"},
                           token=bob["access_token"]))["event_id"]
    own = {alice["user_id"]: {said: "a1", edit: "a2", reply: None},
           bob["user_id"]: {said: None, edit: None, reply: "b1"},
           carol["user_id"]: {said: None, edit: None, reply: None}}

    # Incremental sync (bob and carol read the same range: one shared timeline).
    for who in (bob, carol, alice):
        body = await api.get(f"sync?since={since[who['user_id']]}", token=who["access_token"])
        assert _txn_ids(body["rooms"]["join"][room]["timeline"]["events"]) == own[who["user_id"]]
    # Initial sync, twice each: the second reader of a room takes the kept section.
    for _ in range(2):
        for who in (bob, carol, alice):
            body = await api.get("sync", token=who["access_token"])
            seen = {k: v for k, v in _txn_ids(body["rooms"]["join"][room]["timeline"]["events"]).items()
                    if k in own[who["user_id"]]}
            assert seen == own[who["user_id"]]
    # Room history: /messages, /event, /context, with the edit bundled on its original.
    for who in (bob, carol):
        token = who["access_token"]
        mine = [t for t in own[who["user_id"]].values() if t is not None]
        messages = await api.get(f"rooms/{room}/messages?dir=b&limit=50", token=token)
        assert sorted(_walk_txn_ids(messages)) == mine
        original = await api.get(f"rooms/{room}/event/{said}", token=token)
        assert original["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
        assert _walk_txn_ids(original) == []
        context = await api.get(f"rooms/{room}/context/{said}?limit=10", token=token)
        assert sorted(_walk_txn_ids(context)) == mine
    # The sender's own device still sees its IDs, on the bundled edit too.
    original = await api.get(f"rooms/{room}/event/{said}", token=alice["access_token"])
    assert original["unsigned"]["transaction_id"] == "a1"
    assert original["unsigned"]["m.relations"]["m.replace"]["unsigned"]["transaction_id"] == "a2"
