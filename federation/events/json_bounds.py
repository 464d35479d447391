"""The nesting bound on JSON: one number for everything we parse, one for events.

The spec sets no limit on how deeply JSON may nest, but every encoder has one
(orjson refuses more than 254 levels, Python's ``json`` hits the recursion
limit near 1,000), and a value we accept must stay encodable after we wrap it:
a client's event content ends up six levels down in a ``/sync`` response and
three levels down in a federation transaction. Accepting content the encoder
later refuses breaks every reader of the room and every transaction that
carries it, so the bound is checked where JSON enters, once:

- :data:`MAX_JSON_DEPTH` holds for every request body (client, federation,
  admin), every query parameter holding JSON (filters) and every federation
  response we parse;
- :data:`MAX_EVENT_DEPTH` holds for every event, built here or received. It is
  lower, so that an event wrapped in any envelope we send (a transaction, a
  ``send_join`` answer, ``/state``) still fits :data:`MAX_JSON_DEPTH` at the
  server that receives it, and a client may send content of
  ``MAX_EVENT_DEPTH - 1`` levels.

Output adds at most a handful of levels to either bound, far below what the
encoders can do, so nothing accepted can fail to encode later.

Depth counts containers: ``{}`` and ``[]`` are depth 1, ``{"a": []}`` depth 2;
scalars are depth 0.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "MAX_EVENT_DEPTH",
    "MAX_JSON_DEPTH",
    "JSONBoundsError",
    "check_depth",
    "loads_bounded",
]

MAX_JSON_DEPTH = 128
MAX_EVENT_DEPTH = 120


class JSONBoundsError(ValueError):
    """JSON that is not JSON, or nests deeper than allowed."""

    def __init__(self, message: str, *, not_json: bool = False) -> None:
        super().__init__(message)
        self.not_json = not_json


def _exceeds(value: Any, remaining: int) -> bool:
    # Only containers recurse, and the walk stops at the first branch that is too
    # deep, so a hostile 1,000-level value costs `remaining` frames at most.
    if remaining <= 0:
        return True
    remaining -= 1
    if isinstance(value, dict):
        for item in value.values():
            if (isinstance(item, (dict, list))) and _exceeds(item, remaining):
                return True
    else:
        for item in value:
            if (isinstance(item, (dict, list))) and _exceeds(item, remaining):
                return True
    return False


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH, what: str = "JSON") -> None:
    """Raise :class:`JSONBoundsError` if ``value`` nests more than ``limit`` levels."""
    if isinstance(value, (dict, list)) and _exceeds(value, limit):
        raise JSONBoundsError(f"{what} nests more than {limit} levels deep")


def loads_bounded(data: bytes | bytearray | memoryview | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON and apply the nesting bound.

    NaN and the infinities are not JSON and are refused; so are numbers that
    overflow a double (``1e400``). Integers beyond 64 bits parse as floats, as
    JSON allows; callers that need canonical JSON's integers check them where
    the spec asks (events in room versions that require it).
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONBoundsError(f"Content not JSON: {exc}", not_json=True) from None
    check_depth(value, limit)
    return value
