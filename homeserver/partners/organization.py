"""Our organization's directory profile, edited at run time by its admins.

The config's ``organization`` section seeds it: while no admin has edited the profile,
the config is what is published (a changed config takes effect at the restart that
loads it, as before). Once an admin edits it (``PUT /_accord/admin/v1/organization``),
the stored profile is what is published, from then on and across restarts, and the
edit is re-published to the configured directories at once. Every edit is validated by
the directory's own validator (the rules every directory applies) and audited.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from homeserver.config import OrganizationConfig
from homeserver.errors import bad_json
from homeserver.partners.directory_profile import validate_profile
from homeserver.storage.organization import OrganizationStore

if TYPE_CHECKING:
    from homeserver.audit import AuditLog
    from homeserver.clock import Clock

CONFIG, EDITED = "config", "edited"
FIELDS = ("name", "description", "specialties", "location", "website", "contacts", "rooms", "publish_partners")


def _as_config(values: dict[str, Any]) -> OrganizationConfig:
    return OrganizationConfig(
        name=values.get("name") or None,
        description=values.get("description") or None,
        specialties=list(values.get("specialties") or []),
        location=values.get("location") or None,
        website=values.get("website") or None,
        contacts=list(values.get("contacts") or []),
        rooms=list(values.get("rooms") or []),
        publish_partners=bool(values.get("publish_partners", False)),
    )


class OrganizationProfile:
    def __init__(self, *, store: OrganizationStore, seed: OrganizationConfig, clock: Clock, audit: AuditLog) -> None:
        self.store = store
        self.seed = seed
        self.clock = clock
        self.audit = audit
        self.current = seed
        self.source = CONFIG
        self.updated_ts: int | None = None
        self.updated_by: str | None = None
        # Told of each change (the directory publisher republishes, partnerships
        # introduce us by the new name).
        self.listeners: list[Callable[[OrganizationConfig], Awaitable[None]]] = []

    async def start(self) -> None:
        row = await self.store.get()
        if row is not None and row[1] == EDITED:
            self.current = _as_config(orjson.loads(row[0]))
            self.source, self.updated_ts, self.updated_by = EDITED, row[2], row[3]
        else:
            seed_json = orjson.dumps(dataclasses.asdict(self.seed)).decode()
            if row is None or row[0] != seed_json:
                await self.store.put(seed_json, CONFIG, self.clock.time_ms(), None)
            self.updated_ts = row[2] if row is not None and row[0] == seed_json else self.clock.time_ms()
        await self._tell()

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self.current)
        out.update(source=self.source, updated_ts=self.updated_ts, updated_by=self.updated_by)
        return out

    async def update(self, body: Any, *, by: str, ip: str | None) -> dict[str, Any]:
        """Replace the profile with `body` (every field; absent ones are emptied)."""
        if not isinstance(body, dict):
            raise bad_json("The profile must be a JSON object")
        publish_partners = body.get("publish_partners", False)
        if not isinstance(publish_partners, bool):
            raise bad_json("Field 'publish_partners' must be a boolean")
        # Our partner list is never typed in: it is added at each publish when asked for.
        profile = validate_profile({k: body.get(k) for k in FIELDS if k != "publish_partners"})
        profile.pop("partners", None)
        profile["publish_partners"] = publish_partners
        organization = _as_config(profile)
        now = self.clock.time_ms()
        await self.store.put(orjson.dumps(dataclasses.asdict(organization)).decode(), EDITED, now, by)
        self.current, self.source, self.updated_ts, self.updated_by = organization, EDITED, now, by
        await self.audit.record(
            "organization.update", actor=by, target=None, ip=ip,
            details={"name": organization.name, "fields": sorted(k for k in FIELDS if k in body)},
        )
        await self._tell()
        return self.to_json()

    async def _tell(self) -> None:
        for listener in self.listeners:
            await listener(self.current)
