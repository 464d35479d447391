"""TURN credentials for voice and video calls (the spec's VoIP module, server side).

The server relays no media: it tells clients which TURN server to use and with what
credentials. With a shared secret the credentials follow the TURN REST scheme that
coturn's `use-auth-secret` checks: the username is `<expiry unix seconds>:<user id>`
and the password base64(HMAC-SHA1(secret, username)), so the TURN server can verify
them, and refuse them once expired, without asking us.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from homeserver.clock import Clock
from homeserver.config import VoipConfig


def turn_rest_password(secret: str, username: str) -> str:
    """The password coturn derives for `username` under `static-auth-secret`
    (standard padded base64, which is what the TURN server compares)."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode("ascii")


class TurnService:
    def __init__(self, config: VoipConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock

    @property
    def configured(self) -> bool:
        """Whether there is a TURN server to hand out (config checks guarantee that URIs
        come with one way of making credentials)."""
        return bool(self.config.turn_uris)

    def credentials(self, user_id: str) -> dict[str, Any]:
        """The /voip/turnServer answer for one user."""
        cfg = self.config
        lifetime = cfg.turn_user_lifetime_s
        if cfg.turn_shared_secret is not None:
            expiry = self.clock.time_ms() // 1000 + lifetime
            username = f"{expiry}:{user_id}"
            password = turn_rest_password(cfg.turn_shared_secret, username)
        else:
            assert cfg.turn_username is not None and cfg.turn_password is not None
            username, password = cfg.turn_username, cfg.turn_password
        return {"username": username, "password": password, "uris": list(cfg.turn_uris), "ttl": lifetime}
