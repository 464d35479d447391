"""Event IDs, content hashes, event signatures, v12 room IDs and the PDU format."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from federation.events import (
    DEFAULT_ROOM_VERSION,
    SUPPORTED_ROOM_VERSIONS,
    EventFormatError,
    EventIdFormat,
    SignatureError,
    UnsupportedRoomVersionError,
    build_event,
    compute_event_id,
    compute_reference_hash,
    content_hash_matches,
    create_event_id_from_room_id,
    decode_base64,
    get_room_version,
    get_verify_key,
    key_id_of,
    pdu_json,
    redact_event,
    room_id_for_new_room,
    room_id_from_create_event_id,
    servers_required_to_sign,
    sign_event,
    validate_pdu,
    verify_event_signatures,
)
from federation.events.room_versions import StateResolutionVersion

from .roomkit import key_for

VERSIONS = ["10", "11", "12"]


def make(version: str, **overrides):
    kwargs = dict(
        room_id="!room:a.test",
        sender="@alice:a.test",
        event_type="m.room.message",
        content={"body": "hello", "msgtype": "m.text"},
        prev_events=["$prev"],
        auth_events=["$auth"],
        depth=3,
        origin_server_ts=1234,
        signing_key=key_for("a.test"),
    )
    kwargs.update(overrides)
    return build_event(version, **kwargs)


def keys_for(*servers: str):
    return {s: {key_id_of(key_for(s)): get_verify_key(key_for(s))} for s in servers}


def test_room_versions_table() -> None:
    assert DEFAULT_ROOM_VERSION == "12"
    assert set(SUPPORTED_ROOM_VERSIONS) == {str(n) for n in range(1, 13)}
    v10, v11, v12 = (get_room_version(v) for v in VERSIONS)
    v1, v2, v3, v4, v5, v6, v7, v8, v9 = (get_room_version(str(n)) for n in range(1, 10))
    assert v1.state_resolution is StateResolutionVersion.V1
    assert v2.state_resolution is v9.state_resolution is StateResolutionVersion.V2
    assert v1.event_id_in_pdu and v2.event_id_in_pdu and not v3.event_id_in_pdu
    assert v3.event_id_format is EventIdFormat.REFERENCE_HASH
    assert v4.event_id_format is EventIdFormat.REFERENCE_HASH_URLSAFE
    assert v2.redaction_auth_rule and not v3.redaction_auth_rule
    assert not v4.enforce_key_validity and v5.enforce_key_validity
    assert v5.special_case_aliases_auth and not v6.special_case_aliases_auth
    assert not v5.strict_canonical_json and v6.strict_canonical_json
    assert not v5.limit_notifications_power_levels and v6.limit_notifications_power_levels
    assert not v6.knock_join_rule and v7.knock_join_rule and not v7.restricted_join_rule
    assert v8.restricted_join_rule and not v8.redaction_keeps_join_authorised_via
    assert v9.redaction_keeps_join_authorised_via and not v9.integer_power_levels
    assert v10.integer_power_levels and v10.knock_restricted_join_rule
    assert not v9.knock_restricted_join_rule
    assert v10.state_resolution is v11.state_resolution is StateResolutionVersion.V2
    assert v12.state_resolution is StateResolutionVersion.V2_1
    assert v10.create_requires_creator_field and not v11.create_requires_creator_field
    assert v12.creators_have_infinite_power and not v11.creators_have_infinite_power
    assert v12.room_id_is_create_event_id and not v12.create_event_in_auth_events
    assert get_room_version(v11) is v11
    for bad in ("0", "13", "", None, 12, "1.0"):
        with pytest.raises(UnsupportedRoomVersionError):
            get_room_version(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", VERSIONS)
def test_built_event_is_consistent(version: str) -> None:
    event = make(version)
    validate_pdu(event, version)
    assert event["event_id"] == compute_event_id(event, version)
    assert event["event_id"].startswith("$") and len(event["event_id"]) == 44
    assert "+" not in event["event_id"] and "/" not in event["event_id"]
    assert content_hash_matches(event)
    verify_event_signatures(event, version, keys_for("a.test"))
    assert "event_id" not in pdu_json(event)


@pytest.mark.parametrize("version", VERSIONS)
def test_event_id_ignores_unsigned_signatures_and_redactable_content(version: str) -> None:
    event = make(version)
    variant = copy.deepcopy(event)
    variant["unsigned"] = {"age": 5}
    variant["signatures"]["b.test"] = {"ed25519:x": "sig"}
    del variant["event_id"]
    assert compute_event_id(variant, version) == event["event_id"]
    # The content is covered via the content hash only, so the redacted copy
    # has the same ID while an edited copy with a recomputed hash would not.
    redacted = redact_event(event, version)
    assert compute_event_id(redacted, version) == event["event_id"]
    assert compute_reference_hash(redacted, version) == compute_reference_hash(event, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_tampering(version: str) -> None:
    event = make(version)
    tampered = copy.deepcopy(event)
    tampered["content"]["body"] = "goodbye"
    # Content edits break the hash but not the signature (which covers the redacted form).
    assert not content_hash_matches(tampered)
    verify_event_signatures(tampered, version, keys_for("a.test"))
    # Edits to protected fields break the signature.
    tampered["depth"] = 4
    with pytest.raises(SignatureError):
        verify_event_signatures(tampered, version, keys_for("a.test"))
    with pytest.raises(SignatureError):
        verify_event_signatures(event, version, keys_for("b.test"))
    assert not content_hash_matches({**event, "hashes": {}})
    assert not content_hash_matches({**event, "hashes": {"sha256": "!!"}})


@pytest.mark.parametrize("version", VERSIONS)
def test_redacted_copy_still_verifies(version: str) -> None:
    event = make(version)
    redacted = redact_event(event, version)
    verify_event_signatures(redacted, version, keys_for("a.test"))
    assert not content_hash_matches(redacted)


def test_origin_is_signed_only_before_v11() -> None:
    for version, breaks in (("10", True), ("11", False), ("12", False)):
        event = make(version)
        event["origin"] = "a.test"
        signed = sign_event(event, version, "a.test", key_for("a.test"))
        altered = {**signed, "origin": "evil.test"}
        if breaks:
            with pytest.raises(SignatureError):
                verify_event_signatures(altered, version, keys_for("a.test"))
        else:
            verify_event_signatures(altered, version, keys_for("a.test"))


def test_cosigning_and_required_servers() -> None:
    join = make(
        "11",
        event_type="m.room.member",
        sender="@bob:b.test",
        state_key="@bob:b.test",
        content={"membership": "join", "join_authorised_via_users_server": "@alice:a.test"},
        signing_key=key_for("b.test"),
    )
    assert servers_required_to_sign(join, "11") == {"a.test", "b.test"}
    with pytest.raises(SignatureError):
        verify_event_signatures(join, "11", keys_for("a.test", "b.test"))
    cosigned = sign_event(join, "11", "a.test", key_for("a.test"))
    verify_event_signatures(cosigned, "11", keys_for("a.test", "b.test"))
    assert cosigned["hashes"] == join["hashes"]
    third_party = {
        "type": "m.room.member",
        "sender": "@alice:a.test",
        "state_key": "@bob:b.test",
        "content": {"membership": "invite", "third_party_invite": {"signed": {}}},
    }
    assert servers_required_to_sign(third_party, "11") == set()


def test_v10_redacts_top_level_v11_in_content() -> None:
    v10 = make("10", event_type="m.room.redaction", content={}, redacts="$target")
    assert v10["redacts"] == "$target" and "redacts" not in v10["content"]
    v11 = make("11", event_type="m.room.redaction", content={"reason": "x"}, redacts="$target")
    assert "redacts" not in v11 and v11["content"] == {"reason": "x", "redacts": "$target"}


def test_v12_create_event_and_room_id() -> None:
    create = make(
        "12",
        room_id=None,
        event_type="m.room.create",
        state_key="",
        content={"room_version": "12"},
        prev_events=[],
        auth_events=[],
        depth=1,
    )
    assert "room_id" not in create
    room_id = room_id_for_new_room(create, "12")
    assert room_id == "!" + create["event_id"][1:]
    assert room_id_from_create_event_id(create["event_id"]) == room_id
    assert create_event_id_from_room_id(room_id) == create["event_id"]
    assert len(decode_base64(room_id[1:])) == 32
    with pytest.raises(EventFormatError):
        make("12", event_type="m.room.create", state_key="", content={}, prev_events=[])
    with pytest.raises(EventFormatError):
        make("11", room_id=None)
    with pytest.raises(ValueError):
        room_id_from_create_event_id("!x")
    # Pre-v12 room IDs are simply the create event's room_id.
    v11_create = make("11", event_type="m.room.create", state_key="", content={}, prev_events=[])
    assert room_id_for_new_room(v11_create, "11") == "!room:a.test"


def test_unsigned_build_still_hashes() -> None:
    event = make("11", signing_key=None)
    assert event["signatures"] == {}
    assert content_hash_matches(event)


@pytest.mark.parametrize(
    ("change", "too_large"),
    [
        (lambda e: e["content"].update(body="x" * 70000), True),
        (lambda e: e.update(type="t" * 256), True),
        (lambda e: e.update(state_key="é" * 128), True),
        (lambda e: e.update(sender="@" + "a" * 250 + ":a.test"), True),
        (lambda e: e.update(room_id="!" + "r" * 250 + ":a.test"), True),
        (lambda e: e.update(event_id="$" + "e" * 255), True),
        (lambda e: e.pop("depth"), False),
        (lambda e: e.pop("hashes"), False),
        (lambda e: e.pop("room_id"), False),
        (lambda e: e.pop("prev_events"), False),
        (lambda e: e.update(depth=-1), False),
        (lambda e: e.update(depth=True), False),
        (lambda e: e.update(origin_server_ts="now"), False),
        (lambda e: e.update(content=[]), False),
        (lambda e: e.update(state_key=5), False),
        (lambda e: e.update(sender="alice"), False),
        (lambda e: e.update(room_id="room"), False),
        (lambda e: e["content"].update(value=1.5), False),
        (lambda e: e["content"].update(value=2**53), False),
        (lambda e: e.update(prev_events=[f"$p{i}" for i in range(21)]), False),
        (lambda e: e.update(auth_events=[f"$a{i}" for i in range(11)]), False),
        (lambda e: e.update(auth_events=[5]), False),
        (lambda e: e.update(hashes={"sha256": 5}), False),
    ],
)
def test_validate_pdu_rejects(change, too_large: bool) -> None:
    event = make("11")
    change(event)
    with pytest.raises(EventFormatError) as info:
        validate_pdu(event, "11")
    assert info.value.too_large is too_large


def test_validate_pdu_accepts_limits() -> None:
    event = make("11")
    event["type"] = "t" * 255
    event["state_key"] = "é" * 127
    validate_pdu(event, "11")
    assert validate_pdu(make("12"), "12") is None


@pytest.mark.parametrize("version", [str(n) for n in range(1, 13)])
@pytest.mark.parametrize("content", [
    {"body": "hello", "msgtype": "m.text", "n": 2**53 - 1, "nested": {"list": [1, "two", None, True, {"x": -3}]}},
    {"body": "a big number", "n": 2**60},  # not plain: canonical JSON's slow form (an error from v6)
    {"body": "ünïcødé \u2028 \U0001f600", "empty": {}, "none": None},
])
def test_build_walks_once_and_builds_the_same_event(
    version: str, content: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder finds a new event plain once and then encodes it without a walk per
    encoding: the event it builds (content hash, signature, ID, the size checked) is
    the one the walking encoders give, and what those refuse it refuses."""
    from federation.events import builder
    from federation.events.canonical import CanonicalJSONError

    kwargs: dict[str, Any] = {"content": content, "prev_events": ["$prev:a.test"], "auth_events": ["$auth:a.test"]}
    if get_room_version(version).event_id_in_pdu:
        kwargs |= {"event_id": "$fixed:a.test", "reference_hashes": lambda _: "A" * 43}
    outcomes = []
    for plain_check in (builder.is_plain_event_json, lambda value: False):
        monkeypatch.setattr(builder, "is_plain_event_json", plain_check)
        try:
            outcomes.append(make(version, **kwargs))
        except (EventFormatError, CanonicalJSONError) as e:
            outcomes.append(type(e))
    assert outcomes[0] == outcomes[1]
