"""OpenID tokens (the spec's "OpenID"): `POST /user/{userId}/openid/request_token`
hands a user a token that a third party (an integration manager, a widget's
backend) can check with our federation endpoint
`GET /_matrix/federation/v1/openid/userinfo`, learning only which user holds it.

A token is self-contained: the user ID and its expiry, authenticated with an HMAC
under a key derived from our signing key. Nothing is stored, so a token survives a
restart and the table of live tokens cannot grow; a token cannot be revoked before
it expires, so tokens live one hour (as Synapse's), and a deactivated account's
tokens stop working at once (the account is checked on every lookup). The token
grants nothing on the client API: it is never an access token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from homeserver import base64url

if TYPE_CHECKING:
    from homeserver.clock import Clock

TOKEN_LIFETIME_MS = 3600 * 1000
_MAC_BYTES = 32
_MAX_TOKEN_LENGTH = 1024


class OpenIdTokens:
    def __init__(
        self, *, secret: bytes, server_name: str, clock: Clock,
        is_active: Callable[[str], Awaitable[bool]],
    ) -> None:
        # A key of its own, derived from the signing key: one key never serves two purposes.
        self._key = hashlib.sha256(b"accord openid token\x00" + secret).digest()
        self.server_name = server_name
        self.clock = clock
        self.is_active = is_active  # the account exists and is not deactivated

    def issue(self, user_id: str) -> dict[str, Any]:
        """A token for `user_id`, in the shape `request_token` answers with."""
        expires = self.clock.time_ms() + TOKEN_LIFETIME_MS
        payload = f"{expires}|{user_id}".encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return {
            "access_token": base64url.encode(mac + payload),
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": TOKEN_LIFETIME_MS // 1000,
        }

    async def user_of(self, token: str) -> str | None:
        """The user a token was issued to, or None if it is not one of ours, has
        expired, or its account is gone."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            return None
        try:
            raw = base64url.decode(token)
        except (ValueError, TypeError):
            return None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not hmac.compare_digest(mac, hmac.new(self._key, payload, hashlib.sha256).digest()):
            return None
        expires, _, user_id = payload.decode(errors="replace").partition("|")
        if not expires.isdigit() or int(expires) < self.clock.time_ms():
            return None
        return user_id if await self.is_active(user_id) else None
