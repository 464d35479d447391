"""End-to-end encryption keys as the server stores them: opaque signed JSON
objects published by clients, with what the server tracks about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OneTimeKey:
    key_id: str  # "<algorithm>:<id>"
    key: str | dict[str, Any]  # a bare key string, or a signed key object


@dataclass(frozen=True)
class FallbackKey:
    key_id: str
    key: str | dict[str, Any]
    used: bool


@dataclass(frozen=True)
class CrossSigningSignature:
    """One signature made by a cross-signing key (or a device) on another key:
    `target_key_id` is a device ID or a cross-signing public key (unpadded base64)."""

    target_user_id: str
    target_key_id: str
    signer_user_id: str
    signer_key_id: str  # "ed25519:<device ID or public key>"
    signature: str


@dataclass(frozen=True)
class RemoteDevice:
    """One device of another server's user, as its server published it."""

    device_id: str
    keys: dict[str, Any] | None  # None: the device has uploaded no keys
    display_name: str | None


@dataclass(frozen=True)
class RemoteDeviceList:
    """The cached device list of another server's user."""

    user_id: str
    stream_id: int  # the latest m.device_list_update stream ID applied
    seen: tuple[int, ...]  # recent stream IDs applied, for the prev_id check
    devices: dict[str, RemoteDevice]
    master_key: dict[str, Any] | None
    self_signing_key: dict[str, Any] | None
    up_to_date: bool
