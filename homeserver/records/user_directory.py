"""A user as the user directory finds them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DirectoryUser:
    user_id: str
    display_name: str | None
    avatar_url: str | None
