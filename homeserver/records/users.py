"""Accounts: one user, and the admin API's listing of users and its filter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    password_hash: str | None
    created_ts: int
    admin: bool
    is_guest: bool
    user_type: str | None
    deactivated: bool
    locked: bool
    ratelimit_exempt: bool


@dataclass(frozen=True)
class UserListing:
    user_id: str
    is_guest: bool
    admin: bool
    user_type: str | None
    deactivated: bool
    locked: bool
    displayname: str | None
    avatar_url: str | None
    created_ts: int
    last_seen_ts: int | None


@dataclass(frozen=True)
class UserFilter:
    user_id: str | None = None
    name: str | None = None
    guests: bool = True
    deactivated: bool = False
    admins: bool | None = None
    locked: bool = False
    not_user_types: tuple[str, ...] = ()


# What the admin API's user list may be ordered by.
USER_ORDER_BY = (
    "name", "displayname", "is_guest", "admin", "user_type", "deactivated", "avatar_url",
    "shadow_banned", "creation_ts", "last_seen_ts", "locked",
)
