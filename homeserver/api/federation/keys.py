"""The key API: our keys (``/_matrix/key/v2/server``) and, as a notary, other
servers' keys co-signed by us (``/_matrix/key/v2/query``). Unauthenticated,
as the spec defines it: the responses carry their own signatures.

Each server a notary query names may make us fetch its keys, so anyone could
use these endpoints to make this server connect somewhere: the queries are
rate limited per client IP (action ``key_query``, one token per server named),
capped at :data:`MAX_SERVERS_PER_QUERY` servers, and the fetches go through the
outbound guard like all others (no private or loopback addresses by default)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from homeserver.api.http import client_ip, get_hs, json_response, read_json
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.identifiers import is_valid_server_name
from homeserver.params import in_int64, query_int

# Bound the work one anonymous notary query can cause (each server may be a fetch).
MAX_SERVERS_PER_QUERY = 100


async def get_server_keys(request: web.Request) -> web.Response:
    return json_response(get_hs(request).keyring.own_key_response())


def _min_ts(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not in_int64(value):
        raise bad_json("minimum_valid_until_ts must be a 64-bit integer")
    return value


def _charge(request: web.Request, servers: int) -> None:
    """Take one ``key_query`` token per server asked about (429 when spent)."""
    get_hs(request).ratelimiter.check("key_query", client_ip(request), cost=float(max(1, servers)))


async def query_one(request: web.Request) -> web.Response:
    server_name = request.match_info["server_name"]
    if not is_valid_server_name(server_name):
        raise invalid_param("Invalid server name")
    _charge(request, 1)
    min_ts = query_int(request.query, "minimum_valid_until_ts")
    keys = await get_hs(request).keyring.notary_query(server_name, [], min_ts)
    return json_response({"server_keys": keys})


async def query_many(request: web.Request) -> web.Response:
    body = await read_json(request)
    criteria = body.get("server_keys")
    if criteria is None:
        raise missing_param("Missing required field 'server_keys'")
    if not isinstance(criteria, dict):
        raise bad_json("'server_keys' must be an object")
    if len(criteria) > MAX_SERVERS_PER_QUERY:
        raise invalid_param(f"At most {MAX_SERVERS_PER_QUERY} servers per query")
    queries: list[tuple[str, list[str], int | None]] = []
    for server_name, by_key in criteria.items():
        if not isinstance(by_key, dict) or not is_valid_server_name(server_name):
            raise bad_json(f"Invalid query for server {server_name!r}")
        min_ts: int | None = None
        for key_id, crit in by_key.items():
            if not isinstance(crit, dict):
                raise bad_json(f"Criteria for {server_name} {key_id} must be an object")
            ts = _min_ts(crit.get("minimum_valid_until_ts"))
            if ts is not None:
                min_ts = ts if min_ts is None else max(min_ts, ts)
        queries.append((server_name, list(by_key), min_ts))
    _charge(request, len(queries))
    keyring = get_hs(request).keyring
    results = await asyncio.gather(*(keyring.notary_query(*q) for q in queries))
    return json_response({"server_keys": [r for rs in results for r in rs]})


def register(app: web.Application) -> None:
    app.router.add_get("/_matrix/key/v2/server", get_server_keys)
    # Deprecated form: the key ID is ignored and every current key returned.
    app.router.add_get("/_matrix/key/v2/server/{key_id}", get_server_keys)
    app.router.add_get("/_matrix/key/v2/query/{server_name}", query_one)
    app.router.add_post("/_matrix/key/v2/query", query_many)
