"""Our organization's directory profile as edited at run time (homeserver/partners/organization.py)."""

from __future__ import annotations

from homeserver.storage.database import Database


class OrganizationStore:
    """The one row of our organization's profile as edited at run time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self) -> tuple[str, str, int, str | None] | None:
        """(profile JSON, source, updated_ts, updated_by), or None before the first seed."""
        row = await self.db.fetchone(
            "SELECT profile_json, source, updated_ts, updated_by FROM organization_profile WHERE id = 1"
        )
        return (row[0], row[1], int(row[2]), row[3]) if row else None

    async def put(self, profile_json: str, source: str, ts: int, by: str | None) -> None:
        await self.db.execute(
            "INSERT INTO organization_profile (id, profile_json, source, updated_ts, updated_by)"
            " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET profile_json = excluded.profile_json,"
            " source = excluded.source, updated_ts = excluded.updated_ts, updated_by = excluded.updated_by",
            (profile_json, source, ts, by),
        )
