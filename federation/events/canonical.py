"""Canonical JSON and base64 encodings (appendices, "Signing JSON").

Hashes and signatures are computed over bytes, so every server must turn the
same JSON value into the same bytes. A JSON encoder does the key sorting and
minimal formatting but happily emits floats and integers outside the
interoperable range; those would produce signatures other servers cannot
reproduce, so this module rejects them first.

Except in events of room versions 1-5, which predate the rule: they may hold
floats and integers of any size (only v6 made servers refuse them), and
Synapse, which created most of those rooms, hashes and signs them as Python's
``canonicaljson`` writes them: each float by Python's shortest round-trip
``repr`` (``1.5``, ``1.0``, ``1e+100``), each integer in full. An event is
hashed, signed and named over those bytes (``encode_event_canonical_json``),
so they must be reproduced exactly, or the event is refused or wrongly
redacted. For every value v6+ allows, the two encodings give the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "MAX_SAFE_INTEGER",
    "MIN_SAFE_INTEGER",
    "CanonicalJSONError",
    "check_canonical_json",
    "decode_base64",
    "encode_base64",
    "encode_canonical_json",
    "encode_event_canonical_json",
    "encode_plain_json",
    "encode_strict_event_json",
    "has_loose_numbers",
    "is_plain_event_json",
    "json_copy",
    "parse_json_strict",
]

MAX_SAFE_INTEGER = 2**53 - 1
MIN_SAFE_INTEGER = -(2**53) + 1


class CanonicalJSONError(ValueError):
    """A value cannot be represented in canonical JSON (maps to ``M_BAD_JSON``)."""


def _normalise(value: Any, *, allow_integral_floats: bool) -> Any:
    # bool is a subclass of int, so test it first.
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalJSONError(f"Integer out of canonical JSON range: {value}")
        return value
    if isinstance(value, float):
        if allow_integral_floats and value.is_integer():
            return _normalise(int(value), allow_integral_floats=False)
        raise CanonicalJSONError(f"Floats are not allowed in canonical JSON: {value!r}")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"Object keys must be strings: {key!r}")
            out[key] = _normalise(item, allow_integral_floats=allow_integral_floats)
        return out
    if isinstance(value, (list, tuple)):
        return [_normalise(v, allow_integral_floats=allow_integral_floats) for v in value]
    raise CanonicalJSONError(f"Not a JSON value: {type(value).__name__}")


def _plain(value: Any, *, big_ints: bool = False) -> bool:
    """True if ``value`` is already in canonical JSON's value space as it stands:
    no floats, integers in range, string keys. Raises for what can never be
    (an integer out of range too, unless ``big_ints``: then it is not plain)."""
    return _plain_walk(value, big_ints)


def _plain_walk(value: Any, big_ints: bool) -> bool:
    """`_plain` for the exact types parsed JSON is made of, tested by `type(...) is`
    with the scalars of a dict or list tested in place, not by a call each (every
    event built or checked is walked so, several times); any other type (subclasses,
    floats, tuples, other mappings) takes `_plain_general`. Same order, same answers
    and same errors as `_plain_general` alone."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        if MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        return _plain_general(value, big_ints)  # raises, or not plain
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise CanonicalJSONError(f"Object keys must be strings: {key!r}")
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int and MIN_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            if not _plain_walk(item, big_ints):
                return False
        return True
    if kind is list:
        for item in value:
            kind = type(item)
            if kind is str or kind is bool or item is None:
                continue
            if kind is int and MIN_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            if not _plain_walk(item, big_ints):
                return False
        return True
    return _plain_general(value, big_ints)


def _plain_general(value: Any, big_ints: bool) -> bool:
    """`_plain` by the abstract types (what `_plain_walk` does not take itself)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if not MIN_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            if big_ints:
                return False
            raise CanonicalJSONError(f"Integer out of canonical JSON range: {value}")
        return True
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalJSONError(f"Object keys must be strings: {key!r}")
            if not _plain_walk(item, big_ints):
                return False
        return True
    if isinstance(value, list):
        return all(_plain_walk(v, big_ints) for v in value)
    return False  # floats, tuples, other mappings: take the normalising path


def encode_canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes.

    Floats with an integral value are written as integers, because a JSON
    parser will have turned a wire value such as ``1e10`` into a float and
    the spec's own example expects ``10000000000`` for it. Fractional
    floats and out-of-range integers raise :class:`CanonicalJSONError`.

    orjson with sorted keys produces exactly canonical JSON's bytes (compact,
    UTF-8, keys in code point order, the same string escapes) several times
    faster than the ``json`` module; this runs for every event built or checked.
    """
    if not _plain(value):
        value = _normalise(value, allow_integral_floats=True)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# What Python's canonicaljson (and so Synapse) uses: compact, sorted keys, UTF-8, no NaN.
