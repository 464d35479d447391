"""`canonical._plain_walk` (exact types tested in place) against `_plain_general`
alone (the abstract types, as `_plain` was written first): on random values holding
everything either takes (floats, big integers, subclasses, tuples, non-string keys)
both give the same answer or raise the same error, with and without `big_ints`."""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from federation.events import canonical


class _Str(str):
    pass


class _Int(int):
    pass


def _general_only(value: Any, big_ints: bool) -> bool:
    """The abstract-type walk throughout (children too)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if not canonical.MIN_SAFE_INTEGER <= value <= canonical.MAX_SAFE_INTEGER:
            if big_ints:
                return False
            raise canonical.CanonicalJSONError(f"Integer out of canonical JSON range: {value}")
        return True
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise canonical.CanonicalJSONError(f"Object keys must be strings: {key!r}")
            if not _general_only(item, big_ints):
                return False
        return True
    if isinstance(value, list):
        return all(_general_only(v, big_ints) for v in value)
    return False


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 12 if depth < 4 else 8)
    scalars = [
        lambda: "s", lambda: _Str("t"), lambda: rng.randint(-1000, 1000), lambda: 2**53 - 1,
        lambda: 2**53, lambda: -(2**60), lambda: _Int(7), lambda: rng.choice([True, False, None]), lambda: 1.5,
    ]
    if kind <= 8:
        return scalars[kind]()
    if kind in (9, 10):
        key = rng.choice(["a", "b", _Str("c"), "d", 1, "e", "f"])
        d = {key if rng.random() < 0.9 else "k": _value(rng, depth + 1)}
        d.update({f"x{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 4))})
        return d if rng.random() < 0.9 else OrderedDict(d)
    items = [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return items if rng.random() < 0.9 else tuple(items)


def _outcome(fn: Any, value: Any, big_ints: bool) -> Any:
    try:
        return fn(value, big_ints)
    except canonical.CanonicalJSONError as e:
        return ("error", str(e))


def test_same_answers_and_errors() -> None:
    rng = random.Random(53)
    for _ in range(5000):
        value = _value(rng)
        for big_ints in (False, True):
            assert _outcome(canonical._plain_walk, value, big_ints) == _outcome(_general_only, value, big_ints), value


def _checked_then_encoded(value: Any) -> Any:
    try:
        canonical.check_canonical_json(value)
        return canonical.encode_event_canonical_json(value)
    except (canonical.CanonicalJSONError, TypeError) as e:  # orjson refuses str subclasses as keys
        return (type(e), str(e))


def _strict(value: Any) -> Any:
    try:
        return canonical.encode_strict_event_json(value)
    except (canonical.CanonicalJSONError, TypeError) as e:
        return (type(e), str(e))


def test_strict_encoding_is_the_check_then_the_encoding() -> None:
    """`encode_strict_event_json` (a v6+ PDU's size in `validate_pdu`): the same bytes
    or the same error as `check_canonical_json` followed by `encode_event_canonical_json`."""
    rng = random.Random(6)
    for _ in range(3000):
        value = {"content": _value(rng), "depth": 3}
        assert _strict(value) == _checked_then_encoded(value), value
