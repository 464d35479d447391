"""Push rules: GET /pushrules/, /pushrules/global/ and the per-rule endpoints
/pushrules/global/{kind}/{ruleId}[/enabled|/actions] (the spec's "Push Rules: API").

Clients such as matrix-js-sdk fetch /pushrules/ before their first /sync, so
this module is needed for them to start at all. Only the `global` scope exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError


def _rule_path(request: web.Request) -> tuple[str, str]:
    return request.match_info["kind"], request.match_info["rule_id"]


async def get_all(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"global": await get_hs(request).push_rules.ruleset(req.user_id)})


async def get_global(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await get_hs(request).push_rules.ruleset(req.user_id))


async def get_rule(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _rule_path(request)
    return json_response(await get_hs(request).push_rules.get_rule(req.user_id, kind, rule_id))


async def put_rule(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _rule_path(request)
    body = await read_json(request)
    before, after = request.query.get("before"), request.query.get("after")
    await get_hs(request).push_rules.put_rule(req.user_id, kind, rule_id, body, before=before, after=after)
    return json_response({})


async def delete_rule(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _rule_path(request)
    await get_hs(request).push_rules.delete_rule(req.user_id, kind, rule_id)
    return json_response({})


def _get_attribute(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET .../enabled and .../actions: one attribute of one rule."""

    async def handler(request: web.Request) -> web.Response:
        req = await requester(request)
        kind, rule_id = _rule_path(request)
        rule = await get_hs(request).push_rules.get_rule(req.user_id, kind, rule_id)
        return json_response({name: rule[name]})

    return handler


get_enabled = _get_attribute("enabled")
get_actions = _get_attribute("actions")


async def put_enabled(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _rule_path(request)
    enabled = field(await read_json(request), "enabled", bool, required=True)
    await get_hs(request).push_rules.set_enabled(req.user_id, kind, rule_id, enabled)
    return json_response({})




async def put_actions(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _rule_path(request)
    body = await read_json(request)
    if "actions" not in body:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'actions'")
    await get_hs(request).push_rules.set_actions(req.user_id, kind, rule_id, body["actions"])
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/pushrules/", get_all)
    routes.add("GET", "/pushrules/global/", get_global)
    routes.add("GET", "/pushrules/global/{kind}/{rule_id}", get_rule)
    routes.add("PUT", "/pushrules/global/{kind}/{rule_id}", put_rule)
    routes.add("DELETE", "/pushrules/global/{kind}/{rule_id}", delete_rule)
    routes.add("GET", "/pushrules/global/{kind}/{rule_id}/enabled", get_enabled)
    routes.add("PUT", "/pushrules/global/{kind}/{rule_id}/enabled", put_enabled)
    routes.add("GET", "/pushrules/global/{kind}/{rule_id}/actions", get_actions)
    routes.add("PUT", "/pushrules/global/{kind}/{rule_id}/actions", put_actions)
