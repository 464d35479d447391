"""PUT /_matrix/federation/v1/send/{txnId}: transactions of PDUs and EDUs.

Each origin server's transactions are rate limited (``federation_transaction``): a
sender waits for the answer before sending the next one, so a well-behaved peer
never comes near the limit, and one that floods is answered 429 with Retry-After,
which senders honour by retrying the same transaction later.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.federation.auth import federation_content, origin_of
from homeserver.api.http import get_hs, json_response


async def put_send(request: web.Request) -> web.Response:
    hs = get_hs(request)
    origin = origin_of(request)
    hs.ratelimiter.check_server("federation_transaction", origin)
    answer = await hs.inbound_transactions.on_send(
        origin, request.match_info["txn_id"], federation_content(request)
    )
    return json_response(answer)


def register(app: web.Application) -> None:
    app.router.add_put("/_matrix/federation/v1/send/{txn_id}", put_send)
