"""createRoom, sending events, state and redaction through the client API."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api


async def _user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def _state(api: Api, room: str, token: str) -> dict[tuple[str, str], dict[str, Any]]:
    events = await api.get(f"rooms/{room}/state", token=token)
    return {(e["type"], e["state_key"]): e for e in events}


ALL_VERSIONS = [str(n) for n in range(1, 13)]


@pytest.mark.parametrize("version", ALL_VERSIONS)
async def test_create_room_defaults(api: Api, version: str) -> None:
    token = await _user(api, "alice")
    room = (await api.post("createRoom", {"room_version": version}, token=token))["room_id"]
    state = await _state(api, room, token)
    create = state[("m.room.create", "")]
    assert create["content"]["room_version"] == version
    assert create["sender"] == "@alice:test.local"
    levels = state[("m.room.power_levels", "")]["content"]
    if version == "12":
        # v12: the room ID is derived from the create event, and creators hold infinite power.
        assert room == "!" + create["event_id"][1:]
        assert "@alice:test.local" not in levels["users"]
        assert "creator" not in create["content"]
    else:
        assert room.endswith(":test.local")
        assert levels["users"]["@alice:test.local"] == 100
        assert ("creator" in create["content"]) == (int(version) <= 10)
        if int(version) <= 2:
            # v1/v2: the server names its events, and references carry reference hashes.
            assert create["event_id"].endswith(":test.local")
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "shared"}
    assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}
    assert state[("m.room.member", "@alice:test.local")]["content"]["membership"] == "join"
    assert levels["invite"] == 0  # private preset: any member may invite
    assert await api.get("joined_rooms", token=token) == {"joined_rooms": [room]}


@pytest.mark.parametrize("version", ALL_VERSIONS)
async def test_send_state_redact_in_every_version(api: Api, version: str) -> None:
    token = await _user(api, "alice")
    room = (await api.post("createRoom", {"room_version": version}, token=token))["room_id"]
    sent = await api.put(f"rooms/{room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"}, token=token)
    await api.put(f"rooms/{room}/state/m.room.topic", {"topic": f"v{version}"}, token=token)
    assert (await api.get(f"rooms/{room}/state/m.room.topic", token=token)) == {"topic": f"v{version}"}
    # A v3 event ID is standard base64 and may hold '/': a client escapes it in the path.
    await api.put(f"rooms/{room}/redact/{quote(sent['event_id'], safe='')}/r1", {"reason": "oops"}, token=token)
    page = await api.get(f"rooms/{room}/messages?dir=b&limit=20", token=token)
    message = next(e for e in page["chunk"] if e["event_id"] == sent["event_id"])
    assert message["content"] == {}
    assert message["unsigned"]["redacted_because"]["sender"] == "@alice:test.local"
    caps = await api.get("capabilities", token=token)
    assert caps["capabilities"]["m.room_versions"]["available"][version] == "stable"


async def test_create_room_options(api: Api) -> None:
    token = await _user(api, "alice")
    body = {
        "preset": "public_chat",
        "name": "Ops",
        "topic": "Operations",
        "room_alias_name": "ops",
        "initial_state": [
            {"type": "m.room.avatar", "content": {"url": "mxc://test.local/abc"}},
            {"type": "org.example.custom", "state_key": "k", "content": {"x": 1}},
        ],
        "power_level_content_override": {"events_default": 10},
        "creation_content": {"m.federate": False},
    }
    room = (await api.post("createRoom", body, token=token))["room_id"]
    state = await _state(api, room, token)
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "public"}
    assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "forbidden"}
    assert state[("m.room.name", "")]["content"] == {"name": "Ops"}
    assert state[("m.room.topic", "")]["content"]["topic"] == "Operations"
    assert state[("m.room.canonical_alias", "")]["content"] == {"alias": "#ops:test.local"}
    assert state[("m.room.avatar", "")]["content"] == {"url": "mxc://test.local/abc"}
    assert state[("org.example.custom", "k")]["content"] == {"x": 1}
    assert state[("m.room.power_levels", "")]["content"]["events_default"] == 10
    assert state[("m.room.create", "")]["content"]["m.federate"] is False
    assert (await api.hs.room_store.get_room(room)).federate is False
    # The alias was created and resolves.
    assert (await api.hs.room_store.get_alias("#ops:test.local"))[0] == room
    status, err = await api.request("POST", "createRoom", {"room_alias_name": "ops"}, token=token, expect=400)
    assert err["errcode"] == "M_ROOM_IN_USE"


@pytest.mark.parametrize(
    ("body", "status", "errcode"),
    [
        ({"room_version": "13"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"room_version": "999"}, 400, "M_UNSUPPORTED_ROOM_VERSION"),
        ({"room_version": 12}, 400, "M_BAD_JSON"),
        ({"preset": "party"}, 400, "M_BAD_JSON"),
        ({"visibility": "secret"}, 400, "M_BAD_JSON"),
        ({"name": 5}, 400, "M_BAD_JSON"),
        ({"invite": ["not-a-user"]}, 400, "M_INVALID_PARAM"),
        ({"invite": "@bob:test.local"}, 400, "M_INVALID_PARAM"),
        ({"initial_state": [{"type": "m.room.name"}]}, 400, "M_BAD_JSON"),
        ({"creation_content": []}, 400, "M_BAD_JSON"),
        ({"creation_content": {"m.federate": "no"}}, 400, "M_BAD_JSON"),
        ({"room_alias_name": "bad:alias"}, 400, "M_INVALID_PARAM"),
        ({"is_direct": "yes"}, 400, "M_BAD_JSON"),
        ({"name": "x" * 70000}, 413, "M_TOO_LARGE"),
    ],
)
async def test_create_room_errors(api: Api, body: dict[str, Any], status: int, errcode: str) -> None:
    token = await _user(api, "alice")
    _, err = await api.request("POST", "createRoom", body, token=token, expect=status)
    assert err["errcode"] == errcode
    assert await api.get("joined_rooms", token=token) == {"joined_rooms": []} or errcode == "M_TOO_LARGE"


async def test_create_room_requires_auth(api: Api) -> None:
    _, err = await api.request("POST", "createRoom", {}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


async def test_send_is_idempotent_per_device(api: Api) -> None:
    reg = await api.register("alice")
    token = reg["access_token"]
    other = (await api.login("alice"))["access_token"]
    room = (await api.post("createRoom", {}, token=token))["room_id"]
    first = await api.put(f"rooms/{room}/send/m.room.message/t1", {"body": "hi", "msgtype": "m.text"}, token=token)
    again = await api.put(f"rooms/{room}/send/m.room.message/t1", {"body": "changed", "msgtype": "m.text"}, token=token)
    assert again == first
    elsewhere = await api.put(f"rooms/{room}/send/m.room.message/t1", {"body": "hi", "msgtype": "m.text"}, token=other)
    assert elsewhere != first
    msgs = await api.get(f"rooms/{room}/messages?dir=b&limit=2", token=token)
    assert [m["event_id"] for m in msgs["chunk"]] == [elsewhere["event_id"], first["event_id"]]
    # Only the sending device sees its transaction ID.
    assert msgs["chunk"][1]["unsigned"]["transaction_id"] == "t1"
    assert "transaction_id" not in msgs["chunk"][0]["unsigned"]
    assert msgs["chunk"][1]["content"] == {"body": "hi", "msgtype": "m.text"}


async def test_send_errors(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/1", {"body": "x"}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("PUT", "rooms/!nope:test.local/send/m.room.message/1", {}, token=alice, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("PUT", f"rooms/{room}/send/{'t' * 256}/1", {}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/2", {"body": "x" * 66000}, token=alice, expect=413)
    assert err["errcode"] == "M_TOO_LARGE"
    _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/3", data=b"[1]", token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/4", data=b"{nope", token=alice, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/5", {"n": 1.5}, token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    # Nothing of the refused requests reached the room.
    msgs = await api.get(f"rooms/{room}/messages?dir=b&limit=50", token=alice)
    assert not [m for m in msgs["chunk"] if m["type"] == "m.room.message"]


async def test_state_put_get_and_power(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    set_name = await api.put(f"rooms/{room}/state/m.room.name", {"name": "One"}, token=alice)
    # Same content again from the same sender is a no-op.
    assert await api.put(f"rooms/{room}/state/m.room.name", {"name": "One"}, token=alice) == set_name
    assert await api.get(f"rooms/{room}/state/m.room.name", token=bob) == {"name": "One"}
    full = await api.get(f"rooms/{room}/state/m.room.name/?format=event", token=bob)
    assert full["event_id"] == set_name["event_id"] and full["sender"] == "@alice:test.local"
    _, err = await api.request("PUT", f"rooms/{room}/state/m.room.name", {"name": "Two"}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # A state key that is someone else's user ID is theirs alone.
    _, err = await api.request(
        "PUT", f"rooms/{room}/state/org.example.status/@alice:test.local", {"s": 1}, token=bob, expect=403
    )
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("GET", f"rooms/{room}/state/m.room.topic", token=bob, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    # A per-room nickname is an m.room.member state change the auth rules allow.
    await api.put(
        f"rooms/{room}/state/m.room.member/@bob:test.local",
        {"membership": "join", "displayname": "Bobby here"}, token=bob,
    )
    member = await api.get(f"rooms/{room}/state/m.room.member/@bob:test.local", token=alice)
    assert member == {"membership": "join", "displayname": "Bobby here"}
    _, err = await api.request(
        "PUT", f"rooms/{room}/state/m.room.member/@alice:test.local", {"membership": "leave"},
        token=bob, expect=403,
    )
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request(
        "PUT", f"rooms/{room}/state/m.room.member/@bob:test.local", {"displayname": "x"}, token=bob, expect=400
    )
    assert err["errcode"] == "M_BAD_JSON"
    carol = await _user(api, "carol")
    _, err = await api.request("GET", f"rooms/{room}/state", token=carol, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_redaction(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    mine = (await api.put(f"rooms/{room}/send/m.room.message/1", {"body": "secret", "msgtype": "m.text"}, token=bob))["event_id"]
    theirs = (await api.put(f"rooms/{room}/send/m.room.message/2", {"body": "keep", "msgtype": "m.text"}, token=alice))["event_id"]
    _, err = await api.request("PUT", f"rooms/{room}/redact/{theirs}/r1", {}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    redaction = await api.put(f"rooms/{room}/redact/{mine}/r2", {"reason": "oops"}, token=bob)
    event = await api.get(f"rooms/{room}/event/{mine}", token=alice)
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]
    assert event["unsigned"]["redacted_because"]["content"]["reason"] == "oops"
    # Moderators may redact anyone's event.
    await api.put(f"rooms/{room}/redact/{theirs}/r3", {}, token=alice)
    _, err = await api.request("PUT", f"rooms/{room}/redact/$unknown/r4", {}, token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_concurrent_sends_form_a_chain(api: Api) -> None:
    """Events of one room are serialised: each cites the one before as its only prev event."""
    token = await _user(api, "alice")
    rooms = [(await api.post("createRoom", {}, token=token))["room_id"] for _ in range(3)]

    async def send(room: str, i: int) -> str:
        return (await api.put(f"rooms/{room}/send/m.room.message/{room}-{i}", {"body": str(i)}, token=token))["event_id"]

    await asyncio.gather(*(send(room, i) for room in rooms for i in range(20)))
    for room in rooms:
        info = await api.hs.room_store.get_room(room)
        events = await api.hs.event_store.room_stream(info.room_nid, from_pos=0, to_pos=None, backwards=False, limit=1000)
        for before, after in zip(events, events[1:], strict=False):
            assert after.event["prev_events"] == [before.event_id]
            assert after.event["depth"] == before.event["depth"] + 1
        assert len(await api.hs.room_store.forward_extremities(info.room_nid)) == 1
        bodies = sorted(int(e.event["content"]["body"]) for e in events if e.type == "m.room.message")
        assert bodies == list(range(20))
