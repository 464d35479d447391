"""Filters: POST /user/{userId}/filter, GET /user/{userId}/filter/{filterId},
validation of the spec's filter definition, and `load_filter` as /sync uses it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.filters.event_filter import RoomEventFilter
from homeserver.filters.sync_filter import SyncFilter
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import uid, user

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


async def test_filter_round_trip(api: Api) -> None:
    alice = await user(api, "alice")
    created = await api.post(f"user/{uid('alice')}/filter", SPEC_EXAMPLE, token=alice)
    filter_id = created["filter_id"]
    assert isinstance(filter_id, str) and not filter_id.startswith("{")
    assert await api.get(f"user/{uid('alice')}/filter/{filter_id}", token=alice) == SPEC_EXAMPLE
    # The same definition again gets the same ID; a different one a new ID.
    again = await api.post(f"user/{uid('alice')}/filter", json.loads(json.dumps(SPEC_EXAMPLE)), token=alice)
    assert again["filter_id"] == filter_id
    other = await api.post(f"user/{uid('alice')}/filter", {"room": {"include_leave": True}}, token=alice)
    assert other["filter_id"] != filter_id
    empty = await api.post(f"user/{uid('alice')}/filter", {}, token=alice)
    assert await api.get(f"user/{uid('alice')}/filter/{empty['filter_id']}", token=alice) == {}


async def test_filter_access(api: Api) -> None:
    alice, bob = await user(api, "alice"), await user(api, "bob")
    filter_id = (await api.post(f"user/{uid('alice')}/filter", SPEC_EXAMPLE, token=alice))["filter_id"]
    _, err = await api.request("POST", f"user/{uid('alice')}/filter", {}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    _, err = await api.request("GET", f"user/{uid('alice')}/filter/{filter_id}", token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    # Another user's filter ID is unknown to you.
    _, err = await api.request("GET", f"user/{uid('bob')}/filter/{filter_id}", token=bob, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    for unknown in ("999999", "abc", "99999999999999999999999"):
        _, err = await api.request("GET", f"user/{uid('alice')}/filter/{unknown}", token=alice, expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("GET", f"user/{uid('alice')}/filter/{filter_id}", expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"


@pytest.mark.parametrize(
    "definition",
    [
        {"event_fields": "type"},
        {"event_fields": [1]},
        {"event_format": "xml"},
        {"presence": []},
        {"presence": {"types": "m.presence"}},
        {"presence": {"senders": ["alice"]}},
        {"account_data": {"limit": "ten"}},
        {"account_data": {"not_types": [5]}},
        {"room": []},
        {"room": {"rooms": "!a:b"}},
        {"room": {"not_rooms": ["#alias:b"]}},
        {"room": {"include_leave": "yes"}},
        {"room": {"timeline": {"limit": -1}}},
        {"room": {"timeline": {"contains_url": "true"}}},
        {"room": {"state": {"lazy_load_members": 1}}},
        {"room": {"ephemeral": {"not_senders": ["spam"]}}},
        {"room": {"account_data": {"rooms": ["not-a-room"]}}},
        {"room": {"timeline": "all"}},
    ],
)
async def test_filter_validation(api: Api, definition: dict[str, Any]) -> None:
    alice = await user(api, "alice")
    _, err = await api.request("POST", f"user/{uid('alice')}/filter", definition, token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


async def test_filter_body_must_be_json_object(api: Api) -> None:
    alice = await user(api, "alice")
    _, err = await api.request("POST", f"user/{uid('alice')}/filter", data="nope", token=alice, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    _, err = await api.request("POST", f"user/{uid('alice')}/filter", [1], token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"


async def test_load_filter(api: Api) -> None:
    alice = await user(api, "alice")
    filters = api.hs.filters
    assert await filters.load_filter(uid("alice"), None) == {}
    filter_id = (await api.post(f"user/{uid('alice')}/filter", SPEC_EXAMPLE, token=alice))["filter_id"]
    assert await filters.load_filter(uid("alice"), filter_id) == SPEC_EXAMPLE
    inline = {"room": {"timeline": {"limit": 1}}}
    assert await filters.load_filter(uid("alice"), json.dumps(inline)) == inline
    with pytest.raises(MatrixError) as e:
        await filters.load_filter(uid("bob"), filter_id)  # not bob's
    assert e.value.errcode == "M_NOT_FOUND"
    with pytest.raises(MatrixError) as e:
        await filters.load_filter(uid("alice"), "{not json")
    assert e.value.errcode == "M_NOT_JSON"
    with pytest.raises(MatrixError) as e:
        await filters.load_filter(uid("alice"), '{"room": {"timeline": {"limit": "x"}}}')
    assert e.value.errcode == "M_BAD_JSON"


def test_sync_filter_parse() -> None:
    parsed = SyncFilter.parse(
        {"room": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"], "include_leave": True}, **SPEC_EXAMPLE}
    )
    assert parsed.event_fields == ["type", "content", "sender"]
    assert parsed.timeline.limit == 10 and parsed.timeline.not_senders == ["@spam:example.com"]
    assert parsed.presence.not_senders == ["@alice:example.com"]
    assert parsed.state.types == ["m.room.*"]
    default = SyncFilter.parse({})
    assert default.event_format == "client" and default.timeline.limit is None
    assert default.includes_room("!any:x") and not default.include_leave
    scoped = SyncFilter.parse({"room": {"rooms": ["!a:x", "!b:x"], "not_rooms": ["!b:x"], "include_leave": True}})
    assert scoped.include_leave
    assert scoped.includes_room("!a:x")
    assert not scoped.includes_room("!b:x")  # not_rooms wins
    assert not scoped.includes_room("!c:x")


@pytest.mark.parametrize("field", [
    {"types": ["m.room.message"]}, {"types": []}, {"not_types": ["m.room.member"]},
    {"senders": ["@a:x"]}, {"senders": []}, {"not_senders": ["@a:x"]},
    {"rooms": ["!r:x"]}, {"not_rooms": ["!r:x"]}, {"contains_url": True}, {"contains_url": False},
])
def test_matches_everything_only_when_nothing_is_left_out(field: dict[str, Any]) -> None:
    """`matches` answers without looking only for a filter none of whose fields leaves
    an event out: each excluding field turns that off, and then some event fails to match."""
    open_filter = RoomEventFilter.parse({"limit": 5, "lazy_load_members": True, "not_types": [], "not_senders": []})
    assert open_filter.matches_everything
    narrowed = RoomEventFilter.parse(field)
    assert not narrowed.matches_everything
    events = [
        {"type": "m.room.member", "sender": "@b:x", "content": {}},
        {"type": "m.room.message", "sender": "@a:x", "content": {"url": "mxc://x/y"}},
    ]
    rooms = ("!r:x", "!s:x")
    assert all(open_filter.matches(e, room) for e in events for room in rooms)
    assert not all(narrowed.matches(e, room) for e in events for room in rooms)
