"""Authorisation rules for room versions 10, 11 and 12 on hand-built DAGs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from federation.events import (
    CREATOR_POWER_LEVEL,
    AuthError,
    auth_types_for_event,
    check_auth,
    check_event_auth,
    encode_base64,
    get_named_level,
    get_required_power_level,
    get_user_power_level,
    get_verify_key,
    room_creators,
    select_auth_event_ids,
    sign_json,
    signing_key_from_seed,
)

from .roomkit import Room

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
DAVE = "@dave:d.test"
EVE = "@eve:e.test"

VERSIONS = ["10", "11", "12"]


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return request.param


def public_room(version: str, **kwargs: Any) -> Room:
    return Room(version).bootstrap("public", **kwargs)


# ---------------------------------------------------------------------------
# m.room.create
# ---------------------------------------------------------------------------


def test_create_event_is_allowed(version: str) -> None:
    room = Room(version)
    room.check(room.create)
    assert ("room_id" in room.create) is (version != "12")


def test_create_with_prev_events_rejected(version: str) -> None:
    room = Room(version)
    bad = copy.deepcopy(room.create)
    bad["prev_events"] = ["$something"]
    with pytest.raises(AuthError, match=r"rule 1\.1"):
        check_auth(bad, {}, version)


@pytest.mark.parametrize("version", ["10", "11"])
def test_create_room_id_domain_must_match_sender(version: str) -> None:
    room = Room(version, room_id="!room:elsewhere.test")
    with pytest.raises(AuthError, match=r"rule 1\.2"):
        check_auth(room.create, {}, version)


def test_v12_create_must_not_have_room_id() -> None:
    room = Room("12")
    bad = {**room.create, "room_id": "!room:a.test"}
    with pytest.raises(AuthError, match=r"rule 1\.2"):
        check_auth(bad, {}, "12")


def test_create_with_unknown_room_version_rejected(version: str) -> None:
    room = Room(version, create_content={"room_version": "999"})
    with pytest.raises(AuthError, match=r"rule 1\.3"):
        room.check(room.create)
    # Versions this server does not support but the spec knows are fine.
    check_auth(Room(version, create_content={"room_version": "9"}).create, {}, version)


def test_v10_create_needs_creator() -> None:
    room = Room("10")
    bad = copy.deepcopy(room.create)
    del bad["content"]["creator"]
    with pytest.raises(AuthError, match=r"rule 1\.4"):
        check_auth(bad, {}, "10")
    # From v11 the sender is the creator and the field is not needed.
    assert "creator" not in Room("11").create["content"]
    check_auth(Room("11").create, {}, "11")


@pytest.mark.parametrize(
    "value", [BOB, [BOB, 5], ["not-a-user"], ["@nocolon"], ["@x:" + "a" * 300]]
)
def test_v12_additional_creators_must_be_user_ids(value: Any) -> None:
    room = Room("12", create_content={"additional_creators": value})
    with pytest.raises(AuthError, match=r"rule 1\.4"):
        room.check(room.create)
    # Earlier versions ignore the field entirely.
    check_auth(Room("11", create_content={"additional_creators": value}).create, {}, "11")


def test_v12_valid_additional_creators() -> None:
    room = Room("12", create_content={"additional_creators": [BOB, "@old:historic.test"]})
    room.check(room.create)
    assert room_creators(room.create, "12") == {ALICE, BOB, "@old:historic.test"}
    assert room_creators(room.create, "11") == {ALICE}


# ---------------------------------------------------------------------------
# auth_events checks
# ---------------------------------------------------------------------------


def test_auth_events_selection(version: str) -> None:
    room = public_room(version)
    event = room.event(BOB, "m.room.member", {"membership": "join"}, BOB)
    expected = {("m.room.power_levels", ""), ("m.room.member", BOB), ("m.room.join_rules", "")}
    if version != "12":
        expected.add(("m.room.create", ""))
    assert auth_types_for_event(event, version) == expected
    assert set(event["auth_events"]) == {
        room.state_ids[k] for k in expected if k in room.state_ids
    }
    assert room.create["event_id"] not in event["auth_events"] or version != "12"


def test_auth_types_for_special_memberships(version: str) -> None:
    third_party = {
        "type": "m.room.member",
        "sender": ALICE,
        "state_key": BOB,
        "content": {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}},
    }
    assert ("m.room.third_party_invite", "tok") in auth_types_for_event(third_party, version)
    restricted = {
        "type": "m.room.member",
        "sender": BOB,
        "state_key": BOB,
        "content": {"membership": "join", "join_authorised_via_users_server": CAROL},
    }
    assert ("m.room.member", CAROL) in auth_types_for_event(restricted, version)
    leave = {"type": "m.room.member", "sender": ALICE, "state_key": BOB, "content": {"membership": "leave"}}
    assert ("m.room.join_rules", "") not in auth_types_for_event(leave, version)
    assert auth_types_for_event({"type": "m.room.create", "sender": ALICE}, version) == set()


def test_select_auth_event_ids_orders_like_the_spec() -> None:
    state = {
        ("m.room.create", ""): "$c",
        ("m.room.power_levels", ""): "$pl",
        ("m.room.member", BOB): "$bob",
        ("m.room.join_rules", ""): "$jr",
        ("m.room.topic", ""): "$topic",
    }
    draft = {"type": "m.room.member", "sender": BOB, "state_key": BOB, "content": {"membership": "join"}}
    assert select_auth_event_ids(draft, state, "11") == ["$c", "$pl", "$bob", "$jr"]
    assert select_auth_event_ids(draft, state, "12") == ["$pl", "$bob", "$jr"]


def test_duplicate_auth_event_types_rejected(version: str) -> None:
    room = public_room(version)
    old_pl = room.state_ids[("m.room.power_levels", "")]
    room.send(ALICE, "m.room.power_levels", {"users": {ALICE: 100} if version != "12" else {}}, "")
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    event_bad = room.event(
        ALICE, "m.room.topic", {"topic": "x"}, "", auth=[*event["auth_events"], old_pl]
    )
    with pytest.raises(AuthError, match="Duplicate"):
        room.check(event_bad)


def test_unexpected_auth_event_rejected(version: str) -> None:
    room = public_room(version)
    jr = room.state_ids[("m.room.join_rules", "")]
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    bad = room.event(ALICE, "m.room.topic", {"topic": "x"}, "", auth=[*event["auth_events"], jr])
    with pytest.raises(AuthError, match="not needed"):
        room.check(bad)


@pytest.mark.parametrize("version", ["10", "11"])
def test_missing_create_in_auth_events_rejected(version: str) -> None:
    room = public_room(version)
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    auth = [a for a in event["auth_events"] if a != room.create["event_id"]]
    with pytest.raises(AuthError, match=r"rule 2\.4"):
        room.check(room.event(ALICE, "m.room.topic", {"topic": "x"}, "", auth=auth))


def test_v12_create_must_not_be_an_auth_event() -> None:
    room = public_room("12")
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    bad = room.event(
        ALICE, "m.room.topic", {"topic": "x"}, "", auth=[*event["auth_events"], room.create["event_id"]]
    )
    with pytest.raises(AuthError, match=r"rule 3\.2"):
        room.check(bad)


def test_v12_room_id_must_name_the_create_event() -> None:
    room = public_room("12")
    other = Room("12", create_content={"m.federate": True})
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    with pytest.raises(AuthError, match=r"rule 2\)"):
        check_auth(event, {**room.state(), ("m.room.create", ""): other.create}, "12")
    with pytest.raises(AuthError, match=r"rule 2\)"):
        check_event_auth(event, [room.events[a] for a in event["auth_events"]], "12")
    with pytest.raises(AuthError, match=r"rule 2\)"):
        check_auth(event, room.state(), "12", is_rejected={room.create["event_id"]}.__contains__)


def test_rejected_auth_event_rejected(version: str) -> None:
    room = public_room(version)
    room.rejected.add(room.state_ids[("m.room.power_levels", "")])
    with pytest.raises(AuthError, match="was rejected"):
        room.check(room.event(ALICE, "m.room.topic", {"topic": "x"}, ""))


def test_auth_event_from_other_room_rejected(version: str) -> None:
    room = public_room(version)
    other = public_room(version) if version != "12" else Room("12", create_content={"x": 1}).bootstrap()
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    foreign_pl = other.events[other.state_ids[("m.room.power_levels", "")]]
    auth_events = [room.events[a] for a in event["auth_events"] if room.events[a]["type"] != "m.room.power_levels"]
    if version != "12":
        # Same room ID text in v10/v11 test rooms, so make it differ explicitly.
        foreign_pl = {**foreign_pl, "room_id": "!other:a.test"}
    with pytest.raises(AuthError, match="another room"):
        check_event_auth(event, [*auth_events, foreign_pl], version, create_event=room.create)


def test_missing_create_in_state_rejected(version: str) -> None:
    room = public_room(version)
    event = room.event(ALICE, "m.room.topic", {"topic": "x"}, "")
    state = {k: v for k, v in room.state().items() if k != ("m.room.create", "")}
    with pytest.raises(AuthError, match="No m.room.create"):
        check_auth(event, state, version)
    if version == "12":
        # The create event is never an auth event in v12, so it must be supplied.
        with pytest.raises(AuthError, match="unknown"):
            check_event_auth(event, [room.events[a] for a in event["auth_events"]], version)


# ---------------------------------------------------------------------------
# m.federate
# ---------------------------------------------------------------------------


def test_unfederated_room_rejects_remote_senders(version: str) -> None:
    room = Room(version, create_content={"m.federate": False}).bootstrap("public")
    room.join("@local:a.test")
    err = room.refuse_member(BOB, "join")
    assert "other servers" in str(err)
    # Invites of remote users from a local sender are not covered by the rule.
    room.member(ALICE, "invite", BOB)


# ---------------------------------------------------------------------------
# Joins
# ---------------------------------------------------------------------------


def test_creator_first_join_only_directly_after_create(version: str) -> None:
    room = Room(version)
    room.join(ALICE)
    # Without join rules, nobody else can join (there is no join rule to satisfy).
    room.refuse_member(BOB, "join")


def test_non_creator_cannot_use_first_join_rule(version: str) -> None:
    room = Room(version)
    err = room.refuse_member(BOB, "join", prev=[room.create["event_id"]])
    assert "not invited" in str(err)


def test_v10_first_join_uses_creator_field() -> None:
    # In v10 the creator is content.creator, not necessarily the sender.
    room = Room("10", create_content={"creator": "@other:a.test"})
    room.refuse_member(ALICE, "join")
    room.member("@other:a.test", "join")


def test_v12_additional_creator_cannot_use_first_join_rule() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.refuse_member(BOB, "join")
    room.join(ALICE)


def test_join_must_be_by_the_joining_user(version: str) -> None:
    room = public_room(version)
    err = room.refuse_member(ALICE, "join", BOB)
    assert "behalf" in str(err)


def test_banned_user_cannot_join(version: str) -> None:
    room = public_room(version)
    room.join(BOB)
    room.member(ALICE, "ban", BOB)
    assert "banned" in str(room.refuse_member(BOB, "join"))


def test_public_join_and_profile_change(version: str) -> None:
    room = public_room(version)
    room.join(BOB)
    room.member(BOB, "join", displayname="Bob")


@pytest.mark.parametrize("rule", ["invite", "knock"])
def test_invite_and_knock_rooms_need_an_invite(version: str, rule: str) -> None:
    room = Room(version).bootstrap(rule)
    room.refuse_member(BOB, "join")
    room.member(ALICE, "invite", BOB)
    room.join(BOB)
    room.member(BOB, "join", displayname="already joined is fine")


@pytest.mark.parametrize("rule", ["private", "something_else"])
def test_unknown_or_private_join_rule_rejects(version: str, rule: str) -> None:
    room = Room(version).bootstrap(rule)
    room.refuse_member(BOB, "join")


@pytest.mark.parametrize("rule", ["restricted", "knock_restricted"])
def test_restricted_joins(version: str, rule: str) -> None:
    room = Room(version).bootstrap(rule, users={CAROL: 0, DAVE: 10}, invite=5)
    # Not invited and no authoriser.
    assert "authorised" in str(room.refuse_member(BOB, "join"))
    # Authoriser not joined.
    room.refuse_member(BOB, "join", join_authorised_via_users_server=DAVE)
    # Authoriser joined but below the invite level.
    room.member(ALICE, "invite", CAROL)
    room.join(CAROL)
    room.refuse_member(BOB, "join", join_authorised_via_users_server=CAROL)
    # A suitable authoriser.
    room.member(ALICE, "invite", DAVE)
    room.join(DAVE)
    room.member(BOB, "join", join_authorised_via_users_server=DAVE)
    # Invited users need no authoriser.
    room.member(ALICE, "invite", EVE)
    room.join(EVE)
    # The creator can authorise too (100, or infinite in v12).
    room.member("@frank:f.test", "join", join_authorised_via_users_server=ALICE)


def test_restricted_join_signature_check(version: str) -> None:
    room = Room(version).bootstrap("restricted")
    calls: list[str] = []

    def verifier(valid: bool):
        def verify(event: Any, server: str) -> bool:
            calls.append(server)
            return valid

        return verify

    event = room.event(
        BOB, "m.room.member", {"membership": "join", "join_authorised_via_users_server": ALICE}, BOB
    )
    with pytest.raises(AuthError, match="signed by the authorising"):
        room.check(event, verify_signature=verifier(False))
    room.check(event, verify_signature=verifier(True))
    # Once for the failed check, twice (auth events, current state) for the good one.
    assert calls == ["a.test", "a.test", "a.test"]
    bad = room.event(
        BOB, "m.room.member", {"membership": "join", "join_authorised_via_users_server": 7}, BOB
    )
    with pytest.raises(AuthError, match="signed by the authorising"):
        room.check(bad, verify_signature=verifier(True))


# ---------------------------------------------------------------------------
# Invites
# ---------------------------------------------------------------------------


def test_invites(version: str) -> None:
    room = Room(version).bootstrap("invite", users={BOB: 0}, invite=10)
    # Sender not joined.
    assert "not joined" in str(room.refuse_member(CAROL, "invite", DAVE))
    room.member(ALICE, "invite", BOB)
    room.join(BOB)
    # Below the invite level.
    assert "invite" in str(room.refuse_member(BOB, "invite", CAROL))
    room.member(ALICE, "invite", CAROL)
    # Re-inviting an invited user is fine; a joined one is not.
    room.member(ALICE, "invite", CAROL)
    assert "already joined" in str(room.refuse_member(ALICE, "invite", BOB))
    room.member(ALICE, "ban", DAVE)
    assert "banned" in str(room.refuse_member(ALICE, "invite", DAVE))


IDENTITY_KEY = signing_key_from_seed(b"\x07" * 32, "0")


def third_party_room(version: str) -> tuple[Room, dict]:
    room = Room(version).bootstrap("invite")
    public_key = encode_base64(get_verify_key(IDENTITY_KEY).encode())
    room.send(
        ALICE,
        "m.room.third_party_invite",
        {"display_name": "b...", "key_validity_url": "https://id/v", "public_key": public_key},
        "tok",
    )
    signed = sign_json({"mxid": BOB, "token": "tok"}, "id.test", IDENTITY_KEY)
    return room, signed


def test_third_party_invite_with_valid_signature(version: str) -> None:
    room, signed = third_party_room(version)
    room.member(ALICE, "invite", BOB, third_party_invite={"display_name": "b", "signed": signed})
    room.join(BOB)


def test_third_party_invite_with_public_keys_list_and_urlsafe_key(version: str) -> None:
    room = Room(version).bootstrap("invite")
    key = encode_base64(get_verify_key(IDENTITY_KEY).encode(), urlsafe=True)
    room.send(
        ALICE,
        "m.room.third_party_invite",
        {"display_name": "b", "public_key": "AAAA", "public_keys": [{"public_key": key}]},
        "tok",
    )
    signed = sign_json({"mxid": BOB, "token": "tok"}, "id.test", IDENTITY_KEY)
    room.member(ALICE, "invite", BOB, third_party_invite={"display_name": "b", "signed": signed})


def test_third_party_invite_does_not_require_joined_sender(version: str) -> None:
    # The spec's 3pid branch allows or rejects on its own; sender membership is not checked.
    room, signed = third_party_room(version)
    state = room.state()
    invite = room.event(ALICE, "m.room.member", {"membership": "invite", "third_party_invite": {"signed": signed}}, BOB)
    state[("m.room.member", ALICE)] = {**state[("m.room.member", ALICE)], "content": {"membership": "leave"}}
    check_auth(invite, state, version)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda tpi, signed: tpi.pop("signed"), "no signed block"),
        (lambda tpi, signed: signed.pop("token"), "mxid and token"),
        (lambda tpi, signed: signed.update(mxid=CAROL), "does not match"),
        (lambda tpi, signed: signed.update(token="other"), "No matching"),
        (lambda tpi, signed: signed.update(extra="tampered"), "not signed by the identity"),
        (lambda tpi, signed: signed.pop("signatures"), "not signed by the identity"),
    ],
)
def test_third_party_invite_failures(version: str, mutate: Any, message: str) -> None:
    room, signed = third_party_room(version)
    signed = copy.deepcopy(signed)
    tpi: dict[str, Any] = {"display_name": "b", "signed": signed}
    mutate(tpi, signed)
    err = room.refuse_member(ALICE, "invite", BOB, third_party_invite=tpi)
    assert message in str(err)


def test_third_party_invite_sender_must_match(version: str) -> None:
    room, signed = third_party_room(version)
    room.member(ALICE, "invite", CAROL)
    room.join(CAROL)
    err = room.refuse_member(CAROL, "invite", BOB, third_party_invite={"signed": signed})
    assert "did not send" in str(err)


def test_third_party_invite_of_banned_user(version: str) -> None:
    room, signed = third_party_room(version)
    room.member(ALICE, "ban", BOB)
    err = room.refuse_member(ALICE, "invite", BOB, third_party_invite={"signed": signed})
    assert "banned" in str(err)


def test_third_party_invite_event_needs_invite_level(version: str) -> None:
    room = Room(version).bootstrap("public", invite=50)
    room.join(BOB)
    room.refuse(BOB, "m.room.third_party_invite", {"display_name": "x", "public_key": "AAAA"}, "t")
    room.send(ALICE, "m.room.third_party_invite", {"display_name": "x", "public_key": "AAAA"}, "t")


# ---------------------------------------------------------------------------
# Leaves, kicks, bans, unbans
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("membership", ["join", "invite", "knock"])
def test_self_leave_allowed_from(version: str, membership: str) -> None:
    room = Room(version).bootstrap("knock")
    if membership == "join":
        room.member(ALICE, "invite", BOB)
        room.join(BOB)
    elif membership == "invite":
        room.member(ALICE, "invite", BOB)
    else:
        room.member(BOB, "knock")
    room.member(BOB, "leave")


def test_self_leave_rejected_when_not_in_room_or_banned(version: str) -> None:
    room = public_room(version)
    room.refuse_member(BOB, "leave")
    room.join(BOB)
    room.member(BOB, "leave")
    room.refuse_member(BOB, "leave")
    room.member(ALICE, "ban", BOB)
    room.refuse_member(BOB, "leave")


def test_kicks(version: str) -> None:
    room = public_room(version, users={BOB: 50, CAROL: 50, DAVE: 10})
    for user in (BOB, CAROL, DAVE, EVE):
        room.join(user)
    # Below the kick level.
    assert "kick" in str(room.refuse_member(DAVE, "leave", EVE))
    # Equal power levels cannot kick each other.
    room.refuse_member(BOB, "leave", CAROL)
    # Higher can kick lower.
    room.member(BOB, "leave", DAVE)
    # A user who is not joined cannot kick.
    assert "not joined" in str(room.refuse_member(DAVE, "leave", EVE))


def test_bans_and_unbans(version: str) -> None:
    room = public_room(version, users={BOB: 50, CAROL: 50}, kick=60)
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    room.refuse_member(DAVE, "ban", EVE)
    room.refuse_member(BOB, "ban", CAROL)
    room.member(BOB, "ban", EVE)
    room.member(BOB, "ban", DAVE)
    # Unban needs ban level and kick level; Bob has ban (50) but not kick (60).
    assert "kick" in str(room.refuse_member(BOB, "leave", DAVE))
    room.member(ALICE, "leave", DAVE)
    # Banned users cannot act.
    room.refuse_member(EVE, "ban", CAROL)
    # Not joined cannot ban.
    room.refuse_member("@zed:z.test", "ban", CAROL)


def test_unban_requires_ban_level(version: str) -> None:
    room = public_room(version, users={BOB: 60}, ban=70, kick=50)
    room.join(BOB)
    room.member(ALICE, "ban", CAROL)
    assert "unban" in str(room.refuse_member(BOB, "leave", CAROL))


# ---------------------------------------------------------------------------
# Knocks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["knock", "knock_restricted"])
def test_knocking(version: str, rule: str) -> None:
    room = Room(version).bootstrap(rule)
    room.member(BOB, "knock")
    room.member(BOB, "knock", reason="again")
    assert "behalf" in str(room.refuse_member(BOB, "knock", CAROL))
    room.member(ALICE, "invite", BOB)
    room.refuse_member(BOB, "knock")
    room.join(BOB)
    room.refuse_member(BOB, "knock")
    room.member(ALICE, "ban", CAROL)
    room.refuse_member(CAROL, "knock")
    room.member(ALICE, "leave", BOB)
    room.member(BOB, "knock")


@pytest.mark.parametrize("rule", ["public", "invite", "restricted", None])
def test_knock_needs_knock_join_rule(version: str, rule: str | None) -> None:
    room = Room(version).bootstrap(rule)
    assert "knocking" in str(room.refuse_member(BOB, "knock"))


def test_unknown_or_missing_membership(version: str) -> None:
    room = public_room(version)
    assert "Unknown membership" in str(room.refuse_member(BOB, "dance"))
    room.refuse(BOB, "m.room.member", {}, BOB)
    room.refuse(BOB, "m.room.member", {"membership": "join"}, None)


# ---------------------------------------------------------------------------
# Other events
# ---------------------------------------------------------------------------


def test_sender_must_be_joined(version: str) -> None:
    room = public_room(version)
    assert "not joined" in str(room.refuse(BOB, "m.room.message", {"body": "hi"}))
    room.join(BOB)
    room.send(BOB, "m.room.message", {"body": "hi"})
    room.member(BOB, "leave")
    room.refuse(BOB, "m.room.message", {"body": "hi"})


def test_required_power_level(version: str) -> None:
    room = public_room(version, users={BOB: 10}, events={"m.room.name": 20, "m.custom": 10})
    room.join(BOB)
    room.join(CAROL)
    assert "Insufficient" in str(room.refuse(BOB, "m.room.topic", {"topic": "t"}, ""))
    room.refuse(BOB, "m.room.name", {"name": "n"}, "")
    room.send(BOB, "m.custom", {})
    room.refuse(CAROL, "m.custom", {})
    room.send(CAROL, "m.room.message", {"body": "hi"})
    room.send(ALICE, "m.room.name", {"name": "n"}, "")


def test_state_keys_of_other_users(version: str) -> None:
    room = public_room(version, state_default=0)
    room.join(BOB)
    room.send(BOB, "m.custom.state", {}, BOB)
    err = room.refuse(BOB, "m.custom.state", {}, ALICE)
    assert "another user" in str(err)
    room.refuse(BOB, "m.custom.state", {}, "@")
    room.refuse(BOB, "m.custom.state", {}, BOB + "_suffix")
    room.send(BOB, "m.custom.state", {}, "plain")
    # Even the creator is bound by this rule.
    room.refuse(ALICE, "m.custom.state", {}, BOB)


def test_redaction_events_use_event_levels_not_redact_level(version: str) -> None:
    room = public_room(version, redact=100)
    room.join(BOB)
    message = room.send(ALICE, "m.room.message", {"body": "x"})
    # Allowed by auth even though Bob is below the redact level.
    room.send(BOB, "m.room.redaction", {}, redacts=message["event_id"])
    room2 = public_room(version, events={"m.room.redaction": 50})
    room2.join(BOB)
    room2.refuse(BOB, "m.room.redaction", {}, redacts=message["event_id"])


# ---------------------------------------------------------------------------
# m.room.power_levels
# ---------------------------------------------------------------------------


def pl_content(room: Room, **content: Any) -> dict[str, Any]:
    users = dict(content.pop("users", {}))
    if room.version != "12":
        users.setdefault(ALICE, 100)
    return {"users": users, **content}


@pytest.mark.parametrize(
    "bad",
    [
        {"ban": "50"},
        {"kick": True},
        {"users_default": None},
        {"redact": 1.5},
        {"events": {"m.room.name": "50"}},
        {"events": []},
        {"notifications": {"room": "50"}},
        {"users": {BOB: "50"}},
        {"users": {"not-a-user": 50}},
        {"users": []},
    ],
)
def test_power_levels_must_be_integers(version: str, bad: dict) -> None:
    room = public_room(version)
    event = room.event(ALICE, "m.room.power_levels", pl_content(room), "")
    # Patch after building: the builder itself refuses floats in any PDU.
    event["content"].update(copy.deepcopy(bad))
    with pytest.raises(AuthError, match=r"rule 1?[09]\.[1-3]\b"):
        check_auth(event, room.state(), version)


def test_first_power_levels_event_only_validated(version: str) -> None:
    room = Room(version)
    room.join(ALICE)
    room.send(ALICE, "m.room.power_levels", pl_content(room, ban=1000, users={BOB: 1000}), "")


def test_power_level_changes(version: str) -> None:
    room = public_room(version, users={BOB: 50, CAROL: 50, DAVE: 20}, state_default=50)
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    base = {BOB: 50, CAROL: 50, DAVE: 20}

    def bob_sets(**changes: Any) -> dict[str, Any]:
        content = pl_content(room, users=changes.pop("users", base), state_default=50)
        content.update(changes)
        return content

    # Raise a named level above own level.
    assert "above your own" in str(room.refuse(BOB, "m.room.power_levels", bob_sets(kick=60), ""))
    # Setting a named level to own level is fine.
    room.send(BOB, "m.room.power_levels", bob_sets(kick=50), "")
    # Events map: adding above own level.
    room.refuse(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 51}), "")
    room.send(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}), "")
    # Notifications map behaves the same.
    room.refuse(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}, notifications={"room": 60}), "")
    # Demoting a peer at the same level is refused, demoting self is fine.
    room.refuse(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}, users={**base, CAROL: 0}), "")
    # Promoting someone to own level is fine, above it is not.
    room.send(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}, users={**base, DAVE: 50}), "")
    base = {**base, DAVE: 50}
    room.refuse(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}, users={**base, EVE: 51}), "")
    room.send(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}, users={**base, BOB: 10}), "")
    # Bob is now 10: he can no longer send power levels at all.
    room.refuse(BOB, "m.room.power_levels", bob_sets(kick=50, events={"m.room.name": 50}, users={**base, BOB: 10}), "")


def test_changing_a_level_that_is_above_own(version: str) -> None:
    room = public_room(version, users={BOB: 50}, ban=75, events={"m.room.tombstone": 100})
    room.join(BOB)
    users = {BOB: 50}
    # Lowering a named level that is currently above the sender's.
    room.refuse(BOB, "m.room.power_levels", pl_content(room, users=users, ban=10, events={"m.room.tombstone": 100}), "")
    # Removing an events entry that is above the sender's level.
    room.refuse(BOB, "m.room.power_levels", pl_content(room, users=users, ban=75), "")
    # Removing a named level whose value is above the sender's.
    room.refuse(BOB, "m.room.power_levels", pl_content(room, users=users, events={"m.room.tombstone": 100}), "")
    # Leaving them untouched is fine.
    room.send(BOB, "m.room.power_levels", pl_content(room, users=users, ban=75, events={"m.room.tombstone": 100}), "")


@pytest.mark.parametrize("version", ["10", "11"])
def test_admin_can_be_removed_only_by_themselves(version: str) -> None:
    room = public_room(version, users={BOB: 100})
    room.join(BOB)
    room.refuse(BOB, "m.room.power_levels", {"users": {BOB: 100}}, "")
    room.send(BOB, "m.room.power_levels", {"users": {ALICE: 100}}, "")


# ---------------------------------------------------------------------------
# v12 creators
# ---------------------------------------------------------------------------


def test_v12_creators_not_allowed_in_users() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    room.join(ALICE)
    assert "creators" in str(room.refuse(ALICE, "m.room.power_levels", {"users": {ALICE: 100}}, ""))
    room.refuse(ALICE, "m.room.power_levels", {"users": {BOB: 100}}, "")
    room.send(ALICE, "m.room.power_levels", {"users": {CAROL: 100}}, "")


def test_v12_creators_have_infinite_power() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]}).bootstrap(
        "public", users={CAROL: 100}, events={"m.room.tombstone": 150}, ban=200
    )
    state = room.state()
    assert get_user_power_level(ALICE, state, "12") == CREATOR_POWER_LEVEL
    assert get_user_power_level(BOB, state, "12") == CREATOR_POWER_LEVEL
    assert get_user_power_level(CAROL, state, "12") == 100
    for user in (BOB, CAROL, DAVE):
        room.join(user)
    # An admin at 100 cannot kick or ban a creator, nor act above 100.
    room.refuse_member(CAROL, "leave", BOB)
    room.refuse_member(CAROL, "ban", ALICE)
    room.refuse(CAROL, "m.room.tombstone", {}, "")
    # The additional creator can do everything, including setting any level.
    room.send(BOB, "m.room.tombstone", {}, "")
    room.member(BOB, "ban", DAVE)
    room.send(BOB, "m.room.power_levels", {"users": {CAROL: 10**15}, "ban": 10**15}, "")
    # Creators cannot kick or ban each other (infinity is not below infinity).
    room.refuse_member(ALICE, "leave", BOB)
    room.refuse_member(BOB, "ban", ALICE)
    # But may demote an admin who ranks above every integer level.
    room.send(ALICE, "m.room.power_levels", {"users": {}}, "")


def test_v12_no_power_levels_event() -> None:
    room = Room("12", create_content={"additional_creators": [BOB]})
    state = room.state()
    assert get_user_power_level(BOB, state, "12") == CREATOR_POWER_LEVEL
    assert get_user_power_level(CAROL, state, "12") == 0


def test_power_level_helpers_without_power_levels_event() -> None:
    room = Room("10", create_content={"creator": "@other:a.test"})
    state = room.state()
    assert get_user_power_level("@other:a.test", state, "10") == 100
    assert get_user_power_level(ALICE, state, "10") == 0
    room11 = Room("11")
    assert get_user_power_level(ALICE, room11.state(), "11") == 100
    assert get_named_level(state, "ban") == 50
    assert get_named_level(state, "invite") == 0
    assert get_required_power_level(state, "m.room.topic", "") == 50
    assert get_required_power_level(state, "m.room.message", None) == 0


def test_power_level_helpers_with_event() -> None:
    state = {
        ("m.room.create", ""): {"type": "m.room.create", "sender": ALICE, "content": {}},
        ("m.room.power_levels", ""): {
            "type": "m.room.power_levels",
            "content": {
                "users": {BOB: 42},
                "users_default": 5,
                "events": {"m.room.topic": 7, "m.room.message": 3},
                "state_default": 60,
                "events_default": 1,
                "kick": 12,
            },
        },
    }
    assert get_user_power_level(BOB, state, "11") == 42
    assert get_user_power_level(ALICE, state, "11") == 5
    assert get_named_level(state, "kick") == 12
    assert get_named_level(state, "redact") == 50
    assert get_required_power_level(state, "m.room.topic", "") == 7
    assert get_required_power_level(state, "m.room.message", None) == 3
    assert get_required_power_level(state, "m.other", "") == 60
    assert get_required_power_level(state, "m.other", None) == 1


def test_auth_error_names_rule_in_version_numbering() -> None:
    for version, rule in (("11", "5"), ("12", "6")):
        room = public_room(version)
        err = room.refuse(BOB, "m.room.message", {"body": "x"})
        assert err.rule == rule
        assert f"(auth rule {rule})" in str(err)
