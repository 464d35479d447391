"""Membership over federation: make/send for join, leave and knock, and invites.

Current versions are served (make_join v1 with send_join v2, make_leave v1 with
send_leave v2, make_knock/send_knock v1, invite v2) together with the legacy
send_join, send_leave and invite v1, which answer in their old `[200, body]` shape
for the older servers that still call them.

All of them are rate limited per origin server (``federation_join``): each one
builds, checks or persists an event, and send_join answers with the room's whole
state and auth chain (v2 without the membership events when asked `omit_members`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.http import get_hs, json_response, query_bool


def _check_rate(request: web.Request) -> None:
    get_hs(request).ratelimiter.check_server("federation_join", origin_of(request))


def _make(membership: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        hs = get_hs(request)
        _check_rate(request)
        versions: list[str] | None = None
        if membership != "leave":
            versions = request.query.getall("ver", ["1"])
        answer = await hs.federated_joins.make_membership(
            origin_of(request), request.match_info["room_id"], request.match_info["user_id"], membership, versions
        )
        return json_response(answer)

    return handler


def _send(membership: str, *, legacy: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        hs = get_hs(request)
        _check_rate(request)
        method = getattr(hs.federated_joins, f"send_{membership}")
        args = (origin_of(request), request.match_info["room_id"], request.match_info["event_id"],
                federation_content(request))
        answer: Any
        if membership == "join" and not legacy:
            answer = await method(*args, omit_members=query_bool(request, "omit_members"))
        else:
            answer = await method(*args)
        if legacy and membership == "join":
            answer = {k: v for k, v in answer.items() if k in ("origin", "state", "auth_chain", "event")}
        return json_response([200, answer] if legacy else answer)

    return handler


def _invite(*, v1: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        hs = get_hs(request)
        _check_rate(request)
        answer = await hs.federated_invites.on_invite(
            origin_of(request), request.match_info["room_id"], request.match_info["event_id"],
            federation_content(request), v1=v1,
        )
        return json_response([200, answer] if v1 else answer)

    return handler


def register(app: web.Application) -> None:
    base = "/_matrix/federation"
    for membership in ("join", "leave", "knock"):
        app.router.add_get(f"{base}/v1/make_{membership}/{{room_id}}/{{user_id}}", _make(membership))
    app.router.add_put(f"{base}/v2/send_join/{{room_id}}/{{event_id}}", _send("join"))
    app.router.add_put(f"{base}/v1/send_join/{{room_id}}/{{event_id}}", _send("join", legacy=True))
    app.router.add_put(f"{base}/v2/send_leave/{{room_id}}/{{event_id}}", _send("leave"))
    app.router.add_put(f"{base}/v1/send_leave/{{room_id}}/{{event_id}}", _send("leave", legacy=True))
    app.router.add_put(f"{base}/v1/send_knock/{{room_id}}/{{event_id}}", _send("knock"))
    app.router.add_put(f"{base}/v2/invite/{{room_id}}/{{event_id}}", _invite(v1=False))
    app.router.add_put(f"{base}/v1/invite/{{room_id}}/{{event_id}}", _invite(v1=True))
