"""Searching the directories in ``partner_directory.search`` for our users.

Every configured directory is asked at once, each with its own timeout; one
that is down, slow or answers garbage is reported under ``failed`` and the
others' results are still returned. Results are merged by server name (a
server is one organization whichever directory lists it), keeping which
directories list it and which of them verified it: verification is a claim of
that directory's operator, so the user sees who vouches.

A directory's answer is remote input like any other: every entry is revalidated
with the same profile rules a directory applies on publish, and entries that
fail are dropped.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from federation.client import FederationError
from homeserver.errors import MatrixError, invalid_param
from homeserver.identifiers import is_valid_server_name
from homeserver.partners.directory import (
    MAX_LIMIT,
    MAX_TOKEN,
    SearchQuery,
    decode_token,
    encode_token,
)
from homeserver.partners.directory_profile import (
    MAX_PARTNERS,
    MAX_SPECIALTIES,
    MAX_SPECIALTY,
    validate_profile,
)
from homeserver.partners.directory_publisher import DIRECTORY_PREFIX

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.config import PartnerDirectoryConfig
    from homeserver.partners.directory import PartnerDirectory

SEARCH_PATH = DIRECTORY_PREFIX + "/search"
RECOMMENDATIONS_PATH = DIRECTORY_PREFIX + "/recommendations"


def _clean_entry(item: Any) -> dict[str, Any] | None:
    """A directory's entry reduced to what we validated, or None."""
    if not isinstance(item, dict):
        return None
    name = item.get("server_name")
    if not isinstance(name, str) or not is_valid_server_name(name):
        return None
    try:
        profile = validate_profile(item.get("profile"))
    except MatrixError:
        return None
    updated = item.get("updated_ts")
    return {
        "server_name": name,
        "profile": profile,
        "verified": item.get("verified") is True,
        "updated_ts": updated if type(updated) is int else 0,
    }


