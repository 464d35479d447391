"""The pure parts of the space walk: the spec's child order and the cleaning of
other servers' summaries."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.hierarchy import clean_summary, sorted_children


def _child(room_id: str, ts: int, **content: Any) -> dict[str, Any]:
    return {"type": "m.space.child", "state_key": room_id, "origin_server_ts": ts,
            "sender": "@a:example.org", "content": {"via": ["example.org"], **content}}


def test_children_in_the_spec_order() -> None:
    # The spec's own example ("Ordering of children within a space").
    events = [
        _child("!b:example.org", 1640341000000, order=" "),
        _child("!a:example.org", 1640141000000, order="aaaa"),
        _child("!c:example.org", 1640841000000, order="first"),
        _child("!e:example.org", 1640641000000),
        _child("!d:example.org", 1640741000000),
    ]
    assert [c.room_id for c in sorted_children(events)] == [
        "!b:example.org", "!a:example.org", "!c:example.org", "!e:example.org", "!d:example.org",
    ]
    # Equal order or timestamps fall back to the timestamp, then the room ID; an invalid
    # order (too long, outside \x20-\x7E, not a string) counts as none.
    tied = [
        _child("!z:x", 5, order="same"), _child("!y:x", 5, order="same"), _child("!x:x", 1, order="same"),
        _child("!w:x", 3, order="x" * 51), _child("!v:x", 2, order="\u00e9"), _child("!u:x", 4, order=7),
    ]
    assert [c.room_id for c in sorted_children(tied)] == ["!x:x", "!y:x", "!z:x", "!v:x", "!w:x", "!u:x"]


def test_links_without_via_are_not_children() -> None:
    events = [
        {"type": "m.space.child", "state_key": "!a:x", "origin_server_ts": 1, "content": {}},
        {"type": "m.space.child", "state_key": "!b:x", "origin_server_ts": 1, "content": {"via": []}},
        {"type": "m.space.child", "state_key": "!c:x", "origin_server_ts": 1, "content": {"via": [1]}},
        {"type": "m.space.child", "state_key": "not a room", "origin_server_ts": 1, "content": {"via": ["x"]}},
        _child("!d:x", 1, suggested=True),
    ]
    children = sorted_children(events)
    assert [(c.room_id, c.suggested, c.via) for c in children] == [("!d:x", True, ("example.org",))]


def test_remote_summaries_are_cleaned() -> None:
    raw = {
        "room_id": "!r:x", "num_joined_members": 3, "world_readable": False, "guest_can_join": True,
        "name": "Room", "avatar_url": "https://not-mxc", "canonical_alias": "#a:x", "room_type": "m.space",
        "join_rule": "restricted", "allowed_room_ids": ["!ok:x", 5, "nope"], "room_version": "11",
        "encryption": "m.megolm.v1.aes-sha2", "extra": "dropped",
        "children_state": [
            _child("!c:x", 9), {"type": "m.room.name", "state_key": "!n:x", "content": {}},
            {"type": "m.space.child", "state_key": "!d:x", "content": {"via": ["x"]}},  # no timestamp
        ],
    }
    summary = clean_summary(raw)
    assert summary is not None
    assert summary.entry == {
        "room_id": "!r:x", "num_joined_members": 3, "world_readable": False, "guest_can_join": True,
        "name": "Room", "canonical_alias": "#a:x", "room_type": "m.space", "join_rule": "restricted",
        "allowed_room_ids": ["!ok:x"], "room_version": "11", "encryption": "m.megolm.v1.aes-sha2",
    }
    assert [c["state_key"] for c in summary.children_state] == ["!c:x"]
    assert summary.is_space and summary.allowed_room_ids == ["!ok:x"]
    broken_answers: list[Any] = [None, [], {"room_id": "!r:x"}, {**raw, "num_joined_members": -1},
                   {**raw, "world_readable": "yes"}, {**raw, "room_id": "r:x"}]
    for broken in broken_answers:
        assert clean_summary(broken) is None
