"""JSON encoded once and embedded as is into the responses that carry it.

A part of a response that many responses share (a busy room's new timeline, sent to
each of its long-polling readers, sync/shared_sections.py) is encoded to bytes once;
each response's encoder then copies those bytes instead of walking the same objects
again (orjson's `Fragment`). Encoding falls back to the standard library for what
orjson refuses (data stored before the nesting bound, integers beyond 64 bits), for
the embedded part and for a response that embeds one.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class EncodedJSON:
    """A JSON value already encoded (`raw`: its UTF-8 bytes)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @classmethod
    def of(cls, data: Any) -> EncodedJSON:
        """`data` encoded, in bytes of exactly its size: orjson returns its output in the
        buffer it wrote it into, and a kept 3 KB result held 32 KB of malloc's heap
        (measured with mallinfo2); the copy is one memcpy."""
        return cls(bytes(memoryview(dumps(data))))


def _orjson_default(value: object) -> orjson.Fragment:
    if isinstance(value, EncodedJSON):
        return orjson.Fragment(value.raw)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _json_default(value: object) -> Any:
    if isinstance(value, EncodedJSON):
        return json.loads(value.raw)
    raise TypeError(f"not JSON: {type(value).__name__}")


def dumps(data: Any) -> bytes:
    """`data` as compact UTF-8 JSON, with any `EncodedJSON` inside it embedded."""
    try:
        return orjson.dumps(data, default=_orjson_default)
    except orjson.JSONEncodeError:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()
