"""The nesting bound of federation.events.json_bounds, and events held to it."""

from __future__ import annotations

from typing import Any

import pytest

from federation.events.builder import EventFormatError, build_event, validate_pdu
from federation.events.json_bounds import (
    MAX_EVENT_DEPTH,
    MAX_JSON_DEPTH,
    JSONBoundsError,
    check_depth,
    loads_bounded,
)
from federation.events.signing import generate_signing_key


def nested(depth: int) -> Any:
    value: Any = []
    for i in range(depth - 1):
        value = {"a": value} if i % 2 else [value]
    return value


def test_depth_counts_containers() -> None:
    check_depth({}, 1)
    check_depth({"a": 1, "b": "x"}, 1)
    check_depth({"a": []}, 2)
    with pytest.raises(JSONBoundsError):
        check_depth({"a": []}, 1)
    check_depth(nested(MAX_JSON_DEPTH))
    with pytest.raises(JSONBoundsError):
        check_depth(nested(MAX_JSON_DEPTH + 1))


def test_loads_bounded_refuses_deep_and_non_json() -> None:
    assert loads_bounded(b'{"a": [1, 2]}') == {"a": [1, 2]}
    deep = b"[" * 1000 + b"]" * 1000  # orjson itself would take up to 1,024 levels
    with pytest.raises(JSONBoundsError) as err:
        loads_bounded(deep)
    assert not err.value.not_json
    for bad in (b"{", b"NaN", b"[Infinity]", b"1e400", b"\xff"):
        with pytest.raises(JSONBoundsError) as err:
            loads_bounded(bad)
        assert err.value.not_json


def _event(content: dict[str, Any]) -> dict[str, Any]:
    return build_event(
        "10", room_id="!r:example.org", sender="@a:example.org", event_type="m.room.message",
        content=content, prev_events=["$p"], auth_events=["$a"], depth=2, origin_server_ts=1,
        signing_key=generate_signing_key("k"), server_name="example.org",
    )


def test_events_are_held_to_the_event_bound() -> None:
    ok = _event({"x": nested(MAX_EVENT_DEPTH - 2)})
    validate_pdu(ok, "10")
    with pytest.raises(EventFormatError):
        _event({"x": nested(MAX_EVENT_DEPTH - 1)})
    # A received PDU past the bound is refused before any recursive check runs.
    deep = dict(ok, content={"x": nested(MAX_EVENT_DEPTH)})
    with pytest.raises(EventFormatError):
        validate_pdu(deep, "10")
    deeper = dict(ok, content={"x": nested(5000)})
    with pytest.raises(EventFormatError):
        validate_pdu(deeper, "10")


def test_wrapped_events_stay_within_the_body_bound() -> None:
    """An event at the bound, in a /send transaction, is a body the receiver takes."""
    event = _event({"x": nested(MAX_EVENT_DEPTH - 2)})
    check_depth({"pdus": [event]}, MAX_JSON_DEPTH)
    assert MAX_EVENT_DEPTH + 3 <= MAX_JSON_DEPTH  # v1 send_join: [200, {"state": [event]}]
