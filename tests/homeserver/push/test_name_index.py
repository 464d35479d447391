"""The members a message may name (push/actions.py `_NameIndex`): found by looking up
the body's substrings, exactly the members a test of every member's lower-cased name
and localpart against the body finds, for short bodies (the look-ups) and long ones
(the pass over the members), with names that are not plain or are empty; and the
body lower-cased (`_body_lower`) so that this finds every member the rules would."""

from __future__ import annotations

import random
import re

from homeserver.push.actions import _body_lower, _NameIndex, _plain_lower, _Profile
from homeserver.push.glob import contains_word


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


def test_characters_a_regex_takes_for_ascii_are_written_as_ascii() -> None:
    """Every character outside ASCII that a case-insensitive regex (the evaluator's
    matches) takes for an ASCII character is in `_ASCII_ALIKES`, as that character."""
    ascii_chars = [chr(i) for i in range(128)]
    any_ascii = re.compile("[" + re.escape("".join(ascii_chars)) + "]", re.IGNORECASE)
    for code in range(128, 0x110000):
        c = chr(code)
        if any_ascii.fullmatch(c):
            alikes = {a.lower() for a in ascii_chars if re.fullmatch(re.escape(a), c, re.IGNORECASE)}
            assert _body_lower(c) in alikes and len(alikes) == 1, (hex(code), alikes)


def test_a_body_names_every_member_the_rules_would_find() -> None:
    """Bodies with accents, emoji, glob characters and the ASCII look-alikes: every
    plain name or localpart the evaluator's word match finds in the body is a
    substring of `_body_lower(body)`."""
    rng = random.Random(7)
    names = ["kim", "Sis", "Ilia", "bob b", "x1", "ab?", "dave"]
    pieces = ["hello ", "\u212aim", "\u017fis", "\u0130lia", "\u0131lia", "caf\u00e9 ", "\U0001f600", "?", "*",
              "BOB B", "X1", "d\u00e5ve", " "]
    for _ in range(2000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 6)))
        lower = _body_lower(body)
        for name in names:
            plain = _plain_lower(name)
            if plain is not None and contains_word(body, name):
                assert plain in lower, (body, name)
