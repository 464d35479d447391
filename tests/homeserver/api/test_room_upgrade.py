"""POST /rooms/{roomId}/upgrade, step by step against the spec's "Server behaviour"."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api

ME = "test.local"
ALICE, BOB, CAROL, DAVE = (f"@{n}:{ME}" for n in ("alice", "bob", "carol", "dave"))


async def _user(api: Api, name: str) -> str:
    return (await api.register(name))["access_token"]


async def _state(api: Api, room: str, token: str) -> dict[tuple[str, str], dict[str, Any]]:
    events = await api.get(f"rooms/{room}/state", token=token)
    return {(e["type"], e["state_key"]): e for e in events}


def _content(state: dict[tuple[str, str], dict[str, Any]], event_type: str, state_key: str = "") -> Any:
    ev = state.get((event_type, state_key))
    return ev["content"] if ev is not None else None


TRANSFERRED = (
    "m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
    "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules",
)


async def _rich_room(api: Api, version: str) -> tuple[str, dict[str, str]]:
    """A published public room with every transferable state event, an alias, a
    moderator (bob), a plain member (dave) and a banned user (carol)."""
    tokens = {n: await _user(api, n) for n in ("alice", "bob", "carol", "dave")}
    alice = tokens["alice"]
    room = (await api.post("createRoom", {
        "room_version": version,
        "preset": "public_chat",
        "visibility": "public",
        "name": "Ops",
        "topic": "Operations",
        "room_alias_name": "ops",
        "initial_state": [
            {"type": "m.room.avatar", "content": {"url": "mxc://test.local/abc"}},
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": "m.room.server_acl", "content": {"allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": False}},
            {"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}},
            {"type": "m.room.guest_access", "content": {"guest_access": "can_join"}},
            {"type": "org.example.custom", "content": {"not": "copied"}},
        ],
        "power_level_content_override": {"events": {"m.room.tombstone": 100, "m.room.name": 60}},
    }, token=alice))["room_id"]
    await api.put(f"directory/room/{quote(f'#ops2:{ME}')}", {"room_id": room}, token=alice)
    await api.put(
        f"rooms/{room}/state/m.room.canonical_alias",
        {"alias": f"#ops:{ME}", "alt_aliases": [f"#ops2:{ME}"]}, token=alice,
    )
    for name in ("bob", "carol", "dave"):
        await api.post(f"rooms/{room}/join", {}, token=tokens[name])
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=alice)
    levels["users"][BOB] = 50
    await api.put(f"rooms/{room}/state/m.room.power_levels", levels, token=alice)
    await api.post(f"rooms/{room}/ban", {"user_id": CAROL, "reason": "spam"}, token=alice)
    return room, tokens


@pytest.mark.parametrize(
    ("old", "new"),
    [("10", "11"), ("11", "12"), ("12", "12"), ("10", "12"), ("12", "11"), ("11", "10"),
     ("1", "2"), ("2", "6"), ("5", "9"), ("9", "12"), ("3", "4"), ("7", "8")],
)
async def test_upgrade_between_versions(api: Api, old: str, new: str) -> None:
    room, tokens = await _rich_room(api, old)
    alice = tokens["alice"]
    before = await _state(api, room, alice)
    resp = await api.post(f"rooms/{room}/upgrade", {"new_version": new}, token=alice)
    assert set(resp) == {"replacement_room"}
    new_room = resp["replacement_room"]
    assert new_room != room
    after = await _state(api, new_room, alice)
    old_after = await _state(api, room, alice)

    # 2. The create event: version, predecessor (room and the last event before the
    # upgrade), the upgrader as creator.
    create = after[("m.room.create", "")]
    assert create["sender"] == ALICE
    assert create["content"]["room_version"] == new
    predecessor = create["content"]["predecessor"]
    assert predecessor["room_id"] == room
    last = await api.get(f"rooms/{room}/event/{quote(predecessor['event_id'], safe='')}", token=alice)
    assert last["type"] == "m.room.member" and last["state_key"] == CAROL  # the ban came last
    assert ("creator" in create["content"]) == (int(new) <= 10)
    if new == "12":
        assert new_room == "!" + create["event_id"][1:]

    # 3. Transferable state copied; other state and memberships not (bans aside).
    for event_type in TRANSFERRED:
        assert _content(after, event_type) == _content(before, event_type), event_type
    assert ("org.example.custom", "") not in after
    assert _content(after, "m.room.member", ALICE)["membership"] == "join"
    assert ("m.room.member", BOB) not in after and ("m.room.member", DAVE) not in after
    assert _content(after, "m.room.member", CAROL) == {"membership": "ban", "reason": "spam"}
    assert after[("m.room.member", CAROL)]["sender"] == ALICE

    # Power levels: the same, except where the versions' creator rules differ.
    old_levels = _content(before, "m.room.power_levels")
    new_levels = _content(after, "m.room.power_levels")
    expected_users = dict(old_levels["users"])
    if new == "12":
        expected_users.pop(ALICE, None)  # creators hold infinite power, never listed
    else:
        expected_users[ALICE] = 100  # explicit, including when the old v12 creator had none
    assert new_levels == {**old_levels, "users": expected_users}

    # 4. Aliases and the canonical alias move; so does the directory listing.
    assert _content(after, "m.room.canonical_alias") == {"alias": f"#ops:{ME}", "alt_aliases": [f"#ops2:{ME}"]}
    assert _content(old_after, "m.room.canonical_alias") == {}
    for alias in (f"#ops:{ME}", f"#ops2:{ME}"):
        assert (await api.get(f"directory/room/{quote(alias)}"))["room_id"] == new_room
    assert await api.get(f"rooms/{room}/aliases", token=alice) == {"aliases": []}
    assert await api.get(f"directory/list/room/{new_room}") == {"visibility": "public"}
    assert await api.get(f"directory/list/room/{room}") == {"visibility": "private"}
    assert [r["room_id"] for r in (await api.get("publicRooms"))["chunk"]] == [new_room]

    # 5. The tombstone.
    tombstone = old_after[("m.room.tombstone", "")]
    assert tombstone["sender"] == ALICE
    assert tombstone["content"]["replacement_room"] == new_room
    assert isinstance(tombstone["content"]["body"], str)

    # 6. Old room: ordinary members can no longer talk or invite.
    restricted = _content(old_after, "m.room.power_levels")
    assert restricted["events_default"] == 50 and restricted["invite"] == 50
    _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/t1", {"body": "hi"}, token=tokens["dave"], expect=403)
    assert err["errcode"] == "M_FORBIDDEN"

    # Members of the old (public) room can follow into the new one; the banned cannot.
    for name in ("bob", "dave"):
        await api.post(f"rooms/{new_room}/join", {}, token=tokens[name])
    await api.request("POST", f"rooms/{new_room}/join", {}, token=tokens["carol"], expect=403)
    await api.put(f"rooms/{new_room}/send/m.room.message/t2", {"body": "moved"}, token=tokens["dave"])


async def test_upgrade_chain_1_6_12(api: Api) -> None:
    """Issue 17's chain: each tombstone names the next room, each create event the
    previous room and its last event, and the rooms keep their own versions."""
    alice = await _user(api, "alice")
    first = (await api.post("createRoom", {"room_version": "1", "name": "Old"}, token=alice))["room_id"]
    await api.put(f"rooms/{first}/send/m.room.message/m1", {"msgtype": "m.text", "body": "v1"}, token=alice)
    chain = [first]
    for version in ("6", "12"):
        chain.append((await api.post(f"rooms/{chain[-1]}/upgrade", {"new_version": version}, token=alice))["replacement_room"])
    for old, new, version in zip(chain[:-1], chain[1:], ("6", "12"), strict=True):
        old_state = await _state(api, old, alice)
        new_state = await _state(api, new, alice)
        tombstone = old_state[("m.room.tombstone", "")]
        assert tombstone["content"]["replacement_room"] == new
        create = new_state[("m.room.create", "")]
        assert create["content"]["room_version"] == version
        assert create["content"]["predecessor"]["room_id"] == old
        assert _content(new_state, "m.room.name") == {"name": "Old"}
        last = await api.get(f"rooms/{old}/event/{quote(create['content']['predecessor']['event_id'], safe='')}", token=alice)
        assert last["room_id"] == old
    assert _content(await _state(api, first, alice), "m.room.create")["creator"] == ALICE
    assert chain[2] == "!" + (await _state(api, chain[2], alice))[("m.room.create", "")]["event_id"][1:]


async def test_invite_only_room_members_need_an_invite(api: Api) -> None:
    """The spec does not have the server invite the old members: in an invite-only
    room they wait for an invite, which the upgrader (holding the copied power) can send."""
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"preset": "private_chat", "invite": [BOB]}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    new_room = (await api.post(f"rooms/{room}/upgrade", {"new_version": "12"}, token=alice))["replacement_room"]
    state = await _state(api, new_room, alice)
    assert _content(state, "m.room.join_rules") == {"join_rule": "invite"}
    assert ("m.room.member", BOB) not in state
    _, err = await api.request("POST", f"rooms/{new_room}/join", {}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    await api.post(f"rooms/{new_room}/invite", {"user_id": BOB}, token=alice)
    await api.post(f"rooms/{new_room}/join", {}, token=bob)
    # The room was never published, and stays unpublished.
    assert await api.get(f"directory/list/room/{new_room}") == {"visibility": "private"}


async def test_restricted_room_allows_old_members_via_allow_rule(api: Api) -> None:
    """A restricted room's allow list is copied as-is, so members of the rooms it
    names can still join without an invite."""
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    space = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{space}/join", {}, token=bob)
    rule = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    room = (await api.post(
        "createRoom", {"initial_state": [{"type": "m.room.join_rules", "content": rule}]}, token=alice,
    ))["room_id"]
    new_room = (await api.post(f"rooms/{room}/upgrade", {"new_version": "11"}, token=alice))["replacement_room"]
    assert await api.get(f"rooms/{new_room}/state/m.room.join_rules", token=alice) == rule
    await api.post(f"rooms/{new_room}/join", {}, token=bob)


async def test_upgrader_below_power_levels_level_gets_exact_copy(api: Api) -> None:
    """Someone allowed to tombstone but not to change power levels still upgrades: they
    are raised while copying state, then the exact power levels are restored; the old
    room's power levels stay as they were since they may not change them."""
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {
        "room_version": "11", "preset": "public_chat",
        "power_level_content_override": {"events": {"m.room.tombstone": 50, "m.room.power_levels": 100, "m.room.encryption": 100}},
        "initial_state": [{"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    }, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=alice)
    levels["users"][BOB] = 50
    await api.put(f"rooms/{room}/state/m.room.power_levels", levels, token=alice)
    new_room = (await api.post(f"rooms/{room}/upgrade", {"new_version": "11"}, token=bob))["replacement_room"]
    state = await _state(api, new_room, bob)
    assert _content(state, "m.room.power_levels") == levels
    assert _content(state, "m.room.encryption") == {"algorithm": "m.megolm.v1.aes-sha2"}
    old = await _state(api, room, bob)
    assert _content(old, "m.room.tombstone")["replacement_room"] == new_room
    assert _content(old, "m.room.power_levels") == levels  # "if possible": here it is not


async def test_additional_creators(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    room = (await api.post("createRoom", {"room_version": "11", "preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    levels = await api.get(f"rooms/{room}/state/m.room.power_levels", token=alice)
    levels["users"][BOB] = 50
    await api.put(f"rooms/{room}/state/m.room.power_levels", levels, token=alice)
    body = {"new_version": "12", "additional_creators": [BOB, BOB, ALICE]}
    v12 = (await api.post(f"rooms/{room}/upgrade", body, token=alice))["replacement_room"]
    state = await _state(api, v12, alice)
    assert _content(state, "m.room.create")["additional_creators"] == [BOB]
    assert BOB not in _content(state, "m.room.power_levels")["users"]
    assert ALICE not in _content(state, "m.room.power_levels")["users"]
    # Creators are not carried over by a further upgrade unless named again; the
    # upgrader is the only creator and bob keeps no special power.
    await api.post(f"rooms/{v12}/join", {}, token=bob)
    again = (await api.post(f"rooms/{v12}/upgrade", {"new_version": "12"}, token=alice))["replacement_room"]
    state = await _state(api, again, alice)
    assert "additional_creators" not in _content(state, "m.room.create")
    assert BOB not in _content(state, "m.room.power_levels")["users"]
    # Into a version without additional creators the field is ignored.
    v11 = (await api.post(f"rooms/{again}/upgrade", {"new_version": "11", "additional_creators": [BOB]}, token=alice))
    state = await _state(api, v11["replacement_room"], alice)
    assert "additional_creators" not in _content(state, "m.room.create")


async def test_room_type_and_federate_carry_over(api: Api) -> None:
    alice = await _user(api, "alice")
    room = (await api.post(
        "createRoom", {"creation_content": {"type": "m.space", "m.federate": False}}, token=alice,
    ))["room_id"]
    new_room = (await api.post(f"rooms/{room}/upgrade", {"new_version": "12"}, token=alice))["replacement_room"]
    create = await api.get(f"rooms/{new_room}/state/m.room.create", token=alice)
    assert create["type"] == "m.space" and create["m.federate"] is False
    assert (await api.hs.room_store.get_room(new_room)).federate is False
    # Without a type, none is set.
    plain = (await api.post("createRoom", {}, token=alice))["room_id"]
    new_plain = (await api.post(f"rooms/{plain}/upgrade", {"new_version": "12"}, token=alice))["replacement_room"]
    create = await api.get(f"rooms/{new_plain}/state/m.room.create", token=alice)
    assert "type" not in create and "m.federate" not in create


@pytest.mark.parametrize("version", ["0", "13", "", "foo"])
async def test_unsupported_version(api: Api, version: str) -> None:
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    _, err = await api.request("POST", f"rooms/{room}/upgrade", {"new_version": version}, token=alice, expect=400)
    assert err["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"


async def test_upgrade_errors(api: Api) -> None:
    alice = await _user(api, "alice")
    bob = await _user(api, "bob")
    carol = await _user(api, "carol")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob)
    rooms_before = len(await api.hs.db.fetchall("SELECT room_id FROM rooms"))
    path = f"rooms/{room}/upgrade"
    # Without power to send m.room.tombstone: 403 and nothing created.
    _, err = await api.request("POST", path, {"new_version": "12"}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Not joined, or no such room.
    _, err = await api.request("POST", path, {"new_version": "12"}, token=carol, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("POST", f"rooms/!nope:{ME}/upgrade", {"new_version": "12"}, token=alice, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Bad bodies.
    for body, code in [
        ({}, "M_MISSING_PARAM"),
        ({"new_version": 12}, "M_BAD_JSON"),
        ({"new_version": "12", "additional_creators": "@bob:test.local"}, "M_BAD_JSON"),
        ({"new_version": "12", "additional_creators": ["bob"]}, "M_BAD_JSON"),
    ]:
        _, err = await api.request("POST", path, body, token=alice, expect=400)
        assert err["errcode"] == code, body
    _, err = await api.request("POST", path, data=b"", token=alice, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    _, err = await api.request("POST", path, {"new_version": "12"}, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
    assert len(await api.hs.db.fetchall("SELECT room_id FROM rooms")) == rooms_before
    state = await _state(api, room, alice)
    assert ("m.room.tombstone", "") not in state


async def test_left_member_cannot_upgrade(api: Api) -> None:
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/leave", {}, token=alice)
    _, err = await api.request("POST", f"rooms/{room}/upgrade", {"new_version": "12"}, token=alice, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"


async def test_repeated_upgrade_returns_the_same_replacement(make_api: Any, clock: Any) -> None:
    """A double click or a retry must not tombstone the room twice and split it; a
    deliberate re-upgrade later (or to another version) makes a new replacement."""
    import asyncio

    api = await make_api(clock=clock)
    alice = await _user(api, "alice")
    room = (await api.post("createRoom", {"room_alias_name": "one"}, token=alice))["room_id"]
    results = await asyncio.gather(
        *(api.post(f"rooms/{room}/upgrade", {"new_version": "12"}, token=alice) for _ in range(2))
    )
    first, second = (r["replacement_room"] for r in results)
    assert first == second
    assert (await api.get(f"directory/room/{quote(f'#one:{ME}')}"))["room_id"] == first
    again = (await api.post(f"rooms/{room}/upgrade", {"new_version": "12"}, token=alice))["replacement_room"]
    assert again == first
    other = (await api.post(f"rooms/{room}/upgrade", {"new_version": "11"}, token=alice))["replacement_room"]
    assert other != first
    clock.advance(6 * 60 * 1000)
    later = (await api.post(f"rooms/{room}/upgrade", {"new_version": "11"}, token=alice))["replacement_room"]
    assert later not in (first, other)
    tombstone = await api.get(f"rooms/{room}/state/m.room.tombstone", token=alice)
    assert tombstone["replacement_room"] == later
