"""SQL of the shared partner directory: the entries a directory serves, the
operator's verifications, and (publisher side) where our own profile stands.

Expiry is a condition of every read (``expires_ts > now``), so an entry that was
not refreshed disappears at the exact moment its TTL ends whatever the sweep
schedule; `purge_expired` only reclaims the rows.
"""

from __future__ import annotations

from typing import Any

import orjson

from homeserver.records.partner_directory import DirectoryEntry, Publication, Verification, name_key
from homeserver.storage.database import Database, Row, Txn, marks


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_ENTRY_COLUMNS = (
    "e.server_name, e.profile, e.published_ts, e.updated_ts, e.expires_ts,"
    " v.verified_by, v.verified_ts, v.note"
)
_FROM = (
    " FROM partner_directory_entries e"
    " LEFT JOIN partner_directory_verifications v ON v.server_name = e.server_name"
)
_VERIFIED_RANK = "(CASE WHEN v.server_name IS NULL THEN 1 ELSE 0 END)"


def _entry(row: Row) -> DirectoryEntry:
    verification = Verification(row[5], int(row[6]), row[7]) if row[5] is not None else None
    return DirectoryEntry(row[0], orjson.loads(row[1]), int(row[2]), int(row[3]), int(row[4]), verification)


class PartnerDirectoryStore:
    """The entries of the directory this server serves."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert(
        self, server_name: str, profile: dict[str, Any], *, now_ms: int, expires_ts: int, max_entries: int
    ) -> tuple[bool, bool, bool]:
        """Replace (or create) the entry of ``server_name``. Returns (stored, created,
        changed); stored is False when the entry is new and the directory already
        holds ``max_entries`` live entries; changed is False for a refresh that
        republished the same profile."""
        specialties = sorted({s.casefold() for s in profile["specialties"]})
        partners = profile.get("partners") or []
        search_text = (profile["name"] + "\n" + profile["description"]).casefold()
        encoded = orjson.dumps(profile).decode()

        async def fn(txn: Txn) -> tuple[bool, bool, bool]:
            await txn.execute(
                "DELETE FROM partner_directory_entries WHERE server_name = ? AND expires_ts <= ?",
                (server_name, now_ms),
            )
            existing = await txn.fetchone(
                "SELECT profile FROM partner_directory_entries WHERE server_name = ?",
                (server_name,),
            )
            if existing is None:
                row = await txn.fetchone(
                    "SELECT COUNT(*) FROM partner_directory_entries WHERE expires_ts > ?", (now_ms,)
                )
                if row is not None and int(row[0]) >= max_entries:
                    return False, False, False
                await txn.execute(
                    "INSERT INTO partner_directory_entries (server_name, profile, name_key, search_text,"
                    " location_key, published_ts, updated_ts, expires_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (server_name, encoded, name_key(profile["name"]), search_text,
                     profile["location"].casefold(), now_ms, now_ms, expires_ts),
                )
            else:
                await txn.execute(
                    "UPDATE partner_directory_entries SET profile = ?, name_key = ?, search_text = ?,"
                    " location_key = ?, updated_ts = ?, expires_ts = ? WHERE server_name = ?",
                    (encoded, name_key(profile["name"]), search_text, profile["location"].casefold(),
                     now_ms, expires_ts, server_name),
                )
            await _replace_rows(txn, "partner_directory_specialties", "specialty", server_name, specialties)
            await _replace_rows(txn, "partner_directory_partners", "partner", server_name, partners)
            return True, existing is None, existing is None or existing[0] != encoded

        return await self.db.write(fn)

    async def delete(self, server_name: str) -> bool:
        """Remove an entry (withdrawal, or the operator's removal); True if one was listed."""

        async def fn(txn: Txn) -> bool:
            n = await txn.execute("DELETE FROM partner_directory_entries WHERE server_name = ?", (server_name,))
            for table in ("partner_directory_specialties", "partner_directory_partners"):
                await txn.execute(f"DELETE FROM {table} WHERE server_name = ?", (server_name,))
            return n > 0

        return await self.db.write(fn)

    async def purge_expired(self, now_ms: int) -> int:
        async def fn(txn: Txn) -> int:
            gone = [r[0] for r in await txn.fetchall(
                "SELECT server_name FROM partner_directory_entries WHERE expires_ts <= ?", (now_ms,)
            )]
            for name in gone:
                await txn.execute("DELETE FROM partner_directory_entries WHERE server_name = ?", (name,))
                for table in ("partner_directory_specialties", "partner_directory_partners"):
                    await txn.execute(f"DELETE FROM {table} WHERE server_name = ?", (name,))
            return len(gone)

        return await self.db.write(fn)

    async def get(self, server_name: str, now_ms: int) -> DirectoryEntry | None:
        row = await self.db.fetchone(
            f"SELECT {_ENTRY_COLUMNS}{_FROM} WHERE e.server_name = ? AND e.expires_ts > ?",
            (server_name, now_ms),
        )
        return _entry(row) if row else None

    async def search(
        self,
        *,
        now_ms: int,
        words: list[str] | None = None,
        specialty: str | None = None,
        location: str | None = None,
        verified_only: bool = False,
        after: tuple[int, str, str] | None = None,
        limit: int,
    ) -> list[DirectoryEntry]:
        """Live entries matching every given filter, in (verified first, name, server)
        order, starting after the keyset position ``after``. ``words`` must each
        appear in the name or description; ``location`` is a substring; ``specialty``
        matches a specialty exactly, case-insensitively."""
        clauses = ["e.expires_ts > ?"]
        args: list[Any] = [now_ms]
        for word in words or []:
            clauses.append("e.search_text LIKE ? ESCAPE '\\'")
            args.append("%" + like_escape(word.casefold()) + "%")
        if location:
            clauses.append("e.location_key LIKE ? ESCAPE '\\'")
            args.append("%" + like_escape(location.casefold()) + "%")
        if specialty:
            clauses.append(
                "EXISTS (SELECT 1 FROM partner_directory_specialties s"
                " WHERE s.server_name = e.server_name AND s.specialty = ?)"
            )
            args.append(specialty.casefold())
        if verified_only:
            clauses.append("v.server_name IS NOT NULL")
        if after is not None:
            rank, key, server = after
            clauses.append(
                f"({_VERIFIED_RANK} > ? OR ({_VERIFIED_RANK} = ? AND"
                " (e.name_key > ? OR (e.name_key = ? AND e.server_name > ?))))"
            )
            args.extend((rank, rank, key, key, server))
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY_COLUMNS}{_FROM} WHERE {' AND '.join(clauses)}"
            f" ORDER BY {_VERIFIED_RANK}, e.name_key, e.server_name LIMIT ?",
            (*args, limit),
        )
        return [_entry(r) for r in rows]

    async def get_many(self, server_names: list[str], now_ms: int) -> list[DirectoryEntry]:
        if not server_names:
            return []
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY_COLUMNS}{_FROM} WHERE e.server_name IN ({marks(server_names)}) AND e.expires_ts > ?",
            (*server_names, now_ms),
        )
        return [_entry(r) for r in rows]

    async def mutual_partner_counts(self, server_name: str, now_ms: int) -> dict[str, list[str]]:
        """Other live entries that publish partners shared with ``server_name``'s
        published partners: server -> the shared partners."""
        rows = await self.db.fetchall(
            "SELECT p2.server_name, p2.partner FROM partner_directory_partners p1"
            " JOIN partner_directory_partners p2 ON p2.partner = p1.partner"
            " JOIN partner_directory_entries e ON e.server_name = p2.server_name"
            " WHERE p1.server_name = ? AND p2.server_name <> ? AND e.expires_ts > ?",
            (server_name, server_name, now_ms),
        )
        out: dict[str, list[str]] = {}
        for other, partner in rows:
            out.setdefault(other, []).append(partner)
        return out

    async def shared_specialties(self, specialties: list[str], exclude: str, now_ms: int) -> dict[str, set[str]]:
        """Live entries with any of ``specialties`` (case-folded): server -> those shared."""
        if not specialties:
            return {}
        rows = await self.db.fetchall(
            "SELECT s.server_name, s.specialty FROM partner_directory_specialties s"
            " JOIN partner_directory_entries e ON e.server_name = s.server_name"
            f" WHERE s.specialty IN ({marks(specialties)}) AND s.server_name <> ? AND e.expires_ts > ?",
            (*specialties, exclude, now_ms),
        )
        out: dict[str, set[str]] = {}
        for other, specialty in rows:
            out.setdefault(other, set()).add(specialty)
        return out

    async def listing_as_partner(self, server_name: str, now_ms: int) -> list[str]:
        """Live entries whose published partner list names ``server_name``."""
        rows = await self.db.fetchall(
            "SELECT p.server_name FROM partner_directory_partners p"
            " JOIN partner_directory_entries e ON e.server_name = p.server_name"
            " WHERE p.partner = ? AND e.expires_ts > ?",
            (server_name, now_ms),
        )
        return [r[0] for r in rows]

    async def set_verification(self, server_name: str, by: str, now_ms: int, note: str | None) -> None:
        async def fn(txn: Txn) -> None:
            await txn.execute("DELETE FROM partner_directory_verifications WHERE server_name = ?", (server_name,))
            await txn.execute(
                "INSERT INTO partner_directory_verifications (server_name, verified_by, verified_ts, note)"
                " VALUES (?, ?, ?, ?)",
                (server_name, by, now_ms, note),
            )

        await self.db.write(fn)

    async def clear_verification(self, server_name: str) -> bool:
        n = await self.db.execute(
            "DELETE FROM partner_directory_verifications WHERE server_name = ?", (server_name,)
        )
        return n > 0

    async def get_verification(self, server_name: str) -> Verification | None:
        row = await self.db.fetchone(
            "SELECT verified_by, verified_ts, note FROM partner_directory_verifications WHERE server_name = ?",
            (server_name,),
        )
        return Verification(row[0], int(row[1]), row[2]) if row else None


