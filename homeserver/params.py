"""Integers that arrive as text: query parameters, path segments and the positions in
pagination and sync tokens.

They all end up compared or stored in the database, whose integers are signed 64-bit
(SQLite raises OverflowError beyond that, PostgreSQL a range error), so a number
outside that range must be refused where it is parsed, as the spec's 400
M_INVALID_PARAM, not discovered as a 500 in a query. Python's `int()` is also too
lenient for the wire (it takes spaces, "_" separators and non-ASCII digits such as
"٣"), so this is the one strict parser every such parameter goes through.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.errors import MatrixError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# "-9223372036854775808" is 20 characters; anything longer cannot be in range and
# is refused before it is converted (int() of a huge string costs quadratic time).
_MAX_CHARS = 20


def parse_int(
    text: str, what: str, *, minimum: int = INT64_MIN, maximum: int = INT64_MAX
) -> int:
    """`text` as an integer in [minimum, maximum] (both within signed 64 bits), or 400
    M_INVALID_PARAM naming `what`. Only an optional '-' and ASCII digits are accepted."""
    value = try_parse_int(text, minimum=minimum, maximum=maximum)
    if value is None:
        raise MatrixError(
            400, "M_INVALID_PARAM", f"{what} must be an integer from {minimum} to {maximum}"
        )
    return value


def try_parse_int(text: str, *, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> int | None:
    """Like `parse_int`, but None instead of an error (for token parsers with their own message)."""
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_CHARS:
        return None
    digits = text[1:] if text.startswith("-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(text)
    if not max(minimum, INT64_MIN) <= value <= min(maximum, INT64_MAX):
        return None
    return value


def in_int64(value: int) -> bool:
    """True when a (JSON) integer fits the database's signed 64-bit columns."""
    return INT64_MIN <= value <= INT64_MAX


def query_int(
    query: Mapping[str, str], name: str, default: int | None = None, *,
    minimum: int = INT64_MIN, maximum: int = INT64_MAX,
) -> int | None:
    """A query parameter as a bounded integer; `default` when absent."""
    raw = query.get(name)
    if raw is None:
        return default
    return parse_int(raw, f"Query parameter '{name}'", minimum=minimum, maximum=maximum)
