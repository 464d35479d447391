"""Room aliases and the published room directory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError
from homeserver.storage.rooms import RoomRecord

if TYPE_CHECKING:
    from homeserver.server import HomeServer

MAX_ALIAS_BYTES = 255


class DirectoryService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    def check_new_alias_localpart(self, localpart: str) -> str:
        """The full alias for a room_alias_name, refusing what the grammar forbids."""
        if not localpart or any(c in localpart for c in ":# \t\n\r\x00"):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid room alias name")
        alias = f"#{localpart}:{self.hs.config.server_name}"
        if len(alias.encode()) > MAX_ALIAS_BYTES:
            raise MatrixError(400, "M_INVALID_PARAM", "Room alias is too long")
        return alias

    async def check_canonical_alias(self, room: RoomRecord, content: dict[str, Any]) -> None:
        """The spec's m.room.canonical_alias rules: every local alias named must exist
        and point at this room (M_BAD_ALIAS otherwise)."""
        aliases: list[Any] = []
        if "alias" in content and content["alias"] is not None:
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise MatrixError(400, "M_INVALID_PARAM", "'alt_aliases' must be a list")
        aliases.extend(alt)
        for alias in aliases:
            if not isinstance(alias, str) or not alias.startswith("#") or ":" not in alias:
                raise MatrixError(400, "M_INVALID_PARAM", f"Invalid alias {alias!r}")
            if alias.split(":", 1)[1] != self.hs.config.server_name:
                continue  # remote aliases cannot be checked without federation
            found = await self.hs.room_store.get_alias(alias)
            if found is None or found[0] != room.room_id:
                raise MatrixError(400, "M_BAD_ALIAS", f"Alias {alias} does not point to this room")
