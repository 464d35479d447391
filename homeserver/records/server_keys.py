"""Remote servers' signing keys as stored, and the key responses they came in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoredKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int  # for an old key: its expired_ts
    expired_ts: int | None
    fetched_ts: int
    source: str  # the server we learnt it from (itself or a notary)


@dataclass(frozen=True)
class StoredResponse:
    server_name: str
    valid_until_ts: int
    fetched_ts: int
    response: dict[str, Any]
