"""A pusher (POST /pushers/set) and one entry of its delivery queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Pusher:
    pusher_nid: int
    user_id: str
    device_id: str | None  # the session that set it: deleting the device deletes the pusher
    kind: str  # "http" or "email"
    app_id: str
    pushkey: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    created_ts: int

    def client_json(self) -> dict[str, Any]:
        """The pusher as GET /pushers shows it."""
        out: dict[str, Any] = {
            "app_display_name": self.app_display_name, "app_id": self.app_id, "data": self.data,
            "device_display_name": self.device_display_name, "kind": self.kind, "lang": self.lang,
            "pushkey": self.pushkey,
        }
        if self.profile_tag is not None:
            out["profile_tag"] = self.profile_tag
        return out


@dataclass(frozen=True)
class QueuedPush:
    """A notification waiting for a pusher's gateway; event_nid None: a badge-only update."""

    queue_nid: int
    pusher_nid: int
    event_nid: int | None
    room_nid: int
    attempts: int
    next_attempt_ts: int
    created_ts: int
