"""The partner directory: an organization's entry, its verification, and our publication
of our own entry to a directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verification:
    verified_by: str
    verified_ts: int
    note: str | None

    def to_json(self) -> dict[str, Any]:
        return {"verified_by": self.verified_by, "verified_ts": self.verified_ts, "note": self.note}


@dataclass(frozen=True)
class DirectoryEntry:
    server_name: str
    profile: dict[str, Any]
    published_ts: int
    updated_ts: int
    expires_ts: int
    verification: Verification | None

    @property
    def sort_key(self) -> tuple[int, str, str]:
        """The position in search order: verified first, then by name."""
        return (0 if self.verification else 1, name_key(self.profile["name"]), self.server_name)


@dataclass(frozen=True)
class Publication:
    directory: str
    last_attempt_ts: int | None
    last_success_ts: int | None
    expires_ts: int | None
    verified: bool
    last_error: str | None
    withdrawn: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": self.directory, "last_attempt_ts": self.last_attempt_ts,
            "last_success_ts": self.last_success_ts, "expires_ts": self.expires_ts,
            "verified": self.verified, "last_error": self.last_error, "withdrawn": self.withdrawn,
        }


def name_key(name: str) -> str:
    return name.casefold()
