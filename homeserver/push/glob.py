"""The spec's glob for push rules (`*` any run, `?` one character), matched
case-insensitively over the whole value or, for `content.body`, at word boundaries."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

_WORD_CHARS = "A-Za-z0-9_"  # the spec's word characters; everything else is a boundary
_NOT_AFTER_WORD = f"(?<![{_WORD_CHARS}])"
_NOT_BEFORE_WORD = f"(?![{_WORD_CHARS}])"
_FLAGS = re.IGNORECASE | re.DOTALL


def _segment_regex(segment: str) -> str:
    return "".join("." if c == "?" else re.escape(c) for c in segment)


class _Glob:
    """The spec's glob (`*` any run, `?` one character; nothing else is special),
    matched case-insensitively without backtracking regexes.

    The pattern is split at each `*` into fixed-length segments; matching places
    the first segment as early as possible, every middle one at its leftmost
    occurrence after that, and then asks whether the last fits. Earliest placement
    is always optimal, so this is exact, and it stays linear in the value for every
    pattern: a user's rule like `*a*a*a*a*b` cannot stall the server on a long body.
    """

    def __init__(self, pattern: str) -> None:
        parts = pattern.split("*")
        self.star = len(parts) > 1
        self.lengths = [len(p) for p in parts]
        self.parts = [re.compile(_segment_regex(p), _FLAGS) for p in parts]
        first, last = _segment_regex(parts[0]), _segment_regex(parts[-1])
        if self.star:
            self.first_at_word = re.compile(_NOT_AFTER_WORD + first, _FLAGS)
            self.last_at_word = re.compile(last + _NOT_BEFORE_WORD, _FLAGS)
        else:
            self.first_at_word = re.compile(_NOT_AFTER_WORD + first + _NOT_BEFORE_WORD, _FLAGS)
            self.last_at_word = self.first_at_word

    def _middles(self, value: str, pos: int) -> int | None:
        for rx in self.parts[1:-1]:
            m = rx.search(value, pos)
            if m is None:
                return None
            pos = m.end()
        return pos

    def fullmatch(self, value: str) -> bool:
        """Whether the pattern matches the whole value."""
        if not self.star:
            return self.parts[0].fullmatch(value) is not None
        if self.parts[0].match(value) is None:
            return False
        pos = self._middles(value, self.lengths[0])
        if pos is None:
            return False
        start = len(value) - self.lengths[-1]
        return start >= pos and self.parts[-1].fullmatch(value, start) is not None

    def search_words(self, value: str) -> bool:
        """Whether the pattern matches a substring that starts and ends at word boundaries."""
        m = self.first_at_word.search(value)
        if m is None:
            return False
        if not self.star:
            return True
        pos = self._middles(value, m.end())
        return pos is not None and self.last_at_word.search(value, pos) is not None


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> _Glob:
    return _Glob(pattern)


def glob_matches(pattern: str, value: str, *, word_boundaries: bool = False) -> bool:
    """The spec's glob match: whole value, or (for content.body) any substring at word boundaries."""
    if word_boundaries:
        found = _literal_word_in(pattern, value)
        if found is not None:
            return found
    g = _glob(pattern)
    return g.search_words(value) if word_boundaries else g.fullmatch(value)


def glob_matcher(pattern: str, *, word_boundaries: bool = False) -> Callable[[str], bool]:
    """`glob_matches` for one pattern, its compiled form looked up once (a ruleset
    compiled for many events, homeserver/push/evaluator.py)."""
    if word_boundaries:
        return functools.partial(_words_match, pattern)
    return _glob(pattern).fullmatch


def _words_match(pattern: str, value: str) -> bool:
    return glob_matches(pattern, value, word_boundaries=True)


_ASCII_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


@functools.lru_cache(maxsize=256)
def _ascii_lower(text: str) -> str | None:
    return text.lower() if text.isascii() else None


def _literal_word_in(word: str, text: str) -> bool | None:
    """Whether the plain ASCII `word` occurs in ASCII `text` between word boundaries,
    case-insensitively, found without a regex (each user's own rules, such as their
    localpart and display name, would otherwise compile one per user for every message
    of a big room); None when either is not plain ASCII or `word` has glob characters."""
    if not word or "*" in word or "?" in word:
        return None
    lower_word, lower_text = _ascii_lower(word), _ascii_lower(text)
    if lower_word is None or lower_text is None:
        return None
    n, start = len(lower_word), 0
    while True:
        i = lower_text.find(lower_word, start)
        if i < 0:
            return False
        end = i + n
        if (i == 0 or lower_text[i - 1] not in _ASCII_WORD) and (end == len(lower_text) or lower_text[end] not in _ASCII_WORD):
            return True
        start = i + 1


@functools.lru_cache(maxsize=1024)
def _word_regex(word: str) -> re.Pattern[str]:
    return re.compile(_NOT_AFTER_WORD + re.escape(word) + _NOT_BEFORE_WORD, _FLAGS)


def contains_word(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` (case-insensitively) between word boundaries."""
    found = _literal_word_in(word, text) if "*" not in word and "?" not in word else None
    if found is not None:
        return found
    return _word_regex(word).search(text) is not None
