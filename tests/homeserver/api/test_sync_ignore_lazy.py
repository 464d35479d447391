"""/sync and ignored users (their messages and invites are hidden, their state
events are not), and lazy-loaded members sent once per client unless the filter
asks for redundant members."""

from __future__ import annotations

from typing import Any

import orjson

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, invite, join, put_state, send, uid, user


async def _ignore(api: Api, token: str, who: str, *users: str) -> None:
    await api.put(f"user/{uid(who)}/account_data/m.ignored_user_list",
                  {"ignored_users": {uid(u): {} for u in users}}, token=token)


def _timeline_ids(body: dict[str, Any], room: str) -> list[str]:
    entry = body.get("rooms", {}).get("join", {}).get(room, {})
    return [e["event_id"] for e in entry.get("timeline", {}).get("events", [])]


def _members(body: dict[str, Any], room: str) -> set[str]:
    entry = body.get("rooms", {}).get("join", {}).get(room, {})
    return {e["state_key"] for e in entry.get("state", {}).get("events", []) if e["type"] == "m.room.member"}


async def test_ignored_users_messages_hidden_but_state_sent(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    room = await create(api, alice, preset="public_chat", power_level_content_override={"state_default": 0})
    await join(api, room, bob)
    await _ignore(api, alice, "alice", "bob")
    first = await api.get("sync", token=alice)
    b1 = await send(api, room, bob, "from bob")
    topic = await put_state(api, room, bob, "m.room.topic", {"topic": "bob's topic"})
    a1 = await send(api, room, alice, "from alice")
    later = await api.get(f"sync?since={first['next_batch']}", token=alice)
    assert _timeline_ids(later, room) == [topic, a1]
    assert b1 not in _timeline_ids(await api.get("sync", token=alice), room)
    # Ignoring oneself hides nothing.
    await _ignore(api, alice, "alice", "alice")
    assert {b1, topic, a1} <= set(_timeline_ids(await api.get("sync", token=alice), room))


async def test_invites_from_ignored_users_are_not_sent(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    await _ignore(api, alice, "alice", "bob")
    first = await api.get("sync", token=alice)
    from_bob = await create(api, bob)
    await invite(api, from_bob, bob, "alice")
    from_carol = await create(api, carol)
    await invite(api, from_carol, carol, "alice")
    for body in (await api.get(f"sync?since={first['next_batch']}", token=alice), await api.get("sync", token=alice)):
        invites = body.get("rooms", {}).get("invite", {})
        assert from_carol in invites
        assert from_bob not in invites
    # No longer ignored: a fresh sync shows the pending invite.
    await _ignore(api, alice, "alice")
    assert from_bob in (await api.get("sync", token=alice))["rooms"]["invite"]


async def test_lazy_members_are_sent_once_per_client(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    await join(api, room, carol)
    await send(api, room, bob, "bob 1")
    flt = orjson.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}).decode()
    first = await api.get(f"sync?filter={flt}", token=alice)
    assert _members(first, room) == {uid("alice"), uid("bob")}
    # bob again: his member event was sent already, so it is not sent again.
    await send(api, room, bob, "bob 2")
    second = await api.get(f"sync?filter={flt}&since={first['next_batch']}", token=alice)
    assert _members(second, room) == set()
    # carol speaks for the first time (not limited): her member comes along once.
    await send(api, room, carol, "carol 1")
    third = await api.get(f"sync?filter={flt}&since={second['next_batch']}", token=alice)
    assert _members(third, room) == {uid("carol")}
    # The same token again (the answer was lost): the member comes again.
    retried = await api.get(f"sync?filter={flt}&since={second['next_batch']}", token=alice)
    assert _members(retried, room) == {uid("carol")}
    await send(api, room, carol, "carol 2")
    await send(api, room, bob, "bob 3")  # limited: only bob 3 in the timeline
    fourth = await api.get(f"sync?filter={flt}&since={third['next_batch']}", token=alice)
    assert _members(fourth, room) == set()
    # A member who changes is sent again.
    await api.put(f"rooms/{room}/state/m.room.member/{uid('bob')}",
                  {"membership": "join", "displayname": "Bobby"}, token=bob)
    await send(api, room, carol, "x")
    await send(api, room, bob, "bob 4")
    fifth = await api.get(f"sync?filter={flt}&since={fourth['next_batch']}", token=alice)
    assert _members(fifth, room) == {uid("bob")}

    # include_redundant_members: every sync carries its timeline's senders' members.
    redundant = orjson.dumps({"room": {"state": {"lazy_load_members": True, "include_redundant_members": True},
                                       "timeline": {"limit": 1}}}).decode()
    r1 = await api.get(f"sync?filter={redundant}", token=alice)
    await send(api, room, bob, "bob 5")
    r2 = await api.get(f"sync?filter={redundant}&since={r1['next_batch']}", token=alice)
    assert _members(r2, room) == {uid("alice"), uid("bob")}


async def test_ignored_users_messages_do_not_count_as_unread(api: Api) -> None:
    alice, bob, carol = await user(api, "alice"), await user(api, "bob"), await user(api, "carol")
    room = await create(api, alice, preset="public_chat")
    await join(api, room, bob)
    await join(api, room, carol)
    await _ignore(api, alice, "alice", "bob")
    first = await api.get("sync", token=alice)
    await send(api, room, bob, "ignored 1")
    await send(api, room, bob, "ignored 2")
    await send(api, room, carol, "seen")
    later = await api.get(f"sync?since={first['next_batch']}", token=alice)
    assert later["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 1
