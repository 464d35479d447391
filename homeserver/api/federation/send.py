"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.http import get_hs, json_response


async def put_send(request: web.Request) -> web.Response:
    hs = get_hs(request)
    answer = await hs.inbound_transactions.on_send(
        origin_of(request), request.match_info["txn_id"], federation_content(request)
    )
    return json_response(answer)


def register(app: web.Application) -> None:
    app.router.add_put("/_matrix/federation/v1/send/{txn_id}", put_send)