async def _replace_rows(txn: Txn, table: str, column: str, server_name: str, values: list[str]) -> None:
    await txn.execute(f"DELETE FROM {table} WHERE server_name = ?", (server_name,))
    if values:
        await txn.executemany(
            f"INSERT INTO {table} (server_name, {column}) VALUES (?, ?)",
            [(server_name, v) for v in values],
        )


_PUBLICATION_COLUMNS = (
    "directory, last_attempt_ts, last_success_ts, expires_ts, verified, last_error, withdrawn"
)


def _publication(row: Row) -> Publication:
    return Publication(row[0], row[1], row[2], row[3], bool(row[4]), row[5], bool(row[6]))


class PublicationStore:
    """Publisher side: how our profile stands at each directory, so an operator can
    see failures, and a restart knows which directories it must withdraw from."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _ensure(self, txn: Txn, directory: str) -> None:
        if await txn.fetchone(
            "SELECT 1 FROM partner_directory_publications WHERE directory = ?", (directory,)
        ) is None:
            await txn.execute("INSERT INTO partner_directory_publications (directory) VALUES (?)", (directory,))

    async def record_success(self, directory: str, now_ms: int, expires_ts: int | None, verified: bool) -> None:
        async def fn(txn: Txn) -> None:
            await self._ensure(txn, directory)
            await txn.execute(
                "UPDATE partner_directory_publications SET last_attempt_ts = ?, last_success_ts = ?,"
                " expires_ts = ?, verified = ?, last_error = NULL, withdrawn = 0 WHERE directory = ?",
                (now_ms, now_ms, expires_ts, int(verified), directory),
            )

        await self.db.write(fn)

    async def record_failure(self, directory: str, now_ms: int, error: str) -> None:
        async def fn(txn: Txn) -> None:
            await self._ensure(txn, directory)
            await txn.execute(
                "UPDATE partner_directory_publications SET last_attempt_ts = ?, last_error = ?"
                " WHERE directory = ?",
                (now_ms, error[:500], directory),
            )

        await self.db.write(fn)

    async def record_withdrawn(self, directory: str, now_ms: int) -> None:
        async def fn(txn: Txn) -> None:
            await self._ensure(txn, directory)
            await txn.execute(
                "UPDATE partner_directory_publications SET last_attempt_ts = ?, expires_ts = NULL,"
                " verified = 0, last_error = NULL, withdrawn = 1 WHERE directory = ?",
                (now_ms, directory),
            )

        await self.db.write(fn)

    async def forget(self, directory: str) -> None:
        await self.db.execute("DELETE FROM partner_directory_publications WHERE directory = ?", (directory,))

    async def list(self) -> list[Publication]:
        rows = await self.db.fetchall(
            f"SELECT {_PUBLICATION_COLUMNS} FROM partner_directory_publications ORDER BY directory"
        )
        return [_publication(r) for r in rows]
