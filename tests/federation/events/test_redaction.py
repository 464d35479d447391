"""The redaction algorithm of each supported room version."""

from __future__ import annotations

import pytest

from federation.events import (
    get_room_version,
    redact_content,
    redact_event,
    redaction_should_apply,
    redaction_target,
)

TOP_LEVEL = {
    "event_id": "$e",
    "type": "m.room.message",
    "room_id": "!r:a.test",
    "sender": "@u:a.test",
    "state_key": "",
    "content": {"body": "secret"},
    "hashes": {"sha256": "abc"},
    "signatures": {"a.test": {"ed25519:1": "sig"}},
    "depth": 5,
    "prev_events": ["$p"],
    "auth_events": ["$a"],
    "origin_server_ts": 1,
    "origin": "a.test",
    "membership": "join",
    "prev_state": [],
    "unsigned": {"age": 1},
    "redacts": "$x",
    "custom": True,
}

ALWAYS_KEPT = {
    "event_id",
    "type",
    "room_id",
    "sender",
    "state_key",
    "content",
    "hashes",
    "signatures",
    "depth",
    "prev_events",
    "auth_events",
    "origin_server_ts",
}


def test_top_level_keys_v10() -> None:
    redacted = redact_event(TOP_LEVEL, "10")
    assert set(redacted) == ALWAYS_KEPT | {"origin", "membership", "prev_state"}
    assert redacted["content"] == {}


@pytest.mark.parametrize("version", ["11", "12"])
def test_top_level_keys_v11_v12(version: str) -> None:
    redacted = redact_event(TOP_LEVEL, version)
    assert set(redacted) == ALWAYS_KEPT
    assert redacted["signatures"] == TOP_LEVEL["signatures"]


def test_redact_event_does_not_mutate_and_deep_copies() -> None:
    event = {"type": "m.room.power_levels", "content": {"users": {"@a:b": 100}, "x": 1}}
    redacted = redact_event(event, "11")
    redacted["content"]["users"]["@a:b"] = 0
    assert event["content"] == {"users": {"@a:b": 100}, "x": 1}


def test_missing_content_becomes_empty() -> None:
    assert redact_event({"type": "m.room.member"}, "11")["content"] == {}


MEMBER = {
    "membership": "join",
    "displayname": "Alice",
    "avatar_url": "mxc://x/y",
    "join_authorised_via_users_server": "@b:b.test",
    "reason": "hi",
    "third_party_invite": {"display_name": "a@b", "signed": {"mxid": "@a:b", "token": "t"}},
}
POWER_LEVELS = {
    "ban": 50,
    "events": {"m.room.name": 100},
    "events_default": 0,
    "invite": 0,
    "kick": 50,
    "notifications": {"room": 50},
    "redact": 50,
    "state_default": 50,
    "users": {"@a:b": 100},
    "users_default": 0,
}


@pytest.mark.parametrize(
    ("event_type", "content", "v10", "v11"),
    [
        (
            "m.room.member",
            MEMBER,
            {"membership": "join", "join_authorised_via_users_server": "@b:b.test"},
            {
                "membership": "join",
                "join_authorised_via_users_server": "@b:b.test",
                "third_party_invite": {"signed": {"mxid": "@a:b", "token": "t"}},
            },
        ),
        (
            "m.room.create",
            {"creator": "@a:b", "room_version": "10", "m.federate": False, "type": "m.space"},
            {"creator": "@a:b"},
            {"creator": "@a:b", "room_version": "10", "m.federate": False, "type": "m.space"},
        ),
        (
            "m.room.join_rules",
            {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1},
            {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
            {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
        ),
        (
            "m.room.power_levels",
            POWER_LEVELS,
            {k: v for k, v in POWER_LEVELS.items() if k not in ("invite", "notifications")},
            {k: v for k, v in POWER_LEVELS.items() if k != "notifications"},
        ),
        (
            "m.room.history_visibility",
            {"history_visibility": "shared", "x": 1},
            {"history_visibility": "shared"},
            {"history_visibility": "shared"},
        ),
        ("m.room.redaction", {"redacts": "$x", "reason": "spam"}, {}, {"redacts": "$x"}),
        ("m.room.message", {"body": "hello", "msgtype": "m.text"}, {}, {}),
        ("m.room.topic", {"topic": "t"}, {}, {}),
        ("m.room.aliases", {"aliases": ["#a:b"]}, {}, {}),
        ("m.room.guest_access", {"guest_access": "can_join"}, {}, {}),
    ],
)
def test_content_per_event_type(event_type: str, content: dict, v10: dict, v11: dict) -> None:
    assert redact_content(event_type, content, "10") == v10
    assert redact_content(event_type, content, "11") == v11
    # v12 changes nothing in the redaction algorithm.
    assert redact_content(event_type, content, "12") == v11


def test_v11_third_party_invite_without_signed() -> None:
    content = {"membership": "invite", "third_party_invite": {"display_name": "x"}}
    assert redact_content("m.room.member", content, "11") == {
        "membership": "invite",
        "third_party_invite": {},
    }
    assert redact_content("m.room.member", {"membership": "invite", "third_party_invite": 5}, "11") == {
        "membership": "invite"
    }


def test_redaction_target_per_version() -> None:
    v10 = {"type": "m.room.redaction", "redacts": "$old", "content": {"redacts": "$new"}}
    assert redaction_target(v10, "10") == "$old"
    assert redaction_target(v10, "11") == "$new"
    assert redaction_target({"type": "m.room.message", "content": {"redacts": "$x"}}, "11") is None


def test_redaction_should_apply() -> None:
    state = {
        ("m.room.create", ""): {"type": "m.room.create", "sender": "@a:a.test", "content": {}},
        ("m.room.power_levels", ""): {
            "type": "m.room.power_levels",
            "content": {"users": {"@mod:b.test": 50}, "redact": 50},
        },
    }
    target = {"sender": "@u:c.test"}
    assert redaction_should_apply({"sender": "@mod:b.test"}, target, state, "11")
    assert not redaction_should_apply({"sender": "@nobody:b.test"}, target, state, "11")
    assert redaction_should_apply({"sender": "@other:c.test"}, target, state, "11")
    assert get_room_version("11").redacts_in_content
