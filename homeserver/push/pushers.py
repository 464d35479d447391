"""Pushers (the spec's GET /pushers and POST /pushers/set): checking what clients
send, storing it, and telling the delivery side (homeserver/push/delivery.py).

A pusher belongs to the session (device) that set it: deleting the device,
logging out, or changing the password with other sessions logged out deletes
its pushers in the same transaction (homeserver/storage/devices.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param
from homeserver.records.pushers import Pusher
from homeserver.storage.pushers import PusherStore

NOTIFY_PATH = "/_matrix/push/v1/notify"
EMAIL_APP_ID = "m.email"  # the spec's app_id of e-mail pushers
KINDS = ("http", "email")
MAX_PUSHKEY_BYTES = 512  # the spec's limits
MAX_APP_ID_CHARS = 64
MAX_TEXT_CHARS = 256  # display names, lang, profile_tag: shown to the user, never this long
MAX_DATA_BYTES = 4096  # sent with every notification


class PushersChanged(Protocol):
    """The delivery side, told of a user's pushers changing."""

    async def pushers_changed(self, user_id: str) -> None: ...


def _text(body: dict[str, Any], name: str, *, required: bool, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise missing_param(f"Missing required field '{name}'")
        return None
    if not isinstance(value, str):
        raise bad_json(f"Field '{name}' must be a string")
    if len(value) > max_chars or "\x00" in value:
        raise invalid_param(f"Field '{name}' must be at most {max_chars} characters, without NUL")
    return value


def check_gateway_url(url: Any, address_refusal: Callable[[str], str | None]) -> str:
    """An http pusher's data.url: HTTPS, the spec's path, a host, and not an address
    literal the outbound guard would refuse (a name is judged when it is connected to)."""
    if not isinstance(url, str):
        raise invalid_param("An http pusher needs data.url, a string")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise invalid_param("data.url is not a URL") from None
    if parts.scheme != "https" or not parts.hostname:
        raise invalid_param("data.url must be an https URL")
    if parts.path != NOTIFY_PATH:
        raise invalid_param(f"data.url must have the path {NOTIFY_PATH}")
    if parts.username is not None or parts.password is not None or parts.fragment or port == 0:
        raise invalid_param("data.url must not carry credentials, a fragment or port 0")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    reason = address_refusal(str(literal))
    if reason is not None:
        raise invalid_param(f"data.url points at an address this server does not connect to ({reason})")
    return url


class PusherService:
    def __init__(
        self, *, store: PusherStore, address_refusal: Callable[[str], str | None], max_per_user: int,
        now_ms: Callable[[], int], email_owner: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.store = store
        self.address_refusal = address_refusal
        self.max_per_user = max_per_user
        self.now_ms = now_ms
        self.email_owner = email_owner  # who has an e-mail address (None: e-mail is off)
        self.listeners: list[PushersChanged] = []

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        return [p.client_json() for p in await self.store.for_user(user_id)]

    async def set(self, user_id: str, device_id: str | None, body: dict[str, Any]) -> None:
        """POST /pushers/set: create, update (same app_id and pushkey) or, with kind
        null, delete one of the user's pushers."""
        if "kind" not in body:
            raise missing_param("Missing required field 'kind'")
        app_id = _text(body, "app_id", required=True, max_chars=MAX_APP_ID_CHARS)
        pushkey = body.get("pushkey")
        if pushkey is None:
            raise missing_param("Missing required field 'pushkey'")
        if not isinstance(pushkey, str):
            raise bad_json("Field 'pushkey' must be a string")
        if not pushkey or len(pushkey.encode()) > MAX_PUSHKEY_BYTES or "\x00" in pushkey:
            raise invalid_param(f"pushkey must be 1 to {MAX_PUSHKEY_BYTES} bytes, without NUL")
        assert app_id is not None
        kind = body["kind"]
        if kind is None:
            await self.store.delete(user_id, app_id, pushkey)
            await self._changed(user_id)
            return
        if not isinstance(kind, str):
            raise bad_json("Field 'kind' must be a string or null")
        if kind not in KINDS:
            raise invalid_param(f"Unknown pusher kind {kind!r}; expected http, email or null")
        if kind == "email":
            await self._check_email(user_id, app_id, pushkey)
        missing = [k for k in ("app_display_name", "device_display_name", "lang", "data") if body.get(k) is None]
        if missing:
            raise missing_param(f"Missing parameters: {', '.join(missing)}")
        data = body["data"]
        if not isinstance(data, dict):
            raise bad_json("Field 'data' must be an object")
        if len(orjson.dumps(data)) > MAX_DATA_BYTES:
            raise invalid_param(f"Field 'data' must be at most {MAX_DATA_BYTES} bytes of JSON")
        if "format" in data and not isinstance(data["format"], str):
            raise invalid_param("data.format must be a string")
        if kind == "http":
            check_gateway_url(data.get("url"), self.address_refusal)
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise bad_json("Field 'append' must be a boolean")
        pusher = Pusher(
            0, user_id, device_id, kind, app_id, pushkey,
            _text(body, "app_display_name", required=True) or "",
            _text(body, "device_display_name", required=True) or "",
            _text(body, "profile_tag", required=False),
            _text(body, "lang", required=True) or "",
            data, self.now_ms(),
        )
        existing = await self.store.for_user(user_id)
        if len(existing) >= self.max_per_user and not any(
            p.app_id == app_id and p.pushkey == pushkey for p in existing
        ):
            raise forbidden(f"A user may have at most {self.max_per_user} pushers")
        for other in await self.store.put(pusher, replace_other_users=not append):
            await self._changed(other)
        await self._changed(user_id)

    async def _check_email(self, user_id: str, app_id: str, pushkey: str) -> None:
        """An e-mail pusher mails one of the user's own validated addresses, nothing else."""
        if self.email_owner is None:
            raise invalid_param("This server does not send e-mail notifications")
        if app_id != EMAIL_APP_ID:
            raise invalid_param(f"An e-mail pusher's app_id is {EMAIL_APP_ID!r}")
        if pushkey != pushkey.strip().lower() or await self.email_owner(pushkey) != user_id:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "The pushkey is not a validated e-mail address of this account")

    async def address_removed(self, user_id: str, address: str) -> None:
        """An e-mail address left the account: its e-mail pushers go."""
        await self.store.delete(user_id, EMAIL_APP_ID, address)
        await self._changed(user_id)

    async def _changed(self, user_id: str) -> None:
        for listener in self.listeners:
            await listener.pushers_changed(user_id)

    async def devices_deleted(self, user_id: str) -> None:
        """Devices went, and their pushers in the same transaction: refresh the delivery
        side's view of who has pushers."""
        await self._changed(user_id)
