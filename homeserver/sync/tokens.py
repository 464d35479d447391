"""Sync tokens: one opaque string naming a position in every stream.

Format "s<events>_<typing>_<receipts>_<presence>_<account_data>_<to_device>_<device_lists>";
the first field is the event stream position, so a sync token also works as a
/messages pagination token. Missing trailing fields read as 0, so tokens from
an older server version stay valid when a stream is added.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from homeserver.errors import MatrixError
from homeserver.params import try_parse_int


@dataclass(frozen=True)
class SyncToken:
    events: int = 0
    typing: int = 0
    receipts: int = 0
    presence: int = 0
    account_data: int = 0
    to_device: int = 0
    device_lists: int = 0

    def __str__(self) -> str:
        return (
            f"s{self.events}_{self.typing}_{self.receipts}_{self.presence}_{self.account_data}"
            f"_{self.to_device}_{self.device_lists}"
        )

    @classmethod
    def parse(cls, token: str) -> SyncToken:
        # The readers of a busy room all send the token their last response carried:
        # the same few strings, parsed once (tokens are immutable).
        parsed = _PARSED.get(token)
        if parsed is not None:
            return parsed
        parsed = cls._parse(token)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[token] = parsed
        return parsed

    @classmethod
    def _parse(cls, token: str) -> SyncToken:
        if not token.startswith("s"):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid sync token")
        parts = token[1:].split("_")
        names = _NAMES
        # Every position is a non-negative 64-bit database integer.
        values = [try_parse_int(p, minimum=0) for p in parts]
        if not parts or len(parts) > len(names) or any(v is None for v in values):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid sync token")
        return cls(**{n: v for n, v in zip(names, values, strict=False) if v is not None})

    def advance(self, **positions: int) -> SyncToken:
        return replace(self, **positions)


_PARSED: dict[str, SyncToken] = {}
_PARSED_MAX = 4096
_NAMES = [f.name for f in fields(SyncToken)]  # in token order (parse runs on every /sync)
