"""Stored filters (the spec's POST/GET /user/{userId}/filter) and the filter /sync loads.

A filter is stored as uploaded, so GET returns what the client sent; it is
validated first, so a stored filter always parses. Clients upload the same
filter at every start, so an identical definition returns the ID it already
has. /sync loads a filter on every request, so stored ones are cached (they
never change once stored).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

from federation.events.json_bounds import JSONBoundsError, loads_bounded
from homeserver.errors import MatrixError, not_found
from homeserver.filters.event_filter import filter_json_error
from homeserver.filters.sync_filter import SyncFilter
from homeserver.storage.filters import FilterStore

_CACHE_SIZE = 10_000
_NO_FILTER = SyncFilter()  # frozen: one instance serves every /sync without a filter


class FilterService:
    def __init__(self, store: FilterStore) -> None:
        self.store = store
        self._cache: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        # (user, stored filter ID) -> the parsed filter: every long poll of a client
        # names the same filter, and parsing it again each time costs more than the
        # rest of an incremental sync.
        self._parsed: OrderedDict[tuple[str, str], SyncFilter] = OrderedDict()

    async def create(self, user_id: str, definition: dict[str, Any]) -> str:
        """Store a validated filter; returns its ID (the existing one for a
        definition this user already stored)."""
        SyncFilter.parse(definition)
        data = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()
        digest = hashlib.sha256(data.encode()).hexdigest()
        return str(await self.store.add(user_id, digest, data))

    async def get(self, user_id: str, filter_id: str) -> dict[str, Any]:
        """A stored filter of this user; M_NOT_FOUND for any other ID."""
        key = (user_id, filter_id)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        # isascii: str.isdigit admits "²", which int() refuses.
        if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 18:  # beyond a BIGINT
            raise not_found("No such filter")
        stored = await self.store.get(user_id, int(filter_id))
        if stored is None:
            raise not_found("No such filter")
        definition: dict[str, Any] = orjson.loads(stored)
        self._cache[key] = definition
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return definition

    async def sync_filter(self, user_id: str, filter_param: str | None) -> SyncFilter:
        """/sync's `filter` parameter as a parsed filter (`load_filter`, then
        `SyncFilter.parse`; M_BAD_JSON when it is not an object). Stored filters
        never change, so each is parsed once; inline JSON is parsed every time."""
        if filter_param is None:
            return _NO_FILTER
        stored = not filter_param.lstrip().startswith("{")
        key = (user_id, filter_param)
        if stored and key in self._parsed:
            self._parsed.move_to_end(key)
            return self._parsed[key]
        definition: Any = await self.load_filter(user_id, filter_param)
        if not isinstance(definition, dict):
            raise MatrixError(400, "M_BAD_JSON", "Filter must be an object")
        parsed = SyncFilter.parse(definition)
        if stored:
            self._parsed[key] = parsed
            if len(self._parsed) > _CACHE_SIZE:
                self._parsed.popitem(last=False)
        return parsed

    async def load_filter(self, user_id: str, filter_param: str | None) -> dict[str, Any]:
        """What /sync's `filter` parameter names: inline JSON (it starts with "{",
        which no filter ID does) or the ID of one of the user's stored filters.
        None means no filter ({}). Parse the result with `SyncFilter.parse`."""
        if filter_param is None or filter_param == "":
            return {}
        if filter_param.lstrip().startswith("{"):
            try:
                definition: Any = loads_bounded(filter_param)
            except JSONBoundsError as e:
                raise filter_json_error(e) from None
            SyncFilter.parse(definition)
            return definition
        return await self.get(user_id, filter_param)
