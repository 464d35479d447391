"""A device, and the access and refresh tokens it holds (as hashes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceRecord:
    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None


@dataclass(frozen=True)
class AccessTokenRecord:
    user_id: str
    device_id: str
    expires_ts: int | None
    refresh_token_hash: str | None
    used: bool


@dataclass(frozen=True)
class RefreshTokenRecord:
    user_id: str
    device_id: str
    expires_ts: int | None
    next_token_hash: str | None
