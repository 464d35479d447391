"""Server-side room key backups: a backup version and one backed-up session key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: dict[str, Any]
    etag: int  # moves whenever the backup's keys change
    count: int  # the number of session keys it holds


@dataclass(frozen=True)
class SessionKey:
    """One megolm session's key as the client uploaded it (`session_data` is opaque)."""

    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: dict[str, Any]

    def better_than(self, other: SessionKey) -> bool:
        """The spec's replacement rule: verified beats unverified, then the lower
        first_message_index, then the lower forwarded_count; a tie keeps the stored key."""
        if self.is_verified != other.is_verified:
            return self.is_verified
        if self.first_message_index != other.first_message_index:
            return self.first_message_index < other.first_message_index
        return self.forwarded_count < other.forwarded_count
