"""The key ring: which public keys of other servers we trust, and until when.

Keys are fetched from the server itself (``GET /_matrix/key/v2/server``) and,
failing that, through the configured notaries (``POST /_matrix/key/v2/query``),
verified (see :mod:`federation.server_keys`), and cached in memory (bounded)
and in the database, so a restart or an unreachable peer does not stop us
checking signatures we could check before.

Validity: each key carries a ``valid_until_ts`` (for a retired key, its
``expired_ts``). A caller asks for keys valid until at least some time:
``now`` for request authentication, the event's ``origin_server_ts`` for event
signatures in room versions 5 and later (the auth code passes it).

Fetches are caused by others (a signed request from a server we do not know, a
notary query), so they are bounded: one fetch per server at a time, shared by
everyone who asks meanwhile; at most one per server per second counted from
the end of the last one (30 s for key IDs already looked for); and, for a
fetch caused by a request, the requester's ``remote_key_fetch`` rate limit.
Where the fetch may connect to is the federation client's outbound guard.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from federation.client import FederationClient, FederationError
from federation.events.canonical import encode_base64
from federation.events.signing import VerifyKey, decode_verify_key_base64, key_id_of
from federation.server_keys import (
    KeyResponseError,
    OldVerifyKey,
    ServerKeys,
    build_server_keys,
    notary_sign,
    parse_notary_response,
    parse_server_keys,
)
from federation.single_flight import SingleFlight
from homeserver.clock import Clock
from homeserver.config import OldSigningKey, TrustedKeyServer
from homeserver.ratelimit import RateLimiter
from homeserver.records.server_keys import StoredKey, StoredResponse
from homeserver.signing_key import SigningKey
from homeserver.storage.server_keys import ServerKeyStore

logger = logging.getLogger(__name__)

# A peer signing with a key ID we cannot find must not make us re-fetch its keys
# on every request: at most one fetch per server per this many seconds.
REFETCH_INTERVAL_S = 30.0
# ...except for key IDs the last fetch did not look for: a peer that has just rotated
# its key signs with a new ID, and its next events must not wait out the 30 s.
# Still at most one fetch per server per second, however many new IDs are named.
NEW_KEY_REFETCH_INTERVAL_S = 1.0
MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True)
class _CachedKey:
    verify_key: VerifyKey
    valid_until_ts: int


class KeyRing:
    """Fetches, verifies, caches and serves server signing keys."""

    def __init__(
        self,
        *,
        server_name: str,
        signing_key: SigningKey,
        store: ServerKeyStore,
        client: FederationClient | None,
        clock: Clock,
        trusted_key_servers: Sequence[TrustedKeyServer] = (),
        key_validity_ms: int = 86_400_000,
        old_signing_keys: Mapping[str, OldSigningKey] | None = None,
        ratelimiter: RateLimiter | None = None,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        # Our retired keys (config `old_signing_keys`): published as old_verify_keys
        # so peers can still verify what we signed with them before expired_ts.
        self.old_verify_keys: dict[str, OldVerifyKey] = {
            kid: OldVerifyKey(decode_verify_key_base64(kid, old.key), old.expired_ts)
            for kid, old in (old_signing_keys or {}).items()
            if kid != key_id_of(signing_key)
        }
        self.store = store
        self.client = client  # None: federation disabled, use what is stored only
        self.clock = clock
        self.key_validity_ms = key_validity_ms
        self.notaries: list[tuple[str, dict[str, VerifyKey]]] = [
            (
                t.server_name,
                {kid: decode_verify_key_base64(kid, k) for kid, k in t.verify_keys.items()},
            )
            for t in trusted_key_servers
        ]
        self._cache: OrderedDict[tuple[str, str], _CachedKey] = OrderedDict()
        self.ratelimiter = ratelimiter
        # One fetch of a server's keys at a time; whoever asks meanwhile waits for it.
        self._fetches: SingleFlight[str, None] = SingleFlight()
        # server -> (monotonic time the last fetch ended, or started while it runs;
        # key IDs it was made for)
        self._last_fetch: dict[str, tuple[float, frozenset[str]]] = {}
        self._own_response: dict | None = None

    # --- our own keys --------------------------------------------------------

    def own_key_response(self) -> dict:
        """Our signed ``/_matrix/key/v2/server`` response.

        Re-signed once less than half its validity remains, so peers (and
        notaries, who cache for half the lifetime) never get a nearly-expired one.
        """
        now = self.clock.time_ms()
        cached = self._own_response
        if cached is None or cached["valid_until_ts"] - now < self.key_validity_ms // 2:
            cached = build_server_keys(
                self.server_name, [self.signing_key], now + self.key_validity_ms,
                old_verify_keys=self.old_verify_keys,
            )
            self._own_response = cached
        return cached

    # --- lookups -------------------------------------------------------------

    async def get_verify_keys(
        self,
        server_name: str,
        key_ids: Collection[str],
        minimum_valid_until_ts: int | None = None,
        *,
        requester: str | None = None,
    ) -> dict[str, VerifyKey]:
        """Those of ``key_ids`` we can vouch for as valid until at least
        ``minimum_valid_until_ts`` (default: now), fetching what is missing.

        Returns fewer keys than asked when some cannot be found or verified;
        the caller decides whether that fails the signature check.
        ``requester`` (a client IP) is who caused the look-up: a fetch it would
        start counts against its ``remote_key_fetch`` rate limit (429 when spent).
        """
        min_ts = self.clock.time_ms() if minimum_valid_until_ts is None else minimum_valid_until_ts
        wanted = set(key_ids)
        if server_name == self.server_name:
            return self._own_keys(wanted, min_ts)
        found = self._from_memory(server_name, wanted, min_ts)
        if len(found) == len(wanted):
            return found
        for k in await self.store.get_keys(server_name, wanted - found.keys()):
            self._remember(server_name, k.key_id, decode_verify_key_base64(k.key_id, k.verify_key),
                           k.valid_until_ts)
        found = self._from_memory(server_name, wanted, min_ts)
        if len(found) == len(wanted) or self.client is None:
            return found
        missing = wanted - found.keys()
        if not self._fetches.in_flight(server_name):
            if self._throttled(server_name, missing):
                return found
            if requester is not None and self.ratelimiter is not None:
                self.ratelimiter.check("remote_key_fetch", requester)
            self._fetch_started(server_name, missing)
        await self._fetches.run(server_name, lambda: self._fetch(server_name, missing, min_ts))
        return self._from_memory(server_name, wanted, min_ts)

    async def _fetch(self, server_name: str, key_ids: set[str], min_ts: int) -> None:
        """From the server itself, then the notaries for what it did not give us."""
        try:
            await self._fetch_direct(server_name)
            missing = {kid for kid in key_ids if not self._from_memory(server_name, {kid}, min_ts)}
            if missing:
                await self._fetch_from_notaries(server_name, missing, min_ts)
        finally:
            self._fetch_ended(server_name)

    def _throttled(self, server_name: str, missing: set[str]) -> bool:
        """Whether a fetch of ``server_name``'s keys for ``missing`` must wait."""
        last = self._last_fetch.get(server_name)
        if last is None:
            return False
        elapsed = self.clock.monotonic() - last[0]
        return elapsed < NEW_KEY_REFETCH_INTERVAL_S or (
            elapsed < REFETCH_INTERVAL_S and missing <= last[1]
        )

    def _fetch_started(self, server_name: str, key_ids: set[str]) -> None:
        self._last_fetch[server_name] = (self.clock.monotonic(), frozenset(key_ids))
        if len(self._last_fetch) > MAX_CACHED_KEYS:
            horizon = self.clock.monotonic() - REFETCH_INTERVAL_S
            self._last_fetch = {s: v for s, v in self._last_fetch.items() if v[0] > horizon}

    def _fetch_ended(self, server_name: str) -> None:
        """The intervals count from the end of a fetch: one that took its whole
        timeout must not let the next start the moment it gives up."""
        last = self._last_fetch.get(server_name)
        if last is not None:
            self._last_fetch[server_name] = (self.clock.monotonic(), last[1])

    def _own_keys(self, wanted: set[str], min_ts: int) -> dict[str, VerifyKey]:
        """Our current key, and each retired one for what was signed before it expired
        (events of ours we get back, e.g. in a peer's state, may predate a rotation)."""
        out: dict[str, VerifyKey] = {}
        kid = key_id_of(self.signing_key)
        if kid in wanted:
            out[kid] = self.signing_key.verify_key
        for old_id, old in self.old_verify_keys.items():
            if old_id in wanted and old.expired_ts >= min_ts:
                out[old_id] = old.verify_key
        return out

    def _from_memory(self, server_name: str, key_ids: set[str], min_ts: int) -> dict[str, VerifyKey]:
        out: dict[str, VerifyKey] = {}
        for kid in key_ids:
            entry = self._cache.get((server_name, kid))
            if entry is not None and entry.valid_until_ts >= min_ts:
                out[kid] = entry.verify_key
                self._cache.move_to_end((server_name, kid))
        return out

    def _remember(self, server_name: str, key_id: str, vk: VerifyKey, valid_until_ts: int) -> None:
        key = (server_name, key_id)
        old = self._cache.get(key)
        if old is not None and old.valid_until_ts > valid_until_ts:
            return
        self._cache[key] = _CachedKey(vk, valid_until_ts)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED_KEYS:
            self._cache.popitem(last=False)

    async def _save(self, keys: ServerKeys, source: str) -> None:
        now = self.clock.time_ms()
        rows = [
            StoredKey(keys.server_name, kid, encode_base64(vk.encode()), keys.valid_until_ts, None,
                      now, source)
            for kid, vk in keys.verify_keys.items()
        ]
        rows += [
            StoredKey(keys.server_name, kid, encode_base64(old.verify_key.encode()), old.expired_ts,
                      old.expired_ts, now, source)
            for kid, old in keys.old_verify_keys.items()
            if kid not in keys.verify_keys
        ]
        await self.store.store_keys(
            rows, StoredResponse(keys.server_name, keys.valid_until_ts, now, keys.raw)
        )
        for r in rows:
            self._remember(r.server_name, r.key_id, decode_verify_key_base64(r.key_id, r.verify_key),
                           r.valid_until_ts)

    async def _fetch_direct_only(self, server_name: str) -> None:
        try:
            await self._fetch_direct(server_name)
        finally:
            self._fetch_ended(server_name)

    async def _fetch_direct(self, server_name: str) -> ServerKeys | None:
        """Ask the server itself; None (logged) if it cannot be reached or lies."""
        assert self.client is not None
        try:
            response = await self.client.get_json(server_name, "/_matrix/key/v2/server", signed=False)
            keys = parse_server_keys(
                response, expected_server_name=server_name, now_ms=self.clock.time_ms()
            )
        except (FederationError, KeyResponseError) as exc:
            logger.info("cannot fetch keys of %s directly: %s", server_name, exc)
            return None
        await self._save(keys, server_name)
        return keys

    async def _fetch_from_notaries(self, server_name: str, key_ids: Collection[str], min_ts: int) -> None:
        assert self.client is not None
        criteria = {kid: {"minimum_valid_until_ts": min_ts} for kid in key_ids}
        for notary, notary_keys in self.notaries:
            if notary == server_name:
                continue
            try:
                response = await self.client.post_json(
                    notary, "/_matrix/key/v2/query", {"server_keys": {server_name: criteria}},
                    signed=False,
                )
                results = parse_notary_response(
                    response, notary_name=notary, notary_keys=notary_keys,
                    now_ms=self.clock.time_ms(), expected_servers=[server_name],
                )
            except (FederationError, KeyResponseError) as exc:
                logger.info("notary %s could not vouch for %s's keys: %s", notary, server_name, exc)
                continue
            for keys in results:
                await self._save(keys, notary)
            if all(self._from_memory(server_name, {kid}, min_ts) for kid in key_ids):
                return

    # --- acting as a notary --------------------------------------------------

    async def notary_query(
        self, server_name: str, key_ids: Collection[str], minimum_valid_until_ts: int | None
    ) -> list[dict]:
        """Key responses for ``server_name``, co-signed by us (``/_matrix/key/v2/query``).

        Served from what we stored when it is fresh enough and names the
        requested keys; otherwise fetched anew; if the server cannot be reached,
        the last response we have is still returned (the spec wants that, so
        old events stay checkable). Empty when we know nothing.
        """
        if server_name == self.server_name:
            return [self.own_key_response()]
        min_ts = self.clock.time_ms() if minimum_valid_until_ts is None else minimum_valid_until_ts
        stored = await self.store.get_response(server_name)
        if self.client is not None and not _satisfies(stored, key_ids, min_ts):
            wanted = set(key_ids)
            joining = self._fetches.in_flight(server_name)
            if joining or not self._throttled(server_name, wanted):
                if not joining:
                    self._fetch_started(server_name, wanted)
                await self._fetches.run(server_name, lambda: self._fetch_direct_only(server_name))
                stored = await self.store.get_response(server_name)
        if stored is None:
            return []
        return [notary_sign(stored.response, self.server_name, self.signing_key)]


def _satisfies(stored: StoredResponse | None, key_ids: Collection[str], min_ts: int) -> bool:
    if stored is None or stored.valid_until_ts < min_ts:
        return False
    listed = set(stored.response.get("verify_keys", {})) | set(stored.response.get("old_verify_keys", {}))
    return all(kid in listed for kid in key_ids)

