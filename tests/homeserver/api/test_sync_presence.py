"""Presence in /sync (the spec's Presence module): what a user's incremental syncs
carry of the presence of those sharing a room with them, read by a real client
(matrix-nio) as well as over raw HTTP."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import nio

from homeserver.sync.tokens import SyncToken
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, invite, join, room_with_bob, uid, user
from tests.homeserver.federation.test_sender import until


def _presence(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """sender -> content of the response's m.presence events (at most one each)."""
    events = body.get("presence", {}).get("events", [])
    assert all(e["type"] == "m.presence" for e in events)
    by_sender = {e["sender"]: e["content"] for e in events}
    assert len(by_sender) == len(events), events
    return by_sender


async def _set(api: Api, token: str, name: str, presence: str, status_msg: str | None = None) -> None:
    body = {"presence": presence, **({"status_msg": status_msg} if status_msg is not None else {})}
    assert await api.put(f"presence/{uid(name)}/status", body, token=token) == {}


async def _sync(api: Api, token: str, since: str | None = None, **query: str) -> dict[str, Any]:
    # set_presence=offline: the syncing user's own sync is no presence change of theirs.
    params = {"set_presence": "offline", **({"since": since} if since else {}), **query}
    return await api.get("sync?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items()), token=token)


async def test_room_mates_changes_in_incremental_sync(api: Api) -> None:
    alice, bob, _ = await room_with_bob(api)
    carol = await user(api, "carol")
    await create(api, carol)
    await api.hs.presence.drain()
    tokens = {name: (await _sync(api, tok))["next_batch"] for name, tok in (("alice", alice), ("bob", bob), ("carol", carol))}

    await _set(api, alice, "alice", "unavailable", "lunch")
    got = await _sync(api, bob, tokens["bob"])
    assert got["presence"]["events"] == [{
        "type": "m.presence", "sender": uid("alice"),
        "content": {"presence": "unavailable", "status_msg": "lunch",
                    "last_active_ago": got["presence"]["events"][0]["content"]["last_active_ago"]},
    }]
    # The user's own change too (as Synapse sends it); nothing for one sharing no room.
    assert _presence(await _sync(api, alice, tokens["alice"]))[uid("alice")]["status_msg"] == "lunch"
    assert "presence" not in await _sync(api, carol, tokens["carol"])
    # Once sent, it is not sent again.
    assert "presence" not in await _sync(api, bob, got["next_batch"])

    # A long-polling sync is woken by the change and carries it.
    polling = asyncio.ensure_future(_sync(api, bob, got["next_batch"], timeout="60000"))
    await until(lambda: api.hs.notifier.waiting_users() == 1)  # bob's request waits
    assert not polling.done()
    await _set(api, alice, "alice", "online")
    woken = await asyncio.wait_for(polling, 30)
    assert _presence(woken) == {uid("alice"): {"presence": "online", "currently_active": True,
                                               "last_active_ago": _presence(woken)[uid("alice")]["last_active_ago"]}}


async def test_presence_filter(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    carol = await user(api, "carol")
    await invite(api, room, alice, "carol")
    await join(api, room, carol)
    await api.hs.presence.drain()
    since = (await _sync(api, bob))["next_batch"]
    await _set(api, alice, "alice", "online", "a")
    await _set(api, carol, "carol", "unavailable", "c")
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({}, {uid("alice"), uid("carol")}),
        ({"presence": {"senders": [uid("carol")]}}, {uid("carol")}),
        ({"presence": {"not_senders": [uid("carol")]}}, {uid("alice")}),
        ({"presence": {"types": ["m.presence"]}}, {uid("alice"), uid("carol")}),
        ({"presence": {"types": []}}, set()),
        ({"presence": {"not_types": ["m.*"]}}, set()),
    ]
    for sync_filter, expected in cases:
        got = await _sync(api, bob, since, filter=json.dumps(sync_filter))
        assert set(_presence(got)) == expected, sync_filter


async def test_newly_shared_room_sends_members_presence(api: Api) -> None:
    """Joining a room where someone is online sends their presence in the next
    incremental sync, though it did not change since the token (as Synapse does)."""
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await _set(api, alice, "alice", "online", "around")
    await api.hs.presence.drain()
    first = await _sync(api, bob)
    assert uid("alice") not in _presence(first)  # no room shared yet
    room = await create(api, alice)
    await invite(api, room, alice, "bob")
    invited = await _sync(api, bob, first["next_batch"])
    assert uid("alice") not in _presence(invited)  # an invite is no shared room
    await join(api, room, bob)
    joined = await _sync(api, bob, invited["next_batch"])
    assert room in joined["rooms"]["join"]
    assert _presence(joined)[uid("alice")]["status_msg"] == "around"
    assert "presence" not in await _sync(api, bob, joined["next_batch"])
    # full_state answers like an initial sync: everyone online sharing a room.
    assert uid("alice") in _presence(await _sync(api, bob, joined["next_batch"], full_state="true"))


async def test_token_ahead_of_the_stream_is_answered_afresh(api: Api) -> None:
    """A presence position the stream has not reached comes from before a restart
    (remote users' changes take positions that are not stored): it is answered like
    an initial sync, not with silence until the stream passes it."""
    alice, bob, _ = await room_with_bob(api)
    await _set(api, alice, "alice", "online", "here")
    await api.hs.presence.drain()
    now = SyncToken.parse((await _sync(api, bob))["next_batch"])
    ahead = str(now.advance(presence=now.presence + 5))
    got = await _sync(api, bob, ahead)
    assert _presence(got)[uid("alice")]["status_msg"] == "here"
    assert SyncToken.parse(got["next_batch"]).presence == now.presence
    assert "presence" not in await _sync(api, bob, got["next_batch"])


async def test_nio_client_receives_presence(api: Api) -> None:
    """matrix-nio's sync loop: a room-mate's presence when the room is joined, then
    their change in an incremental sync, as nio's PresenceEvent."""
    alice = await user(api, "alice")
    await _set(api, alice, "alice", "unavailable", "busy")
    bob = nio.AsyncClient(str(api.client.make_url("")).rstrip("/"), uid("bob"))
    try:
        assert isinstance(await bob.register("bob", "bob-password-1"), nio.RegisterResponse)
        first = await bob.sync(timeout=0, set_presence="offline")
        assert isinstance(first, nio.SyncResponse)
        room = await create(api, alice)
        await invite(api, room, alice, "bob")
        assert isinstance(await bob.join(room), nio.JoinResponse)

        async def next_presence() -> dict[str, nio.PresenceEvent]:
            resp = await bob.sync(timeout=10_000, since=bob.next_batch, set_presence="offline")
            assert isinstance(resp, nio.SyncResponse), resp
            return {e.user_id: e for e in resp.presence_events}

        seen = await next_presence()
        assert seen[uid("alice")].presence == "unavailable" and seen[uid("alice")].status_msg == "busy"
        await _set(api, alice, "alice", "online", "back")
        seen = await next_presence()
        assert seen[uid("alice")].presence == "online" and seen[uid("alice")].status_msg == "back"
        assert seen[uid("alice")].currently_active is True
    finally:
        await bob.close()