def _clean_explanation(value: Any) -> dict[str, Any]:
    """The parts of a directory's score explanation we understand, bounded."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    mutual = value.get("mutual_partners")
    if isinstance(mutual, list):
        out["mutual_partners"] = [
            p for p in mutual[:MAX_PARTNERS] if isinstance(p, str) and is_valid_server_name(p)
        ]
    shared = value.get("shared_specialties")
    if isinstance(shared, list):
        out["shared_specialties"] = [
            s for s in shared[:MAX_SPECIALTIES] if isinstance(s, str) and len(s) <= MAX_SPECIALTY
        ]
    if isinstance(value.get("verified"), bool):
        out["verified"] = value["verified"]
    reasons = value.get("reasons")
    if isinstance(reasons, list):
        out["reasons"] = [r for r in reasons[:10] if isinstance(r, str) and len(r) <= 2000]
    return out


class DirectorySearch:
    def __init__(
        self, *, config: PartnerDirectoryConfig, server_name: str, directory: PartnerDirectory,
        client: FederationClient | None,
    ) -> None:
        self.config = config
        self.server_name = server_name
        self.directory = directory  # our own directory, asked without a round trip
        self.client = client  # None when federation is off

    @property
    def directories(self) -> list[str]:
        return list(self.config.search)

    async def _ask(self, directory: str, path: str, query: dict[str, str]) -> Any:
        """One directory's answer (this server's own directory without a round trip)."""
        own = self.directory
        if directory == self.server_name and own.serving:
            if path == SEARCH_PATH:
                return await own.search(SearchQuery.from_json(query, strings=True))
            return await own.recommendations(self.server_name, int(query["limit"]))
        client = self.client
        if client is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Federation is disabled on this server")
        timeout = self.config.search_timeout_s
        async with asyncio.timeout(timeout):
            return await client.get_json(directory, path, query=query, timeout_s=timeout)

    async def _fan_out(
        self, targets: dict[str, dict[str, str]], path: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        async def one(directory: str, query: dict[str, str]) -> tuple[str, Any, str | None]:
            try:
                return directory, await self._ask(directory, path, query), None
            except TimeoutError:
                return directory, None, "timed out"
            except FederationError as e:
                return directory, None, getattr(e, "message", None) or str(e) or type(e).__name__
            except MatrixError as e:
                return directory, None, e.message

        answers: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for directory, answer, error in await asyncio.gather(*(one(d, q) for d, q in targets.items())):
            if error is None and not isinstance(answer, dict):
                error = "not a JSON object"
            if error is not None:
                failed[directory] = error[:200]
            else:
                answers[directory] = answer
        return answers, failed

    async def search(self, query: SearchQuery) -> dict[str, Any]:
        """One page of merged results. ``query.since`` is our own token holding each
        directory's paging token; directories that had no more are not asked again."""
        if not self.directories:
            return {"results": [], "directories": [], "failed": {}}
        if query.since:
            positions = decode_token(query.since)
            if not isinstance(positions, dict) or not all(
                d in self.directories and isinstance(t, str) and len(t) <= MAX_TOKEN
                for d, t in positions.items()
            ):
                raise invalid_param("'since' is not a valid token")
        else:
            positions = dict.fromkeys(self.directories)
        targets: dict[str, dict[str, str]] = {}
        for directory, position in positions.items():
            q = SearchQuery(query.q, query.specialty, query.location, query.verified_only,
                            query.limit, position)
            targets[directory] = q.as_query()
        answers, failed = await self._fan_out(targets, SEARCH_PATH)
        merged: dict[str, dict[str, Any]] = {}
        next_positions: dict[str, str] = {}
        for directory in self.directories:
            answer = answers.get(directory)
            if answer is None:
                continue
            results = answer.get("results")
            if not isinstance(results, list):
                failed[directory] = "malformed answer"
                continue
            for item in results[:MAX_LIMIT]:
                entry = _clean_entry(item)
                if entry is not None:
                    self._merge(merged, entry, directory)
            token = answer.get("next_batch")
            if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN:
                next_positions[directory] = token
        results_list = sorted(
            merged.values(),
            key=lambda e: (not e["verified"], e["profile"]["name"].casefold(), e["server_name"]),
        )
        out: dict[str, Any] = {
            "results": results_list,
            "directories": sorted(answers),
            "failed": failed,
        }
        if next_positions:
            out["next_batch"] = encode_token(next_positions)
        return out

    @staticmethod
    def _merge(merged: dict[str, dict[str, Any]], entry: dict[str, Any], directory: str) -> None:
        name = entry["server_name"]
        current = merged.get(name)
        if current is None:
            current = merged[name] = {
                "server_name": name,
                "profile": entry["profile"],
                "updated_ts": entry["updated_ts"],
                "verified": False,
                "listed_by": [],
                "verified_by": [],
            }
        elif entry["updated_ts"] > current["updated_ts"]:
            # The freshest copy of the profile wins; every directory still counts.
            current["profile"], current["updated_ts"] = entry["profile"], entry["updated_ts"]
        current["listed_by"].append(directory)
        if entry["verified"]:
            current["verified_by"].append(directory)
            current["verified"] = True

    async def recommendations(self, limit: int) -> dict[str, Any]:
        """Every directory's recommendations for our organization, merged: the best
        score any directory gave, with each directory's explanation."""
        targets = {d: {"limit": str(limit)} for d in self.directories}
        answers, failed = await self._fan_out(targets, RECOMMENDATIONS_PATH)
        merged: dict[str, dict[str, Any]] = {}
        for directory in self.directories:
            answer = answers.get(directory)
            if answer is None:
                continue
            recs = answer.get("recommendations")
            if not isinstance(recs, list):
                failed[directory] = "malformed answer"
                continue
            for rec in recs[:MAX_LIMIT]:
                if not isinstance(rec, dict):
                    continue
                entry = _clean_entry(rec.get("entry"))
                score = rec.get("score")
                if entry is None or type(score) is not int:
                    continue
                explanation = rec.get("explanation")
                name = entry["server_name"]
                current = merged.setdefault(name, {
                    "server_name": name, "profile": entry["profile"], "score": score,
                    "verified_by": [], "explanations": {},
                })
                current["score"] = max(current["score"], score)
                if entry["verified"]:
                    current["verified_by"].append(directory)
                current["explanations"][directory] = _clean_explanation(explanation)
        ranked = sorted(merged.values(), key=lambda r: (-r["score"], r["server_name"]))
        return {"recommendations": ranked[:limit], "directories": sorted(answers), "failed": failed}
