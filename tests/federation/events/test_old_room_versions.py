"""What differs in room versions 1 to 9: event IDs and references, stringy
power levels, the aliases and redaction auth rules, redaction, knocking and
state resolution v1. (The differential test against Synapse covers the same
ground on random DAGs; these name each rule.)"""

from __future__ import annotations

import pytest

from federation.events import (
    EventFormatError,
    auth_event_ids,
    compute_event_id,
    compute_reference_hash,
    content_hash_matches,
    encode_base64,
    get_room_version,
    parse_power_level,
    pdu_json,
    prev_event_ids,
    redact_event,
    resolve_state,
    servers_required_to_sign,
    validate_pdu,
    verify_event_signatures,
)
from federation.events.signing import get_verify_key, key_id_of

from .roomkit import Room, key_for

ALICE, BOB, CAROL = "@alice:a.test", "@bob:b.test", "@carol:c.test"


@pytest.mark.parametrize("version", ["1", "2"])
def test_v1_v2_event_ids_and_references(version: str) -> None:
    room = Room(version).bootstrap()
    topic = room.send(ALICE, "m.room.topic", {"topic": "t"}, "")
    # The sending server names the event; the ID is part of what is hashed and signed.
    assert topic["event_id"].endswith(":a.test")
    assert pdu_json(topic, version)["event_id"] == topic["event_id"]
    assert compute_event_id(topic, version) == topic["event_id"]
    assert content_hash_matches(topic, version)
    assert not content_hash_matches({**topic, "event_id": "$other:a.test"}, version)
    # prev_events/auth_events are [event_id, {"sha256": reference hash}] pairs.
    prev_id, hashes = topic["prev_events"][0]
    assert hashes == {"sha256": encode_base64(compute_reference_hash(room.events[prev_id], version))}
    assert prev_event_ids(topic) == [prev_id]
    assert set(auth_event_ids(topic)) <= set(room.events)
    keys = {"a.test": {key_id_of(key_for("a.test")): get_verify_key(key_for("a.test"))}}
    verify_event_signatures(topic, version, keys)
    # A bare ID list, or no event_id, is not this version's format.
    with pytest.raises(EventFormatError):
        validate_pdu({**topic, "prev_events": [prev_id]}, version)
    with pytest.raises(EventFormatError):
        validate_pdu({k: v for k, v in topic.items() if k != "event_id"}, version)
    with pytest.raises(ValueError):
        compute_event_id({**topic, "event_id": "no-sigil"}, version)


def test_event_id_server_must_sign_in_v1() -> None:
    room = Room("1").bootstrap()
    event = room.event(BOB, "m.room.member", {"membership": "join"}, BOB)
    renamed = {**event, "event_id": "$x:c.test"}
    assert servers_required_to_sign(renamed, "1") == {"b.test", "c.test"}
    assert servers_required_to_sign(event, "3") == {"b.test"}


def test_v3_uses_standard_base64_and_v4_url_safe() -> None:
    v3 = Room("3").bootstrap()
    v4 = Room("4").bootstrap()
    ids3 = [e for e in v3.events if e != v3.create["event_id"]]
    assert all(e.startswith("$") and ":" not in e and len(e) == 44 for e in ids3)
    assert any(("+" in e or "/" in e) for e in ids3) or all("-" not in e and "_" not in e for e in ids3)
    assert all("+" not in e and "/" not in e for e in v4.events)
    with pytest.raises(EventFormatError):
        validate_pdu({**v3.create, "prev_events": [["$a:b", {}]]}, "3")


@pytest.mark.parametrize(
    ("value", "level"),
    [(50, 50), ("50", 50), (" +100 ", 100), ("-007", -7), (50.9, 50), (-1.5, -1),
     ("5.0", None), ("1_000", None), ("", None), ("0x10", None), (True, None), (None, None),
     (float("inf"), None), ({}, None)],
)
def test_power_level_values(value: object, level: int | None) -> None:
    assert parse_power_level(value) == level


def test_stringy_power_levels_before_v10_only() -> None:
    room = Room("9").bootstrap(users={BOB: "50"})
    room.join(BOB)
    # Bob's "50" is 50: enough to set the topic (state_default 50), not the power levels (100).
    room.send(BOB, "m.room.topic", {"topic": "mine"}, "", )
    assert "auth rule" in str(room.refuse(BOB, "m.room.power_levels", {"users": {BOB: 100}}, ""))
    room.send(ALICE, "m.room.power_levels", {"users": {ALICE: " 100 ", BOB: "00050"}}, "")
    assert "must map valid user IDs" in str(
        room.refuse(ALICE, "m.room.power_levels", {"users": {ALICE: 100, BOB: "fifty"}}, "")
    )
    v10 = Room("10").bootstrap()
    v10.refuse(ALICE, "m.room.power_levels", {"users": {ALICE: 100, BOB: "50"}}, "")


