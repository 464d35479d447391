"""Our canonical JSON encoder (orjson with sorted keys) against the canonicaljson
reference library, on random JSON values: the bytes must be identical, or
signatures would not verify across servers."""

from __future__ import annotations

import random
from typing import Any

import canonicaljson
import pytest

from federation.events import CanonicalJSONError, encode_canonical_json


def _string(rng: random.Random) -> str:
    pools = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(rng.randint(0, 12)):
        lo, hi = rng.choice(pools)
        c = rng.randint(lo, hi)
        if 0xD800 <= c <= 0xDFFF:
            continue
        out.append(chr(c))
    return "".join(out)


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 6 if depth < 4 else 3)
    if kind == 0:
        return _string(rng)
    if kind == 1:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.randint(-1000, 1000)
    if kind in (4, 5):
        return {_string(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]


@pytest.mark.parametrize("seed", range(40))
def test_same_bytes_as_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        value = {"k": _value(rng)}
        assert encode_canonical_json(value) == canonicaljson.encode_canonical_json(value)


def test_integral_floats_become_integers_and_others_are_refused() -> None:
    assert encode_canonical_json({"a": 1e10, "b": [2.0]}) == b'{"a":10000000000,"b":[2]}'
    for bad in ({"a": 1.5}, {"a": 2**53}, {"a": -(2**53)}, {1: "x"}, {"a": float("nan")}):
        with pytest.raises(CanonicalJSONError):
            encode_canonical_json(bad)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ({"a": [1, "x", None, True, {"b": -(2**53) + 1}]}, True),
        ({"a": (1, 2)}, True),  # a tuple is JSON's array: the copying path accepts it
        ({"a": 1.0}, False),  # strict: no float at all, even an integral one
        ({"a": [{"b": 0.5}]}, False),
        ({"a": 2**53}, False),
        ({"a": {1: "x"}}, False),
        ({"a": object()}, False),
    ],
)
def test_strict_check_accepts_exactly_the_strict_grammar(value: Any, valid: bool) -> None:
    """check_canonical_json (room versions 6+) walks plain JSON without copying; every
    value outside the grammar is still refused."""
    from federation.events.canonical import check_canonical_json

    if valid:
        check_canonical_json(value)
    else:
        with pytest.raises(CanonicalJSONError):
            check_canonical_json(value)
