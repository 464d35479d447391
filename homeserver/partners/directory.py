"""The partner directory this server serves (``partner_directory.serve``).

Organizations publish their profile with a signed federation request; the entry
is keyed by the X-Matrix origin that signed it, never by a body field, so a
listing for ``example.org`` was put there by whoever holds example.org's
signing key. Publishing again replaces the entry and restarts its TTL; an entry
that is not refreshed within the TTL stops being listed, so organizations that
vanish vanish from the directory too. The directory's own server admins mark
organizations verified (they checked, out of band, that the server belongs to
who it says), which searches can filter on and recommendations weigh.

Recommendations rank other organizations for the asking one by mutual partners
(only between organizations that chose to publish their partner lists), shared
specialties and verification, and say how each score was made so the ranking is
never a black box.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from homeserver import base64url
from homeserver.background import cancel_and_wait
from homeserver.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.identifiers import is_valid_server_name
from homeserver.partners.directory_profile import (
    MAX_LOCATION,
    MAX_SPECIALTY,
    normalize_specialty,
    validate_profile,
)
from homeserver.records.partner_directory import DirectoryEntry
from homeserver.storage.partner_directory import PartnerDirectoryStore

if TYPE_CHECKING:
    from homeserver.audit import AuditLog
    from homeserver.clock import Clock
    from homeserver.config import PartnerDirectoryConfig

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY = 256
MAX_WORDS = 8
MAX_TOKEN = 1024
# Weights of a recommendation's score; the answer spells out each contribution.
MUTUAL_PARTNER_POINTS = 3
SHARED_SPECIALTY_POINTS = 2
VERIFIED_POINTS = 1


@dataclass(frozen=True)
class SearchQuery:
    """A directory search, parsed and bounded the same way wherever it came from
    (federation query string or JSON body, or a user's client request)."""

    q: str = ""
    specialty: str = ""
    location: str = ""
    verified_only: bool = False
    limit: int = DEFAULT_LIMIT
    since: str | None = None

    @property
    def words(self) -> list[str]:
        return self.q.casefold().split()

    def as_query(self) -> dict[str, str]:
        """The federation query string for this search (empty filters left out)."""
        out = {"limit": str(self.limit)}
        for key in ("q", "specialty", "location"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.verified_only:
            out["verified_only"] = "true"
        if self.since:
            out["since"] = self.since
        return out

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, strings: bool = False) -> SearchQuery:
        """From a JSON body, or (``strings``) a query string whose values are all text."""

        def text(name: str, limit: int) -> str:
            value = body.get(name)
            if value is None:
                return ""
            if not isinstance(value, str):
                raise bad_json(f"'{name}' must be a string")
            if len(value) > limit:
                raise MatrixError(400, "M_TOO_LARGE", f"'{name}' is longer than {limit} characters")
            return " ".join(value.split())

        verified = body.get("verified_only", False)
        if strings and isinstance(verified, str):
            if verified not in ("true", "false", "1", "0", ""):
                raise invalid_param("'verified_only' must be true or false")
            verified = verified in ("true", "1")
        if not isinstance(verified, bool):
            raise bad_json("'verified_only' must be a boolean")
        limit: Any = body.get("limit")
        if limit is None or limit == "":
            limit = DEFAULT_LIMIT
        elif strings and isinstance(limit, str):
            if not limit.isascii() or not limit.isdigit() or len(limit) > 6:
                raise invalid_param("'limit' must be a positive integer")
            limit = int(limit)
        if type(limit) is not int:
            raise bad_json("'limit' must be an integer")
        if limit < 1:
            raise invalid_param("'limit' must be at least 1")
        since = body.get("since")
        if since is not None and not isinstance(since, str):
            raise bad_json("'since' must be a string")
        if since is not None and len(since) > MAX_TOKEN:
            raise invalid_param("'since' is not a valid token")
        return cls(
            q=text("q", MAX_QUERY),
            specialty=text("specialty", MAX_SPECIALTY),
            location=text("location", MAX_LOCATION),
            verified_only=verified,
            limit=min(limit, MAX_LIMIT),
            since=since or None,
        )


def encode_token(value: Any) -> str:
    return base64url.encode(orjson.dumps(value))


def decode_token(token: str) -> Any:
    """A token this server made, or M_INVALID_PARAM: tokens are opaque to clients
    and anything else is a forgery or a typo."""
    try:
        return orjson.loads(base64url.decode(token))
    except (ValueError, orjson.JSONDecodeError):
        raise invalid_param("'since' is not a valid token") from None


def _decode_position(token: str) -> tuple[int, str, str]:
    value = decode_token(token)
    if (
        not isinstance(value, list) or len(value) != 3 or value[0] not in (0, 1)
        or not isinstance(value[1], str) or not isinstance(value[2], str)
    ):
        raise invalid_param("'since' is not a valid token")
    return int(value[0]), value[1], value[2]


def entry_json(entry: DirectoryEntry) -> dict[str, Any]:
    """An entry as the directory serves it (searches, recommendations, admin API)."""
    out: dict[str, Any] = {
        "server_name": entry.server_name,
        "profile": entry.profile,
        "verified": entry.verification is not None,
        "published_ts": entry.published_ts,
        "updated_ts": entry.updated_ts,
        "expires_ts": entry.expires_ts,
    }
    if entry.verification is not None:
        out["verified_ts"] = entry.verification.verified_ts
    return out


class PartnerDirectory:
    """Directory side: publish, withdraw, search, recommend, and the operator's
    verification and removal."""

    SWEEP_INTERVAL_S = 3600.0

    def __init__(
        self, *, config: PartnerDirectoryConfig, store: PartnerDirectoryStore, clock: Clock, audit: AuditLog
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.audit = audit
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self.config.serve

    @property
    def ttl_ms(self) -> int:
        return self.config.entry_ttl_s * 1000

    def now(self) -> int:
        return self.clock.time_ms()

    def _require_serving(self) -> None:
        if not self.serving:
            raise MatrixError(404, "M_UNRECOGNIZED", "This server is not a partner directory")

    async def start(self) -> None:
        if self.serving:
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="partner-directory-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

    async def _sweep_loop(self) -> None:
        """Reclaim the rows of expired entries (reads already ignore them)."""
        while True:
            try:
                purged = await self.store.purge_expired(self.now())
                if purged:
                    logger.info("partner directory: %d expired entries removed", purged)
            except Exception:
                logger.exception("partner directory sweep failed")
            await asyncio.sleep(self.SWEEP_INTERVAL_S)

    # --- publishers (signed federation requests) ------------------------------------

    async def publish(self, origin: str, body: Any, *, ip: str | None = None) -> dict[str, Any]:
        """Create or replace ``origin``'s entry. A body with ``"withdrawn": true``
        withdraws instead (for publishers that can only PUT)."""
        self._require_serving()
        if isinstance(body, dict) and body.get("withdrawn") is not None:
            if body["withdrawn"] is not True:
                raise bad_json("'withdrawn' may only be true")
            await self.withdraw(origin, ip=ip)
            return {"server_name": origin, "withdrawn": True}
        try:
            profile = validate_profile(body)
        except MatrixError as e:
            await self.audit.record(
                "partner_directory.publish", actor=origin, target=origin, ip=ip, outcome="refused",
                details={"errcode": e.errcode, "error": e.message},
            )
            raise
        now = self.now()
        expires = now + self.ttl_ms
        stored, created, changed = await self.store.upsert(
            origin, profile, now_ms=now, expires_ts=expires, max_entries=self.config.max_entries
        )
        if not stored:
            await self.audit.record(
                "partner_directory.publish", actor=origin, target=origin, ip=ip, outcome="refused",
                details={"error": "directory full"},
            )
            raise MatrixError(403, "M_FORBIDDEN", "This directory is full")
        # Refreshes arrive every TTL/3 from every publisher: only a creation or a
        # changed profile is worth an audit row, or the log would be mostly noise.
        if changed:
            await self.audit.record(
                "partner_directory.publish", actor=origin, target=origin, ip=ip,
                details={"created": created, "name": profile["name"]},
            )
        verification = await self.store.get_verification(origin)
        return {
            "server_name": origin,
            "expires_ts": expires,
            "ttl_s": self.config.entry_ttl_s,
            "verified": verification is not None,
        }

    async def withdraw(self, origin: str, *, ip: str | None = None) -> bool:
        self._require_serving()
        removed = await self.store.delete(origin)
        await self.audit.record(
            "partner_directory.withdraw", actor=origin, target=origin, ip=ip, details={"listed": removed}
        )
        return removed

    async def own_entry(self, origin: str) -> dict[str, Any]:
        self._require_serving()
        entry = await self.store.get(origin, self.now())
        if entry is None:
            raise not_found("This server has no entry in the directory")
        return entry_json(entry)

    # --- readers --------------------------------------------------------------------

    async def search(self, query: SearchQuery) -> dict[str, Any]:
        self._require_serving()
        after = _decode_position(query.since) if query.since else None
        words = query.words[:MAX_WORDS]
        entries = await self.store.search(
            now_ms=self.now(),
            words=words,
            specialty=normalize_specialty(query.specialty) if query.specialty else None,
            location=query.location or None,
            verified_only=query.verified_only,
            after=after,
            limit=query.limit + 1,
        )
        out: dict[str, Any] = {"results": [entry_json(e) for e in entries[: query.limit]]}
        if len(entries) > query.limit:
            out["next_batch"] = encode_token(list(entries[query.limit - 1].sort_key))
        return out

    async def recommendations(self, origin: str, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """Organizations ``origin`` might partner with, best first, each with the
        reasons for its score. Existing partners (either side's published list) and
        ``origin`` itself are left out."""
        self._require_serving()
        now = self.now()
        own = await self.store.get(origin, now)
        own_specialties = [s.casefold() for s in own.profile["specialties"]] if own else []
        own_partners = set(own.profile.get("partners") or []) if own else set()
        publishes_partners = own is not None and "partners" in own.profile
        mutual = await self.store.mutual_partner_counts(origin, now) if publishes_partners else {}
        shared = await self.store.shared_specialties(own_specialties, origin, now)
        exclude = own_partners | set(await self.store.listing_as_partner(origin, now)) | {origin}
        candidates = [s for s in set(mutual) | set(shared) if s not in exclude]
        entries = {e.server_name: e for e in await self.store.get_many(candidates, now)}
        ranked: list[tuple[int, tuple[int, str, str], dict[str, Any]]] = []
        for name, entry in entries.items():
            mutual_partners = sorted(mutual.get(name, []))
            specialties = [s for s in entry.profile["specialties"] if s.casefold() in shared.get(name, set())]
            verified = entry.verification is not None
            parts = {
                "mutual_partners": len(mutual_partners) * MUTUAL_PARTNER_POINTS,
                "shared_specialties": len(specialties) * SHARED_SPECIALTY_POINTS,
                "verified": VERIFIED_POINTS if verified else 0,
            }
            score = sum(parts.values())
            reasons = []
            if mutual_partners:
                reasons.append(
                    f"{len(mutual_partners)} mutual partner(s) ({', '.join(mutual_partners)}):"
                    f" +{parts['mutual_partners']}"
                )
            if specialties:
                reasons.append(
                    f"{len(specialties)} shared specialt{'y' if len(specialties) == 1 else 'ies'}"
                    f" ({', '.join(specialties)}): +{parts['shared_specialties']}"
                )
            if verified:
                reasons.append(f"verified by this directory: +{VERIFIED_POINTS}")
            ranked.append((score, entry.sort_key, {
                "entry": entry_json(entry),
                "score": score,
                "explanation": {
                    "mutual_partners": mutual_partners,
                    "shared_specialties": specialties,
                    "verified": verified,
                    "points": parts,
                    "reasons": reasons,
                },
            }))
        ranked.sort(key=lambda r: (-r[0], r[1]))
        basis = {
            "listed": own is not None,
            "publishes_partners": publishes_partners,
            "specialties": own.profile["specialties"] if own else [],
            "weights": {
                "mutual_partner": MUTUAL_PARTNER_POINTS,
                "shared_specialty": SHARED_SPECIALTY_POINTS,
                "verified": VERIFIED_POINTS,
            },
        }
        return {"recommendations": [r[2] for r in ranked[: min(limit, MAX_LIMIT)]], "based_on": basis}

    # --- the operator (admin API) ---------------------------------------------------

    async def list_entries(self, query: SearchQuery) -> dict[str, Any]:
        """The operator's listing: the same filters and paging as a search."""
        return await self.search(query)

    async def get_entry(self, server_name: str) -> dict[str, Any]:
        self._require_serving()
        _check_server_name(server_name)
        entry = await self.store.get(server_name, self.now())
        verification = await self.store.get_verification(server_name)
        if entry is None and verification is None:
            raise not_found("No such directory entry")
        return {
            "server_name": server_name,
            "entry": entry_json(entry) if entry else None,
            "verification": verification.to_json() if verification else None,
        }

    async def verify(self, server_name: str, *, by: str, note: str | None, ip: str | None) -> dict[str, Any]:
        """Mark an organization verified. Allowed before it publishes (an operator can
        vet a partner first); the mark survives withdrawal and republication, and
        goes only by `unverify` or `remove`."""
        self._require_serving()
        _check_server_name(server_name)
        await self.store.set_verification(server_name, by, self.now(), note)
        await self.audit.record(
            "partner_directory.verify", actor=by, target=server_name, ip=ip, details={"note": note}
        )
        return await self.get_entry(server_name)

    async def unverify(self, server_name: str, *, by: str, ip: str | None) -> dict[str, Any]:
        self._require_serving()
        _check_server_name(server_name)
        removed = await self.store.clear_verification(server_name)
        await self.audit.record(
            "partner_directory.unverify", actor=by, target=server_name, ip=ip, details={"was_verified": removed}
        )
        return {"server_name": server_name, "verified": False, "was_verified": removed}

    async def remove(self, server_name: str, *, by: str, ip: str | None) -> dict[str, Any]:
        """Take an organization out of the directory, verification included. It may
        publish again; a directory that must refuse a server for good should
        refuse it at the federation level."""
        self._require_serving()
        _check_server_name(server_name)
        listed = await self.store.delete(server_name)
        verified = await self.store.clear_verification(server_name)
        if not listed and not verified:
            raise not_found("No such directory entry")
        await self.audit.record(
            "partner_directory.remove", actor=by, target=server_name, ip=ip,
            details={"listed": listed, "was_verified": verified},
        )
        return {"server_name": server_name, "removed": True}


def _check_server_name(server_name: str) -> None:
    if not is_valid_server_name(server_name):
        raise invalid_param("Not a valid server name")