@pytest.mark.parametrize("version", ["1", "5"])
def test_aliases_rule_until_v6(version: str) -> None:
    room = Room(version).bootstrap()
    # Any server may set the aliases keyed by its own name, without being in the room.
    room.send(BOB, "m.room.aliases", {"aliases": ["#x:b.test"]}, "b.test")
    room.refuse(BOB, "m.room.aliases", {"aliases": ["#x:a.test"]}, "a.test")
    room.refuse(BOB, "m.room.aliases", {"aliases": []}, "")
    v6 = Room("6").bootstrap()
    v6.refuse(BOB, "m.room.aliases", {"aliases": ["#x:b.test"]}, "b.test")


def test_notifications_levels_checked_from_v6() -> None:
    for version, allowed in (("5", True), ("6", False)):
        room = Room(version).bootstrap(users={BOB: 50}, notifications={"room": 100})
        room.join(BOB)
        room.send(ALICE, "m.room.power_levels", {"users": {ALICE: 100, BOB: 50}, "notifications": {"room": 100}, "events": {"m.room.power_levels": 50}}, "")
        content = {"users": {ALICE: 100, BOB: 50}, "notifications": {"room": 0}, "events": {"m.room.power_levels": 50}}
        if allowed:
            room.send(BOB, "m.room.power_levels", content, "")
        else:
            room.refuse(BOB, "m.room.power_levels", content, "")


def test_redaction_auth_rule_in_v1_v2_only() -> None:
    for version in ("1", "2"):
        room = Room(version).bootstrap()
        room.join(BOB)
        message = room.send(ALICE, "m.room.message", {"body": "x"})
        own = room.send(BOB, "m.room.message", {"body": "y"})
        room.send(BOB, "m.room.redaction", {}, redacts=own["event_id"])
        err = room.refuse(BOB, "m.room.redaction", {}, redacts=message["event_id"])
        assert err.rule == "11.3"
    room = Room("3").bootstrap()
    room.join(BOB)
    message = room.send(ALICE, "m.room.message", {"body": "x"})
    room.send(BOB, "m.room.redaction", {}, redacts=message["event_id"])  # applied or not later


def test_knocking_from_v7_and_restricted_from_v8() -> None:
    for version in ("6", "7"):
        room = Room(version).bootstrap(join_rule="knock")
        if version == "6":
            room.refuse_member(BOB, "knock")
        else:
            room.member(BOB, "knock")
            room.member(BOB, "leave")
    v7 = Room("7").bootstrap(join_rule="restricted")
    v7.refuse_member(BOB, "join", join_authorised_via_users_server=ALICE)
    v8 = Room("8").bootstrap(join_rule="restricted")
    v8.member(BOB, "join", join_authorised_via_users_server=ALICE)


def test_redaction_keys_by_version() -> None:
    member = {"type": "m.room.member", "content": {"membership": "join", "join_authorised_via_users_server": ALICE}}
    rules = {"type": "m.room.join_rules", "content": {"join_rule": "restricted", "allow": []}}
    aliases = {"type": "m.room.aliases", "content": {"aliases": ["#a:a.test"]}}
    assert redact_event(aliases, "5")["content"] == {"aliases": ["#a:a.test"]}
    assert redact_event(aliases, "6")["content"] == {}
    assert redact_event(rules, "7")["content"] == {"join_rule": "restricted"}
    assert redact_event(rules, "8")["content"] == {"join_rule": "restricted", "allow": []}
    assert redact_event(member, "8")["content"] == {"membership": "join"}
    assert "join_authorised_via_users_server" in redact_event(member, "9")["content"]


def test_state_res_v1_keeps_keys_only_one_side_has_and_prefers_depth() -> None:
    room = Room("1").bootstrap()
    base = room.last
    a = room.send(ALICE, "m.room.topic", {"topic": "a"}, "", prev=base)
    b1 = room.send(ALICE, "m.room.name", {"name": "n"}, "", prev=base)
    b2 = room.send(ALICE, "m.room.topic", {"topic": "b"}, "", prev=[b1["event_id"]])
    base_state = {k: v for k, v in room.state_ids.items() if k not in {("m.room.topic", ""), ("m.room.name", "")}}
    left = {**base_state, ("m.room.topic", ""): a["event_id"]}
    right = {**base_state, ("m.room.name", ""): b1["event_id"], ("m.room.topic", ""): b2["event_id"]}
    resolved = resolve_state("1", [left, right], room.events)
    assert resolved[("m.room.name", "")] == b1["event_id"]  # not a conflict in v1
    assert resolved[("m.room.topic", "")] == b2["event_id"]  # the deeper one
    # v2 treats the name as conflicted but keeps it (it passes auth).
    assert get_room_version("2").state_resolution.value == "2"
