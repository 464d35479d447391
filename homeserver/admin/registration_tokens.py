"""Registration tokens as admins manage them: list, create, read, change and delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.clock import Clock
    from homeserver.storage.registration_tokens import RegistrationTokenStore

# (uses_allowed, pending, completed, expiry_time)
TokenInfo = tuple[int | None, int, int, int | None]


class RegistrationTokenAdmin:
    def __init__(self, store: RegistrationTokenStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def tokens(self, valid: bool | None) -> list[tuple[str, TokenInfo]]:
        """Every token, or only those that are (`valid`) or are not still usable."""
        now = self.clock.time_ms()
        out: list[tuple[str, TokenInfo]] = []
        for token, uses_allowed, pending, completed, expiry in await self.store.list_all():
            is_valid = (expiry is None or expiry >= now) and (
                uses_allowed is None or pending + completed < uses_allowed
            )
            if valid is None or valid == is_valid:
                out.append((token, (uses_allowed, pending, completed, expiry)))
        return out

    async def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        """False when the token exists already."""
        return await self.store.create(token, uses_allowed, expiry_time)

    async def get(self, token: str) -> TokenInfo | None:
        return await self.store.get(token)

    async def update(self, token: str, changes: dict[str, int | None]) -> bool:
        return await self.store.update(token, changes)

    async def delete(self, token: str) -> bool:
        return await self.store.delete(token)
