"""Room membership through the client API: join, invite, leave, forget, kick, ban,
unban, knock, restricted rooms, guests, createRoom invites and profile propagation.

Every flow runs over HTTP against a real server; results are read back the way a
client would, through GET /rooms/{roomId}/state/m.room.member/{userId}.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api

VERSIONS = ["10", "11", "12"]
ALICE, BOB, CAROL, DAVE = (f"@{n}:test.local" for n in ("alice", "bob", "carol", "dave"))


# --- helpers ---------------------------------------------------------------------------------


async def users(api: Api, *names: str) -> list[str]:
    return [(await api.register(n))["access_token"] for n in names]


async def create(api: Api, token: str, **body: Any) -> str:
    return (await api.post("createRoom", body, token=token))["room_id"]


def with_join_rule(rule: str, allow: list[str] | None = None) -> list[dict[str, Any]]:
    content: dict[str, Any] = {"join_rule": rule}
    if allow is not None:
        content["allow"] = [{"type": "m.room_membership", "room_id": r} for r in allow]
    return [{"type": "m.room.join_rules", "content": content}]


async def member(api: Api, room: str, user: str, token: str) -> dict[str, Any]:
    """The user's m.room.member event (full event format) as `token`'s user sees it."""
    return await api.get(f"rooms/{room}/state/m.room.member/{user}?format=event", token=token)


async def membership(api: Api, room: str, user: str, token: str) -> str | None:
    status, body = await api.request(
        "GET", f"rooms/{room}/state/m.room.member/{user}", token=token, expect=None
    )
    if status == 404:
        return None
    assert status == 200, body
    return body["membership"]


async def error(api: Api, method: str, path: str, body: Any = None, *, token: str | None,
                status: int, errcode: str, data: bytes | None = None) -> str:
    _, err = await api.request(method, path, body, token=token, data=data, expect=status)
    assert err["errcode"] == errcode, err
    return err["error"]


async def member_events(api: Api, room: str, token: str) -> list[dict[str, Any]]:
    msgs = await api.get(f"rooms/{room}/messages?dir=f&limit=200", token=token)
    return [e for e in msgs["chunk"] if e["type"] == "m.room.member"]


async def set_levels(api: Api, room: str, token: str, **changes: Any) -> None:
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=token)
    users_ = changes.pop("users", {})
    levels.update(changes)
    levels.setdefault("users", {}).update(users_)
    await api.put(f"rooms/{room}/state/m.room.power_levels", levels, token=token)


async def sync_rooms(api: Api, token: str, section: str) -> dict[str, Any]:
    """One section (join, invite, knock, leave) of a full /sync, left rooms included."""
    query = quote('{"room": {"include_leave": true}}', safe="")
    body = await api.get(f"sync?filter={query}", token=token)
    return body.get("rooms", {}).get(section, {})


async def invites(api: Api, user: str, token: str) -> dict[str, dict[str, Any]]:
    """The user's pending invites as a client sees them (/sync's stripped state):
    room ID -> the content of the invite event."""
    out = {}
    for room_id, entry in (await sync_rooms(api, token, "invite")).items():
        mine = [e for e in entry["invite_state"]["events"] if (e["type"], e["state_key"]) == ("m.room.member", user)]
        out[room_id] = mine[0]["content"]
    return out


def alias_path(alias: str) -> str:
    return quote(alias, safe="")


# --- joining ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_join_public_room(api: Api, version: str) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat", room_version=version)
    assert await api.post(f"rooms/{room}/join", {"reason": "hello"}, token=bob) == {"room_id": room}
    event = await member(api, room, BOB, alice)
    assert event["sender"] == BOB
    assert event["content"] == {"membership": "join", "displayname": "bob", "reason": "hello"}
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": [room]}
    # Joined: bob may now send.
    await api.put(f"rooms/{room}/send/m.room.message/1", {"body": "hi", "msgtype": "m.text"}, token=bob)


async def test_join_by_alias_and_room_id(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, preset="public_chat", room_alias_name="lobby")
    # via and server_name are accepted (and only matter for rooms on other servers).
    got = await api.post(f"join/{alias_path('#lobby:test.local')}?via=elsewhere.example&server_name=x.example",
                         {}, token=bob)
    assert got == {"room_id": room}
    assert await api.post(f"join/{room}", {"reason": "by id"}, token=carol) == {"room_id": room}
    assert (await member(api, room, CAROL, alice))["content"]["reason"] == "by id"
    assert await membership(api, room, BOB, alice) == "join"


async def test_join_twice_is_a_no_op(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    first = await member(api, room, BOB, alice)
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"join/{room}", {}, token=bob)
    assert (await member(api, room, BOB, alice))["event_id"] == first["event_id"]
    # A different reason is a different request: it is recorded.
    await api.post(f"rooms/{room}/join", {"reason": "again"}, token=bob)
    assert (await member(api, room, BOB, alice))["event_id"] != first["event_id"]


async def test_join_unknown_rooms(api: Api) -> None:
    (bob,) = await users(api, "bob")
    for path in ("join/!nope:test.local", "rooms/!nope:test.local/join", f"join/{alias_path('#nope:test.local')}",
                 "join/!abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"):
        await error(api, "POST", path, {}, token=bob, status=404, errcode="M_NOT_FOUND")
    # Rooms on other servers need federation: 404, and the message says why.
    for path in ("join/!elsewhere:remote.example", f"join/{alias_path('#room:remote.example')}",
                 "rooms/!elsewhere:remote.example/join"):
        message = await error(api, "POST", path, {}, token=bob, status=404, errcode="M_NOT_FOUND")
        assert "federation" in message
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": []}


async def test_join_bad_requests(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat", room_alias_name="pub")
    for path in ("join/lobby", f"join/{alias_path('#nocolon')}", f"rooms/{alias_path('#pub:test.local')}/join"):
        await error(api, "POST", path, {}, token=bob, status=400, errcode="M_INVALID_PARAM")
    for path in (f"join/{room}", f"rooms/{room}/join"):
        await error(api, "POST", path, {"reason": 5}, token=bob, status=400, errcode="M_BAD_JSON")
        await error(api, "POST", path, data=b"[]", token=bob, status=400, errcode="M_BAD_JSON")
        await error(api, "POST", path, data=b"{", token=bob, status=400, errcode="M_NOT_JSON")
        await error(api, "POST", path, {}, token=None, status=401, errcode="M_MISSING_TOKEN")
        await error(api, "POST", path, {"third_party_signed": {"token": "t"}}, token=bob,
                    status=400, errcode="M_UNRECOGNIZED")
    assert await membership(api, room, BOB, alice) is None
    # No body at all is accepted (many clients send none).
    await api.request("POST", f"rooms/{room}/join", token=bob)
    assert await membership(api, room, BOB, alice) == "join"


async def test_concurrent_joins(api: Api) -> None:
    (alice,) = await users(api, "alice")
    room = await create(api, alice, preset="public_chat")
    tokens = await users(api, *(f"u{i}" for i in range(8)))
    await asyncio.gather(*(api.post(f"rooms/{room}/join", {}, token=t) for t in tokens))
    state = await api.get(f"rooms/{room}/state", token=alice)
    joined = {e["state_key"] for e in state if e["type"] == "m.room.member" and e["content"]["membership"] == "join"}
    assert joined == {ALICE, *(f"@u{i}:test.local" for i in range(8))}


# --- inviting --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_invite_only_room(api: Api, version: str) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, room_version=version)  # private_chat: join rule invite
    message = await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "invited" in message
    assert await api.post(f"rooms/{room}/invite", {"user_id": BOB, "reason": "welcome"}, token=alice) == {}
    invite = await member(api, room, BOB, alice)
    assert invite["sender"] == ALICE
    assert invite["content"] == {"membership": "invite", "displayname": "bob", "reason": "welcome"}
    # Invited is not joined: the room is not bob's to read yet, and not in his joined rooms.
    await error(api, "GET", f"rooms/{room}/state", token=bob, status=403, errcode="M_FORBIDDEN")
    assert list(await invites(api, BOB, bob)) == [room]
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": []}
    assert await api.post(f"rooms/{room}/join", {}, token=bob) == {"room_id": room}
    assert await membership(api, room, BOB, alice) == "join"
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": [room]}


async def test_invite_twice_is_ok_and_sends_nothing(api: Api) -> None:
    alice, _ = await users(api, "alice", "bob")
    room = await create(api, alice)
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    first = await member(api, room, BOB, alice)
    assert await api.post(f"rooms/{room}/invite", {"user_id": BOB, "reason": "again"}, token=alice) == {}
    assert (await member(api, room, BOB, alice))["event_id"] == first["event_id"]


async def test_invite_errors(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, preset="public_chat")  # invite needs power 50 here
    path = f"rooms/{room}/invite"
    await error(api, "POST", path, {}, token=alice, status=400, errcode="M_MISSING_PARAM")
    await error(api, "POST", path, {"user_id": 5}, token=alice, status=400, errcode="M_BAD_JSON")
    await error(api, "POST", path, {"user_id": BOB, "reason": ["x"]}, token=alice, status=400, errcode="M_BAD_JSON")
    for bad in ("bob", "@bob", "@:test.local", "#bob:test.local", "@bob:bad host"):
        await error(api, "POST", path, {"user_id": bad}, token=alice, status=400, errcode="M_INVALID_PARAM")
    await error(api, "POST", path, {"medium": "email", "address": "bob@example.org", "id_server": "is.example"},
                token=alice, status=400, errcode="M_UNRECOGNIZED")
    await error(api, "POST", "rooms/!nope:test.local/invite", {"user_id": BOB}, token=alice,
                status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", path, {"user_id": "@nobody:test.local"}, token=alice, status=404, errcode="M_NOT_FOUND")
    message = await error(api, "POST", path, {"user_id": "@bob:remote.example"}, token=alice,
                          status=403, errcode="M_FORBIDDEN")
    assert "federation" in message
    # Only members invite: bob is not in the room yet.
    message = await error(api, "POST", path, {"user_id": CAROL}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "not joined" in message
    await api.post(f"rooms/{room}/join", {}, token=bob)
    # A member below the invite level may not.
    message = await error(api, "POST", path, {"user_id": CAROL}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "power level" in message.lower()
    # Nor may anyone invite the joined or the banned.
    message = await error(api, "POST", path, {"user_id": BOB}, token=alice, status=403, errcode="M_FORBIDDEN")
    assert "already" in message
    await api.post(f"rooms/{room}/ban", {"user_id": CAROL}, token=alice)
    message = await error(api, "POST", path, {"user_id": CAROL}, token=alice, status=403, errcode="M_FORBIDDEN")
    assert "banned" in message
    assert await membership(api, room, CAROL, alice) == "ban"
    await error(api, "POST", path, {"user_id": BOB}, token=None, status=401, errcode="M_MISSING_TOKEN")


async def test_invite_of_deactivated_user(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice)
    await api.hs.accounts.deactivate(BOB)
    await error(api, "POST", f"rooms/{room}/invite", {"user_id": BOB}, token=alice, status=403, errcode="M_FORBIDDEN")


async def test_invite_blocked_by_invitee(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice)
    config = f"user/{BOB}/account_data/m.invite_permission_config"
    await api.put(config, {"default_action": "block"}, token=bob)
    await error(api, "POST", f"rooms/{room}/invite", {"user_id": BOB}, token=alice,
                status=403, errcode="M_INVITE_BLOCKED")
    await error(api, "POST", "createRoom", {"invite": [BOB]}, token=alice, status=403, errcode="M_INVITE_BLOCKED")
    assert await membership(api, room, BOB, alice) is None
    assert await api.get("joined_rooms", token=alice) == {"joined_rooms": [room]}
    # Without default_action (or with a value the server does not know) invites flow again.
    await api.put(config, {"default_action": "shrug"}, token=bob)
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    assert await membership(api, room, BOB, alice) == "invite"


async def test_reject_invite(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice)
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    await api.post(f"rooms/{room}/leave", {"reason": "no thanks"}, token=bob)
    event = await member(api, room, BOB, alice)
    assert (event["sender"], event["content"]) == (BOB, {"membership": "leave", "reason": "no thanks"})
    # The invite is spent: an invite-only room needs a new one.
    await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")


async def test_revoke_invite_by_kick(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice)
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    await api.post(f"rooms/{room}/kick", {"user_id": BOB, "reason": "sent in error"}, token=alice)
    assert await membership(api, room, BOB, alice) == "leave"
    await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")


# --- leaving and forgetting ------------------------------------------------------------------


async def test_leave(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.put(f"rooms/{room}/send/m.room.message/1", {"body": "bye", "msgtype": "m.text"}, token=bob)
    assert await api.post(f"rooms/{room}/leave", {"reason": "off"}, token=bob) == {}
    left = await member(api, room, BOB, alice)
    assert (left["sender"], left["content"]) == (BOB, {"membership": "leave", "reason": "off"})
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": []}
    await error(api, "PUT", f"rooms/{room}/send/m.room.message/2", {"body": "x"}, token=bob,
                status=403, errcode="M_FORBIDDEN")
    # Leaving again changes nothing and is not an error; no body is fine too.
    await api.request("POST", f"rooms/{room}/leave", token=bob)
    assert (await member(api, room, BOB, alice))["event_id"] == left["event_id"]
    # History bob was allowed to see stays readable until he forgets the room.
    assert await membership(api, room, BOB, bob) == "leave"


async def test_leave_errors(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    message = await error(api, "POST", f"rooms/{room}/leave", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "not a member" in message
    assert await membership(api, room, BOB, alice) is None
    await error(api, "POST", "rooms/!nope:test.local/leave", {}, token=bob, status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", f"rooms/{room}/leave", {"reason": 1}, token=bob, status=400, errcode="M_BAD_JSON")
    await error(api, "POST", f"rooms/{room}/leave", {}, token=None, status=401, errcode="M_MISSING_TOKEN")
    await api.post(f"rooms/{room}/ban", {"user_id": BOB}, token=alice)
    message = await error(api, "POST", f"rooms/{room}/leave", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "banned" in message
    assert await membership(api, room, BOB, alice) == "ban"


async def test_forget(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    sent = await api.put(f"rooms/{room}/send/m.room.message/1", {"body": "mine", "msgtype": "m.text"}, token=bob)
    await error(api, "POST", f"rooms/{room}/forget", {}, token=bob, status=400, errcode="M_UNKNOWN")
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    # Left but remembered: the history bob saw is still his to read.
    assert await api.get(f"rooms/{room}/event/{sent['event_id']}", token=bob)
    assert await api.get(f"rooms/{room}/state", token=bob)
    assert (await api.get(f"rooms/{room}/messages?dir=b", token=bob))["chunk"]
    assert room in await sync_rooms(api, bob, "leave")
    assert await api.post(f"rooms/{room}/forget", {}, token=bob) == {}
    assert room not in await sync_rooms(api, bob, "leave")
    # Forgotten: the room is gone from bob's view.
    await error(api, "GET", f"rooms/{room}/state", token=bob, status=403, errcode="M_FORBIDDEN")
    await error(api, "GET", f"rooms/{room}/state/m.room.member/{BOB}", token=bob, status=403, errcode="M_FORBIDDEN")
    await error(api, "GET", f"rooms/{room}/messages?dir=b", token=bob, status=403, errcode="M_FORBIDDEN")
    await error(api, "GET", f"rooms/{room}/event/{sent['event_id']}", token=bob, status=404, errcode="M_NOT_FOUND")
    # Forgetting twice is harmless.
    await api.request("POST", f"rooms/{room}/forget", token=bob)
    # Being banned afterwards does not bring the room back...
    await api.post(f"rooms/{room}/ban", {"user_id": BOB}, token=alice)
    await error(api, "GET", f"rooms/{room}/state", token=bob, status=403, errcode="M_FORBIDDEN")
    assert room not in await sync_rooms(api, bob, "leave")
    # ...but being let in again does.
    await api.post(f"rooms/{room}/unban", {"user_id": BOB}, token=alice)
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await api.get(f"rooms/{room}/event/{sent['event_id']}", token=bob)
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": [room]}


async def test_forget_errors(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    await error(api, "POST", "rooms/!nope:test.local/forget", {}, token=bob, status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", f"rooms/{room}/forget", {}, token=bob, status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", f"rooms/{room}/forget", {}, token=alice, status=400, errcode="M_UNKNOWN")
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    await error(api, "POST", f"rooms/{room}/forget", {}, token=bob, status=400, errcode="M_UNKNOWN")
    assert list(await invites(api, BOB, bob)) == [room]
    await error(api, "POST", f"rooms/{room}/forget", data=b"[1]", token=bob, status=400, errcode="M_BAD_JSON")
    await error(api, "POST", f"rooms/{room}/forget", {}, token=None, status=401, errcode="M_MISSING_TOKEN")


# --- kicking, banning, unbanning -------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_kick(api: Api, version: str) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, preset="public_chat", room_version=version)
    for token in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=token)
    # Kicking takes the kick power level (50 by default); bob has 0.
    message = await error(api, "POST", f"rooms/{room}/kick", {"user_id": CAROL}, token=bob,
                          status=403, errcode="M_FORBIDDEN")
    assert "power level" in message.lower()
    assert await membership(api, room, CAROL, alice) == "join"
    assert await api.post(f"rooms/{room}/kick", {"user_id": BOB, "reason": "spam"}, token=alice) == {}
    kicked = await member(api, room, BOB, alice)
    assert (kicked["sender"], kicked["content"]) == (ALICE, {"membership": "leave", "reason": "spam"})
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": []}
    # A kick is not a ban: a public room can be joined again.
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await membership(api, room, BOB, alice) == "join"


async def test_kick_power_rules(api: Api) -> None:
    alice, bob, carol, dave = await users(api, "alice", "bob", "carol", "dave")
    room = await create(api, alice, preset="public_chat", room_version="11")
    for token in (bob, carol, dave):
        await api.post(f"rooms/{room}/join", {}, token=token)
    await set_levels(api, room, alice, kick=60, users={BOB: 60, CAROL: 60, DAVE: 50})
    # Enough to kick, but not someone at or above your own level.
    for target in (ALICE, CAROL):
        message = await error(api, "POST", f"rooms/{room}/kick", {"user_id": target}, token=bob,
                              status=403, errcode="M_FORBIDDEN")
        assert "power level" in message.lower()
    # Below the kick level one may not kick even those below oneself.
    await set_levels(api, room, alice, users={"@u:test.local": 0})
    await error(api, "POST", f"rooms/{room}/kick", {"user_id": "@u:test.local"}, token=dave,
                status=403, errcode="M_FORBIDDEN")
    await api.post(f"rooms/{room}/kick", {"user_id": DAVE}, token=bob)
    assert await membership(api, room, DAVE, alice) == "leave"
    assert await membership(api, room, CAROL, alice) == "join"
    assert await membership(api, room, ALICE, alice) == "join"


async def test_kick_errors(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, preset="public_chat")
    path = f"rooms/{room}/kick"
    await error(api, "POST", path, {}, token=alice, status=400, errcode="M_MISSING_PARAM")
    await error(api, "POST", path, {"user_id": True}, token=alice, status=400, errcode="M_BAD_JSON")
    await error(api, "POST", path, {"user_id": "carol"}, token=alice, status=400, errcode="M_INVALID_PARAM")
    await error(api, "POST", "rooms/!nope:test.local/kick", {"user_id": BOB}, token=alice,
                status=404, errcode="M_NOT_FOUND")
    message = await error(api, "POST", path, {"user_id": BOB}, token=alice, status=403, errcode="M_FORBIDDEN")
    assert "not in the room" in message
    # Non-members are refused before anything about the target is checked, so
    # they learn nothing about who is in the room.
    await api.post(f"rooms/{room}/join", {}, token=bob)
    for target in (BOB, DAVE):
        message = await error(api, "POST", path, {"user_id": target}, token=carol, status=403, errcode="M_FORBIDDEN")
        assert "not joined" in message
    for action in ("ban", "unban", "invite"):
        message = await error(api, "POST", f"rooms/{room}/{action}", {"user_id": BOB}, token=carol,
                              status=403, errcode="M_FORBIDDEN")
        assert "not joined" in message, action
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    await error(api, "POST", path, {"user_id": BOB}, token=alice, status=403, errcode="M_FORBIDDEN")
    assert await membership(api, room, BOB, alice) == "leave"


@pytest.mark.parametrize("version", VERSIONS)
async def test_ban_and_unban(api: Api, version: str) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat", room_version=version)
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await api.post(f"rooms/{room}/ban", {"user_id": BOB, "reason": "abuse"}, token=alice) == {}
    banned = await member(api, room, BOB, alice)
    assert (banned["sender"], banned["content"]) == (ALICE, {"membership": "ban", "reason": "abuse"})
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": []}
    message = await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "banned" in message
    await error(api, "POST", f"join/{room}", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    # Banning again with the same reason sends nothing new.
    await api.post(f"rooms/{room}/ban", {"user_id": BOB, "reason": "abuse"}, token=alice)
    assert (await member(api, room, BOB, alice))["event_id"] == banned["event_id"]
    assert await api.post(f"rooms/{room}/unban", {"user_id": BOB, "reason": "appeal"}, token=alice) == {}
    unbanned = await member(api, room, BOB, alice)
    assert (unbanned["sender"], unbanned["content"]) == (ALICE, {"membership": "leave", "reason": "appeal"})
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await membership(api, room, BOB, alice) == "join"


async def test_ban_before_joining_and_remote_users(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/ban", {"user_id": BOB}, token=alice)
    await api.post(f"rooms/{room}/ban", {"user_id": "@troll:remote.example"}, token=alice)
    assert await membership(api, room, "@troll:remote.example", alice) == "ban"
    await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")


async def test_ban_and_unban_errors(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, preset="public_chat")
    for token in (bob, carol):
        await api.post(f"rooms/{room}/join", {}, token=token)
    for action in ("ban", "unban"):
        path = f"rooms/{room}/{action}"
        await error(api, "POST", path, {}, token=alice, status=400, errcode="M_MISSING_PARAM")
        await error(api, "POST", path, {"user_id": 1}, token=alice, status=400, errcode="M_BAD_JSON")
        await error(api, "POST", path, {"user_id": CAROL, "reason": 1}, token=alice, status=400, errcode="M_BAD_JSON")
        await error(api, "POST", path, {"user_id": "@"}, token=alice, status=400, errcode="M_INVALID_PARAM")
        await error(api, "POST", f"rooms/!nope:test.local/{action}", {"user_id": CAROL}, token=alice,
                    status=404, errcode="M_NOT_FOUND")
        await error(api, "POST", path, {"user_id": CAROL}, token=None, status=401, errcode="M_MISSING_TOKEN")
    # Without ban power, or against a higher level, banning is refused.
    message = await error(api, "POST", f"rooms/{room}/ban", {"user_id": CAROL}, token=bob,
                          status=403, errcode="M_FORBIDDEN")
    assert "power level" in message.lower()
    await set_levels(api, room, alice, users={BOB: 50})
    await error(api, "POST", f"rooms/{room}/ban", {"user_id": ALICE}, token=bob, status=403, errcode="M_FORBIDDEN")
    # Unbanning someone who is not banned would kick them: refused with M_BAD_STATE.
    message = await error(api, "POST", f"rooms/{room}/unban", {"user_id": CAROL}, token=alice,
                          status=403, errcode="M_BAD_STATE")
    assert "not banned" in message
    assert await membership(api, room, CAROL, alice) == "join"
    # Unbanning needs the ban level too.
    await api.post(f"rooms/{room}/ban", {"user_id": CAROL}, token=alice)
    await set_levels(api, room, alice, users={BOB: 0})
    message = await error(api, "POST", f"rooms/{room}/unban", {"user_id": CAROL}, token=bob,
                          status=403, errcode="M_FORBIDDEN")
    assert "power level" in message.lower()
    assert await membership(api, room, CAROL, alice) == "ban"


# --- knocking --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_knock_then_accept(api: Api, version: str) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, room_version=version, room_alias_name="knockme",
                        initial_state=with_join_rule("knock"))
    await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    got = await api.post(f"knock/{alias_path('#knockme:test.local')}?via=test.local", {"reason": "let me in"}, token=bob)
    assert got == {"room_id": room}
    knock = await member(api, room, BOB, alice)
    assert (knock["sender"], knock["content"]) == (
        BOB, {"membership": "knock", "displayname": "bob", "reason": "let me in"}
    )
    # Accepting a knock is an invite.
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    assert await membership(api, room, BOB, alice) == "invite"
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await membership(api, room, BOB, alice) == "join"


async def test_knock_rejected_or_retracted(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, initial_state=with_join_rule("knock"))
    await api.post(f"knock/{room}", {}, token=bob)
    await api.post(f"knock/{room}", {}, token=carol)
    await api.post(f"rooms/{room}/kick", {"user_id": BOB, "reason": "no"}, token=alice)  # rejection
    assert await membership(api, room, BOB, alice) == "leave"
    await api.post(f"rooms/{room}/leave", {}, token=carol)  # retraction
    retracted = await member(api, room, CAROL, alice)
    assert (retracted["sender"], retracted["content"]["membership"]) == (CAROL, "leave")
    # Knocking again after a rejection is allowed; a ban ends that.
    await api.post(f"knock/{room}", {}, token=bob)
    await api.post(f"rooms/{room}/ban", {"user_id": BOB}, token=alice)
    message = await error(api, "POST", f"knock/{room}", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "banned" in message


async def test_knock_errors(make_api: Any) -> None:
    api = await make_api(registration={"allow_guests": True})
    alice, bob = await users(api, "alice", "bob")
    invite_room = await create(api, alice)
    public_room = await create(api, alice, preset="public_chat")
    knock_room = await create(api, alice, initial_state=with_join_rule("knock"))
    for room in (invite_room, public_room):
        message = await error(api, "POST", f"knock/{room}", {}, token=bob, status=403, errcode="M_FORBIDDEN")
        assert "knock" in message
    await error(api, "POST", "knock/!nope:test.local", {}, token=bob, status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", f"knock/{alias_path('#nope:test.local')}", {}, token=bob,
                status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", "knock/nope", {}, token=bob, status=400, errcode="M_INVALID_PARAM")
    await error(api, "POST", f"knock/{knock_room}", {"reason": 3}, token=bob, status=400, errcode="M_BAD_JSON")
    await error(api, "POST", f"knock/{knock_room}", {}, token=None, status=401, errcode="M_MISSING_TOKEN")
    # Members and invitees have nothing to knock for.
    message = await error(api, "POST", f"knock/{knock_room}", {}, token=alice, status=403, errcode="M_FORBIDDEN")
    assert "already in" in message
    await api.post(f"rooms/{knock_room}/invite", {"user_id": BOB}, token=alice)
    message = await error(api, "POST", f"knock/{knock_room}", {}, token=bob, status=403, errcode="M_FORBIDDEN")
    assert "invited" in message
    assert await membership(api, knock_room, BOB, alice) == "invite"
    guest = (await api.post("register?kind=guest", {}))["access_token"]
    await error(api, "POST", f"knock/{knock_room}", {}, token=guest, status=403, errcode="M_GUEST_ACCESS_FORBIDDEN")


# --- restricted rooms ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
async def test_restricted_join(api: Api, version: str, rule: str) -> None:
    alice, bob, carol, dave = await users(api, "alice", "bob", "carol", "dave")
    space = await create(api, alice, room_version=version)
    await api.post(f"rooms/{space}/invite", {"user_id": BOB}, token=alice)
    await api.post(f"rooms/{space}/join", {}, token=bob)
    await api.post(f"rooms/{space}/invite", {"user_id": CAROL}, token=alice)  # invited is not joined
    room = await create(api, alice, room_version=version, initial_state=with_join_rule(rule, [space]),
                        power_level_content_override={"invite": 50})
    # Joined to the allowed room: in, authorised by a local user who may invite.
    assert await api.post(f"rooms/{room}/join", {}, token=bob) == {"room_id": room}
    joined = await member(api, room, BOB, alice)
    assert joined["content"]["membership"] == "join"
    assert joined["content"]["join_authorised_via_users_server"] == ALICE
    # Not joined to it (only invited): refused, with the reason.
    message = await error(api, "POST", f"rooms/{room}/join", {}, token=carol, status=403, errcode="M_FORBIDDEN")
    assert "allows" in message
    assert await membership(api, room, CAROL, alice) is None
    # An invite still works, and needs no authoriser.
    await api.post(f"rooms/{room}/invite", {"user_id": DAVE}, token=alice)
    await api.post(f"rooms/{room}/join", {}, token=dave)
    assert "join_authorised_via_users_server" not in (await member(api, room, DAVE, alice))["content"]
    if rule == "knock_restricted":
        await api.post(f"knock/{room}", {}, token=carol)
        assert await membership(api, room, CAROL, alice) == "knock"
    else:
        message = await error(api, "POST", f"knock/{room}", {}, token=carol, status=403, errcode="M_FORBIDDEN")
        assert "knock" in message


async def test_restricted_join_needs_a_local_authoriser(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    space = await create(api, alice, preset="public_chat")
    for token in (bob, carol):
        await api.post(f"rooms/{space}/join", {}, token=token)
    room = await create(api, alice, room_version="11", initial_state=with_join_rule("restricted", [space]),
                        power_level_content_override={"invite": 50})
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/leave", {}, token=alice)
    # Only bob (power 0, below the invite level) is left: nobody can vouch for carol.
    message = await error(api, "POST", f"rooms/{room}/join", {}, token=carol, status=403, errcode="M_FORBIDDEN")
    assert "authorise" in message
    assert await membership(api, room, CAROL, bob) is None


async def test_restricted_room_allowing_unknown_rooms(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, initial_state=with_join_rule("restricted", ["!elsewhere:remote.example"]))
    await error(api, "POST", f"rooms/{room}/join", {}, token=bob, status=403, errcode="M_FORBIDDEN")


# --- createRoom invites ----------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_create_room_invite_is_direct(api: Api, version: str) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, room_version=version, invite=[BOB, CAROL, ALICE], is_direct=True)
    for user, name in ((BOB, "bob"), (CAROL, "carol")):
        invite = await member(api, room, user, alice)
        assert invite["sender"] == ALICE
        assert invite["content"] == {"membership": "invite", "displayname": name, "is_direct": True}
    # The invitee sees the invite, flagged direct, and can accept it.
    assert await invites(api, BOB, bob) == {room: {"membership": "invite", "displayname": "bob", "is_direct": True}}
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert await membership(api, room, BOB, alice) == "join"
    # Without is_direct the flag is absent.
    other = await create(api, alice, room_version=version, invite=[BOB])
    assert "is_direct" not in (await member(api, other, BOB, alice))["content"]
    assert await api.get("joined_rooms", token=carol) == {"joined_rooms": []}


async def test_create_room_refuses_undeliverable_invites(api: Api) -> None:
    (alice,) = await users(api, "alice")
    await error(api, "POST", "createRoom", {"invite": ["@nobody:test.local"]}, token=alice,
                status=404, errcode="M_NOT_FOUND")
    await error(api, "POST", "createRoom", {"invite": ["@bob:remote.example"]}, token=alice,
                status=403, errcode="M_FORBIDDEN")
    # Refused before the room was made.
    assert await api.get("joined_rooms", token=alice) == {"joined_rooms": []}


async def test_trusted_private_chat_v12_makes_invitees_creators(api: Api) -> None:
    alice, bob, carol = await users(api, "alice", "bob", "carol")
    room = await create(api, alice, preset="trusted_private_chat", room_version="12", invite=[BOB])
    create_event = await api.get(f"rooms/{room}/state/m.room.create", token=alice)
    assert create_event["additional_creators"] == [BOB]
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=alice)
    assert BOB not in levels["users"] and ALICE not in levels["users"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    # As a creator bob outranks everyone: he may change power levels and kick.
    await api.post(f"rooms/{room}/invite", {"user_id": CAROL}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=carol)
    await set_levels(api, room, bob, users={CAROL: 100})
    await api.post(f"rooms/{room}/kick", {"user_id": CAROL}, token=bob)
    # Carol at 100 still cannot ban a creator.
    await api.post(f"rooms/{room}/invite", {"user_id": CAROL}, token=bob)
    await api.post(f"rooms/{room}/join", {}, token=carol)
    await error(api, "POST", f"rooms/{room}/ban", {"user_id": BOB}, token=carol, status=403, errcode="M_FORBIDDEN")


@pytest.mark.parametrize("version", ["10", "11"])
async def test_trusted_private_chat_gives_invitees_power_100(api: Api, version: str) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="trusted_private_chat", room_version=version, invite=[BOB])
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=alice)
    assert levels["users"] == {ALICE: 100, BOB: 100}
    create_event = await api.get(f"rooms/{room}/state/m.room.create", token=alice)
    assert "additional_creators" not in create_event
    await api.post(f"rooms/{room}/join", {}, token=bob)
    # Equals cannot kick each other.
    await error(api, "POST", f"rooms/{room}/kick", {"user_id": ALICE}, token=bob, status=403, errcode="M_FORBIDDEN")
    await api.put(f"rooms/{room}/state/m.room.name", {"name": "ours"}, token=bob)


async def test_private_chat_gives_invitees_no_power(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="private_chat", room_version="12", invite=[BOB])
    assert "additional_creators" not in await api.get(f"rooms/{room}/state/m.room.create", token=alice)
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await error(api, "PUT", f"rooms/{room}/state/m.room.name", {"name": "x"}, token=bob,
                status=403, errcode="M_FORBIDDEN")


# --- profile propagation ---------------------------------------------------------------------


async def test_profile_changes_reach_joined_rooms(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    rooms = [await create(api, alice, preset="public_chat", room_version=v) for v in VERSIONS]
    left = await create(api, bob, preset="public_chat")
    await api.post(f"rooms/{left}/join", {}, token=alice)
    invited = await create(api, bob)
    space = await create(api, bob, preset="public_chat")
    restricted = await create(api, bob, initial_state=with_join_rule("restricted", [space]))
    await api.post(f"rooms/{space}/join", {}, token=alice)
    await api.post(f"rooms/{restricted}/join", {}, token=alice)
    await api.post(f"rooms/{invited}/invite", {"user_id": ALICE}, token=bob)
    await api.post(f"rooms/{left}/leave", {}, token=alice)
    left_event = await member(api, left, ALICE, bob)
    invite_event = await member(api, invited, ALICE, bob)

    await api.put(f"profile/{ALICE}/displayname", {"displayname": "Alice L."}, token=alice)
    for room in [*rooms, restricted]:
        event = await member(api, room, ALICE, alice)
        assert event["sender"] == ALICE
        assert event["content"] == {"membership": "join", "displayname": "Alice L."}, room
    # Rooms alice is not joined to are left alone.
    assert (await member(api, left, ALICE, bob))["event_id"] == left_event["event_id"]
    assert (await member(api, invited, ALICE, bob))["event_id"] == invite_event["event_id"]

    await api.put(f"profile/{ALICE}/avatar_url", {"avatar_url": "mxc://test.local/face"}, token=alice)
    assert (await member(api, rooms[0], ALICE, alice))["content"] == {
        "membership": "join", "displayname": "Alice L.", "avatar_url": "mxc://test.local/face"
    }
    await api.request("DELETE", f"profile/{ALICE}/displayname", token=alice)
    assert (await member(api, rooms[2], ALICE, alice))["content"] == {
        "membership": "join", "avatar_url": "mxc://test.local/face"
    }


async def test_unchanged_or_unrelated_profile_fields_send_nothing(api: Api) -> None:
    (alice,) = await users(api, "alice")
    room = await create(api, alice)
    await api.put(f"profile/{ALICE}/displayname", {"displayname": "A"}, token=alice)
    before = len(await member_events(api, room, alice))
    await api.put(f"profile/{ALICE}/displayname", {"displayname": "A"}, token=alice)
    await api.put(f"profile/{ALICE}/m.tz", {"m.tz": "Europe/Paris"}, token=alice)
    await api.put(f"profile/{ALICE}/org.example.title", {"org.example.title": "CTO"}, token=alice)
    assert len(await member_events(api, room, alice)) == before


async def test_new_memberships_carry_the_current_profile(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    await api.put(f"profile/{BOB}/displayname", {"displayname": "Robert"}, token=bob)
    await api.put(f"profile/{BOB}/avatar_url", {"avatar_url": "mxc://test.local/bob"}, token=bob)
    room = await create(api, alice, room_version="12", initial_state=with_join_rule("knock"))
    await api.post(f"knock/{room}", {}, token=bob)
    expected = {"displayname": "Robert", "avatar_url": "mxc://test.local/bob"}
    assert (await member(api, room, BOB, alice))["content"] == {"membership": "knock", **expected}
    await api.post(f"rooms/{room}/invite", {"user_id": BOB}, token=alice)
    assert (await member(api, room, BOB, alice))["content"] == {"membership": "invite", **expected}
    await api.post(f"rooms/{room}/join", {}, token=bob)
    assert (await member(api, room, BOB, alice))["content"] == {"membership": "join", **expected}
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    assert (await member(api, room, BOB, alice))["content"] == {"membership": "leave"}


# --- guests ----------------------------------------------------------------------------------


async def test_guest_access(make_api: Any) -> None:
    api = await make_api(registration={"allow_guests": True})
    (alice,) = await users(api, "alice")
    reg = await api.post("register?kind=guest", {})
    guest, guest_id = reg["access_token"], reg["user_id"]
    closed = await create(api, alice, preset="public_chat")  # guest_access: forbidden
    open_room = await create(api, alice, preset="public_chat", room_alias_name="guests",
                             initial_state=[{"type": "m.room.guest_access", "content": {"guest_access": "can_join"}}])
    for path in (f"rooms/{closed}/join", f"join/{closed}"):
        await error(api, "POST", path, {}, token=guest, status=403, errcode="M_GUEST_ACCESS_FORBIDDEN")
    assert await membership(api, closed, guest_id, alice) is None
    # Invited or not, a room without guest access stays closed to guests.
    private = await create(api, alice, initial_state=[
        {"type": "m.room.guest_access", "content": {"guest_access": "forbidden"}}])
    await api.post(f"rooms/{private}/invite", {"user_id": guest_id}, token=alice)
    await error(api, "POST", f"rooms/{private}/join", {}, token=guest, status=403, errcode="M_GUEST_ACCESS_FORBIDDEN")

    assert await api.post(f"join/{alias_path('#guests:test.local')}", {}, token=guest) == {"room_id": open_room}
    assert await membership(api, open_room, guest_id, alice) == "join"
    assert await api.get("joined_rooms", token=guest) == {"joined_rooms": [open_room]}
    await api.post(f"rooms/{open_room}/leave", {}, token=guest)
    await api.post(f"rooms/{open_room}/join", {}, token=guest)
    # Guests may join and leave, nothing more.
    for path, body in ((f"rooms/{open_room}/invite", {"user_id": ALICE}),
                       (f"rooms/{open_room}/kick", {"user_id": ALICE}),
                       (f"rooms/{open_room}/ban", {"user_id": ALICE}),
                       (f"rooms/{open_room}/unban", {"user_id": ALICE}),
                       (f"rooms/{open_room}/forget", {})):
        await error(api, "POST", path, body, token=guest, status=403, errcode="M_GUEST_ACCESS_FORBIDDEN")
    # Closing the room to guests removes the guests already in it; members stay.
    await api.put(f"rooms/{open_room}/state/m.room.guest_access", {"guest_access": "forbidden"}, token=alice)
    removed = await member(api, open_room, guest_id, alice)
    assert (removed["sender"], removed["content"]["membership"]) == (guest_id, "leave")
    assert await membership(api, open_room, ALICE, alice) == "join"
    assert await api.get("joined_rooms", token=guest) == {"joined_rooms": []}
    await error(api, "POST", f"rooms/{open_room}/join", {}, token=guest, status=403, errcode="M_GUEST_ACCESS_FORBIDDEN")


# --- joined_rooms and rate limits ------------------------------------------------------------


async def test_joined_rooms(api: Api) -> None:
    alice, bob = await users(api, "alice", "bob")
    assert await api.get("joined_rooms", token=bob) == {"joined_rooms": []}
    rooms = [await create(api, alice, preset="public_chat") for _ in range(3)]
    invited = await create(api, alice, invite=[BOB])
    knocked = await create(api, alice, initial_state=with_join_rule("knock"))
    await api.post(f"knock/{knocked}", {}, token=bob)
    for room in rooms:
        await api.post(f"rooms/{room}/join", {}, token=bob)
    assert sorted((await api.get("joined_rooms", token=bob))["joined_rooms"]) == sorted(rooms)
    await api.post(f"rooms/{rooms[1]}/leave", {}, token=bob)
    await api.post(f"rooms/{rooms[2]}/ban", {"user_id": BOB}, token=alice)
    assert (await api.get("joined_rooms", token=bob))["joined_rooms"] == [rooms[0]]
    assert sorted((await api.get("joined_rooms", token=alice))["joined_rooms"]) == sorted([*rooms, invited, knocked])
    await error(api, "GET", "joined_rooms", token=None, status=401, errcode="M_MISSING_TOKEN")


async def test_membership_changes_are_rate_limited(make_api: Any) -> None:
    api = await make_api(rate_limits={"enabled": True, "actions": {"message": {"per_second": 0.001, "burst": 2}}})
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    await api.post(f"rooms/{room}/join", {}, token=bob)
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    _, err = await api.request("POST", f"rooms/{room}/join", {}, token=bob, expect=429)
    assert err["errcode"] == "M_LIMIT_EXCEEDED"
    assert await membership(api, room, BOB, alice) == "leave"


async def test_join_keeps_the_clients_membership_content(api: Api) -> None:
    """POST /join and /rooms/{roomId}/join: `reason` and any custom keys the client
    sends land in its m.room.member content; keys only the server sets do not."""
    alice, bob = await users(api, "alice", "bob")
    room = await create(api, alice, preset="public_chat")
    body = {"reason": "hello", "org.example.role": "observer", "displayname": "Bobby",
            "membership": "leave", "join_authorised_via_users_server": ALICE}
    await api.post(f"rooms/{room}/join", body, token=bob)
    content = (await member(api, room, BOB, bob))["content"]
    assert content["membership"] == "join"
    assert content["reason"] == "hello" and content["org.example.role"] == "observer"
    assert content["displayname"] == "Bobby"
    assert "join_authorised_via_users_server" not in content
    await api.post(f"rooms/{room}/leave", {}, token=bob)
    await api.post(f"join/{quote(room)}", {"org.example.again": True}, token=bob)
    content = (await member(api, room, BOB, bob))["content"]
    assert content["membership"] == "join" and content["org.example.again"] is True
    assert "reason" not in content
