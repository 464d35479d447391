"""The members a message may name (push/actions.py `_NameIndex`): found by looking up
the body's substrings, exactly the members a test of every member's lower-cased name
and localpart against the body finds, for short bodies (the look-ups) and long ones
(the pass over the members), with names that are not plain or are empty."""

from __future__ import annotations

import random

from homeserver.push.actions import _NameIndex, _plain_lower, _Profile


def _naive(profiles: list[_Profile], lower_body: str) -> set[str]:
    return {
        u for u, name, localpart in profiles
        if localpart is None or name is None or localpart in lower_body or (name and name in lower_body)
    }


def _profiles(rng: random.Random, n: int) -> list[_Profile]:
    out: list[_Profile] = []
    for i in range(n):
        localpart = rng.choice(["al", "bob", "carol", "d", "eve", "frank", "x1", ""]) + str(rng.randrange(30))
        name = rng.choice(["", "Alice", "Bob B", "Zoë", "c*r", "Eve", "al", localpart, "a?"])
        if rng.random() < 0.05:
            localpart = ""
        out.append((f"@{localpart}-{i}:hs", _plain_lower(name), _plain_lower(localpart)))
    return out


def test_same_members_as_testing_each() -> None:
    rng = random.Random(19)
    for _ in range(300):
        profiles = _profiles(rng, rng.randrange(0, 60))
        index = _NameIndex(profiles)
        words = ["hello", "al3", "bob b", "eve12", "carol7", "x15", "d2", "alice", " ", "frank29", "b"]
        body = "".join(rng.choice(words) for _ in range(rng.randrange(0, 8)))
        for text in (body, body * 40, ""):
            expected = _naive(profiles, text)
            assert index.named(text, profiles) == expected, (text, profiles)
            for size in (10**9, -1):  # forced: the look-ups, then the pass over the members
                index.size = size
                assert index.named(text, profiles) == expected, (size, text, profiles)
            index.size = len(profiles)


def test_no_members() -> None:
    assert _NameIndex([]).named("hello", []) == set()


def test_patched_index_finds_what_a_new_one_finds() -> None:
    """A membership change patches a copy of the index (`_NameIndex.patched`): it finds
    what an index built afresh from the changed members finds, and the original is
    left as it was (the change's transaction may yet fail)."""
    rng = random.Random(2)
    bodies = ["hello", "al3 and bob b", "eve12 carol7 x15", "d2", "alice frank29", "b", "a?", "zoë"]
    for _ in range(300):
        profiles = _profiles(rng, rng.randrange(1, 40))
        index = _NameIndex(profiles)
        before = {b: index.named(b, profiles) for b in bodies}
        changed = list(profiles)
        removed = changed.pop(rng.randrange(len(changed))) if rng.random() < 0.7 else None
        added = _profiles(rng, 1)[0] if rng.random() < 0.7 or removed is None else None
        if added is not None and removed is not None and rng.random() < 0.5:
            added = (removed[0], added[1], removed[2])  # the same member, a new name
        if added is not None:
            changed.append(added)
        patched = index.patched(removed, added)
        fresh = _NameIndex(changed)
        for body in bodies:
            plain = _plain_lower(body)
            if plain is None:
                continue
            for size in (10**9, -1):
                patched.size = fresh.size = size
                assert patched.named(plain, changed) == fresh.named(plain, changed) == _naive(changed, plain)
            index.size = 10**9
            assert index.named(plain, profiles) == before[body]
