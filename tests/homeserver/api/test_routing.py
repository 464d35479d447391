"""Route groups (homeserver/api/routing.py) answer exactly as aiohttp's router would:
the same route for every path and method, and the same 404/405 (allowed methods)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import MatchInfoError
from yarl import URL

from homeserver.api.http import CLIENT_PREFIXES, ROUTE_GROUPS_KEY, ClientRoutes, Handler
from homeserver.api.routing import RouteGroup, group_key
from homeserver.config import RESOURCES, parse_config
from homeserver.server import HomeServer
from tests.conftest import config_dict

METHODS = ("GET", "PUT", "POST", "DELETE")
# Values a variable segment may take, including ones no route accepts.
VALUES = ("!room:test.local", "x", "%2Fslash", "")


def _paths(canonical: str) -> set[str]:
    """Paths to try for a route: its variables filled in several ways, and the same
    path with a segment more and a segment less."""
    out = set()
    for value in VALUES:
        path = re.sub(r"\{[^}]*\}", value, canonical)
        out |= {path, path + "/extra", path.rpartition("/")[0] or "/"}
    return out


def _answer(match: web.UrlMappingMatchInfo) -> tuple[str, ...]:
    if isinstance(match, MatchInfoError):
        return (str(match.http_exception.status), *sorted(getattr(match.http_exception, "allowed_methods", ())))
    return (match.route.method, match.route.resource.canonical, *sorted(match.items()))


async def _same_answers(app: web.Application, plain: web.UrlDispatcher, paths: set[str]) -> int:
    compared = 0
    for path in sorted(paths):
        for method in METHODS:
            # All routing reads of a request (a mocked one is slow to make by thousands).
            req: Any = SimpleNamespace(method=method, rel_url=URL(path))
            ours = _answer(await app.router.resolve(req))
            theirs = _answer(await plain.resolve(req))
            assert ours == theirs, (method, path)
            compared += 1
    return compared


async def test_client_routes_resolve_as_the_router_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hs = HomeServer(parse_config(config_dict(tmp_path)))
    app = hs.build_app(list(RESOURCES))
    assert "/_matrix/client/v3/rooms" in app[ROUTE_GROUPS_KEY]

    # The same registrations, each straight into the router (as before route groups).
    def add(self: ClientRoutes, method: str, path: str, handler: Handler,
            prefixes: tuple[str, ...] = CLIENT_PREFIXES) -> None:
        for prefix in prefixes:
            self.app.router.add_route(method, prefix + path, handler)

    monkeypatch.setattr(ClientRoutes, "add", add)
    plain = hs.build_app(list(RESOURCES)).router
    assert not any(isinstance(r, RouteGroup) for r in plain.resources())
    paths: set[str] = set()
    for group in app[ROUTE_GROUPS_KEY].values():  # the paths the groups could answer
        for route in group:
            assert route.resource is not None
            paths |= _paths(route.resource.canonical)
    assert await _same_answers(app, plain, paths) > 1000


def test_a_group_is_alone_in_its_router_entry(tmp_path: Path) -> None:
    """A route registered outside the group under the same index entry would be tried
    out of registration order relative to the group's: none may be."""
    hs = HomeServer(parse_config(config_dict(tmp_path)))
    app = hs.build_app(list(RESOURCES))
    groups = app[ROUTE_GROUPS_KEY]
    for resource in app.router.resources():
        if isinstance(resource, RouteGroup) or "{" not in resource.canonical:
            continue
        assert group_key(resource.canonical) not in groups, resource.canonical


async def test_routes_that_cannot_be_filed_keep_registration_order() -> None:
    """A variable where the group files by segment: every route is then tried in
    registration order, as the router does (the first match wins)."""
    async def first(request: web.Request) -> web.Response:
        return web.Response()

    async def second(request: web.Request) -> web.Response:
        return web.Response()

    registrations = [
        ("GET", "/things/{a}/fixed", first),
        ("GET", "/things/{a}/{b}", second),
        ("GET", "/things/{a}/fixed", second),
        ("PUT", "/things/{a}/{b}", first),
        ("GET", "/things/{a}", first),
        ("POST", "/things/{a}/other/{c}", first),
    ]
    app = web.Application()
    routes = ClientRoutes(app)
    plain = web.UrlDispatcher()
    paths: set[str] = set()
    for method, path, handler in registrations:
        routes.add(method, path, handler, prefixes=("/p",))
        plain.add_route(method, "/p" + path, handler)
        paths |= _paths("/p" + path)
    assert len(app[ROUTE_GROUPS_KEY]) == 1
    assert await _same_answers(app, plain, paths) > 50
    match = await app.router.resolve(make_mocked_request("GET", "/p/things/x/fixed"))
    assert match.handler is first