_PYTHON_FORM = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)


def has_loose_numbers(value: Any) -> bool:
    """Whether ``value`` holds a float or an integer beyond canonical JSON's range:
    what only events of room versions 1-5 (and requests carrying them) may hold."""
    return not _plain(value, big_ints=True)


def encode_event_canonical_json(value: Any) -> bytes:
    """The canonical JSON an event is hashed, signed and named over: the spec's
    form, and for the numbers that only room versions 1-5 allow, the form Python's
    canonicaljson gives them (see the module docstring). Values v6+ allows take
    the same fast path, and give the same bytes, as ``encode_canonical_json``."""
    if _plain(value, big_ints=True):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        return _PYTHON_FORM.encode(value).encode("utf-8")
    except (TypeError, ValueError) as exc:  # NaN or infinity, or not JSON at all
        raise CanonicalJSONError(f"Not encodable as canonical JSON: {exc}") from None


def is_plain_event_json(value: Any) -> bool:
    """Whether ``value`` is in canonical JSON's value space as it stands, big integers
    included (which are not): no floats, integers in range, string keys. Then every
    canonical form of it (``encode_canonical_json``, ``encode_event_canonical_json``,
    ``encode_strict_event_json``), and of any part of it or of a copy of it with
    strings and such integers added, is ``encode_plain_json``'s: a builder walks a new
    event once instead of once per encoding. Raises what those raise for a key that
    is not a string."""
    return _plain(value, big_ints=True)


def encode_plain_json(value: Any) -> bytes:
    """The canonical JSON of a value ``is_plain_event_json`` accepted, or of a part of
    one, without walking it again."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def json_copy(value: Any) -> Any:
    """A deep copy of JSON data, much cheaper than ``copy.deepcopy``."""
    return orjson.loads(orjson.dumps(value))


def check_canonical_json(value: Any) -> None:
    """Reject values that are not strictly valid canonical JSON (any float included).

    Used when validating incoming PDUs: room versions 6+ require servers to
    discard events whose JSON the spec's grammar does not allow. The common case,
    plain JSON already, is walked once without copying (``_plain`` raises what
    ``_normalise`` would for integers out of range and non-string keys).
    """
    if _plain(value):
        return
    _normalise(value, allow_integral_floats=False)


def encode_strict_event_json(value: Any) -> bytes:
    """``check_canonical_json`` then ``encode_event_canonical_json`` (a PDU of room
    version 6 or later checked and encoded for its size), walking the value once
    when it is plain, as it almost always is, instead of once for each."""
    if _plain(value):  # raises what check_canonical_json raises for these
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    check_canonical_json(value)
    return encode_event_canonical_json(value)


def _reject_constant(name: str) -> Any:
    raise CanonicalJSONError(f"Non-finite number not allowed: {name}")


def _reject_float(text: str) -> Any:
    raise CanonicalJSONError(f"Floats are not allowed: {text}")


def parse_json_strict(data: bytes | str) -> Any:
    """Parse JSON, refusing anything outside the canonical JSON value space.

    Lets a request handler turn bad JSON into ``M_BAD_JSON`` before the value
    reaches code that would later fail to hash or sign it.
    """
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_reject_float)
    except ValueError as exc:
        if isinstance(exc, CanonicalJSONError):
            raise
        raise CanonicalJSONError(f"Invalid JSON: {exc}") from exc
    check_canonical_json(value)
    return value


def encode_base64(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded base64, standard or URL-safe alphabet."""
    encoded = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return encoded.rstrip(b"=").decode("ascii")


def decode_base64(data: str) -> bytes:
    """Decode base64 in either alphabet, padded or not.

    The spec asks decoders to be liberal here (keys in
    ``m.room.third_party_invite`` may use either alphabet), so both are
    accepted; mixed alphabets or garbage raise ``ValueError``.
    """
    if not isinstance(data, str):
        raise ValueError("base64 data must be a string")
    stripped = data.rstrip("=")
    padded = stripped + "=" * (-len(stripped) % 4)
    altchars = b"-_" if ("-" in padded or "_" in padded) else None
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Invalid base64: {exc}") from exc
