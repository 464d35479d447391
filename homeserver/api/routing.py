"""Route lookup for paths that share a prefix up to a variable, such as the client
API's ``/rooms/{room_id}/...``: found by the segment after the variable, not tried
one by one.

aiohttp's router indexes a route with variables by the literal path before its first
variable, and tries every route of that index entry in registration order, one
regular expression each. All 29 ``/_matrix/client/v3/rooms/{room_id}/...`` routes
share one entry, so a receipt or a typing notice (registered late) cost about 20 us
to route, more than the rest of the HTTP handling of a small request. A `RouteGroup`
takes the place of such an entry's routes: it holds them (ordinary aiohttp resources,
each resolving exactly as it would in the router) and tries only those whose segment
after the variable is the request's. The answer is the router's: the first match in
registration order (routes whose segment differs cannot match), and for a path
matched with another method the union of the allowed methods, hence 405 versus 404.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from yarl import URL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# `{name}`: a whole segment, matching one non-empty segment ([^{}/]+ in aiohttp).
_PLAIN_VARIABLE = re.compile(r"\{[_a-zA-Z][_a-zA-Z0-9]*\}")
# A literal segment that appears in a request's path exactly as registered (no
# percent-encoding could make them differ).
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")


def group_key(path: str) -> str | None:
    """The router's index entry of a path with variables (the literal path up to the
    segment of its first variable); None for a path without variables."""
    if "{" not in path:
        return None
    return path.partition("{")[0].rpartition("/")[0].rstrip("/") or "/"


class RouteGroup(web.AbstractResource):
    """The routes of one router index entry (`group_key`), found by the segment
    after their first variable. Registered in the router in their place."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self._key = key
        self._prefix = key.rstrip("/") + "/"  # what a request's path starts with
        self._resources: list[web.Resource] = []
        # segment after the variable (None: the path ends with the variable) -> its
        # resources in registration order; None once a route cannot be filed so.
        self._buckets: dict[str | None, list[web.Resource]] | None = {}
        self._frozen = False

    @property
    def canonical(self) -> str:
        # The router files this resource under `_key` (the text up to the "{").
        return self._key.rstrip("/") + "/{group}"

    def add_route(self, method: str, path: str, handler: Handler) -> web.AbstractRoute:
        """As ``router.add_route``: the route is tried after those added before it."""
        if self._frozen:
            raise RuntimeError("Cannot add a route to a frozen router")
        if group_key(path) != self._key:
            raise ValueError(f"{path} does not belong to the routes under {self._key}")
        last = self._resources[-1] if self._resources else None
        if isinstance(last, web.DynamicResource) and last.raw_match(path):
            resource: web.Resource = last  # the same path again: another method of it
        else:
            resource = web.DynamicResource(path)
            self._resources.append(resource)
            self._file(resource, path)
        return resource.add_route(method, handler)

    def _file(self, resource: web.Resource, path: str) -> None:
        if self._buckets is None:
            return
        rest = path[len(self._prefix):]
        variable, sep, after = rest.partition("/")
        segment = after.partition("/")[0] if sep else None
        if _PLAIN_VARIABLE.fullmatch(variable) and (
            segment is None or _UNRESERVED.fullmatch(segment)
        ):
            self._buckets.setdefault(segment, []).append(resource)
        else:
            self._buckets = None  # tried in registration order from now on, as the router would

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        candidates: list[web.Resource]
        if self._buckets is None:
            candidates = self._resources
        else:
            path = request.rel_url.path_safe
            if not path.startswith(self._prefix):
                return None, set()
            _, sep, after = path[len(self._prefix):].partition("/")
            candidates = self._buckets.get(after.partition("/")[0] if sep else None, [])
        allowed: set[str] = set()
        for resource in candidates:
            match, methods = await resource.resolve(request)
            if match is not None:
                return match, methods
            allowed |= methods
        return None, allowed

    def url_for(self, **kwargs: str) -> URL:
        raise NotImplementedError("build URLs from the route's own resource")

    def add_prefix(self, prefix: str) -> None:
        for resource in self._resources:
            resource.add_prefix(prefix)
        self._key = prefix + self._key
        self._prefix = prefix + self._prefix

    def get_info(self) -> dict[str, Any]:  # type: ignore[override]
        return {"prefix": self._key}

    def raw_match(self, path: str) -> bool:
        return False  # never taken for a path of its own (`add_resource` reuses matches)

    def freeze(self) -> None:
        self._frozen = True
        for resource in self._resources:
            resource.freeze()

    def __len__(self) -> int:
        return sum(len(resource) for resource in self._resources)

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        for resource in self._resources:
            yield from resource
