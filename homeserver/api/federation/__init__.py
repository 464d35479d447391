"""The server-server API (resource "federation") and the key API (resource "keys").

Kept thin: the X-Matrix check is the pure :mod:`federation.request_auth`, the
keys come from the key ring; these modules only shape HTTP.
"""

from __future__ import annotations

from aiohttp import web


def register_federation_routes(app: web.Application) -> None:
    from homeserver.api.federation import (
        auth,
        backfill,
        events,
        membership,
        public_rooms,
        query,
        send,
        version,
    )

    auth.install(app)
    version.register(app)
    events.register(app)
    backfill.register(app)
    query.register(app)
    public_rooms.register(app)
    send.register(app)
    membership.register(app)
    from homeserver.api.federation import openid

    openid.register(app)
    from homeserver.api.federation import partner_directory

    partner_directory.register(app)
    from homeserver.api.federation import partners

    partners.register(app)
    from homeserver.api.federation import media

    media.register(app)
    from homeserver.api.federation import hierarchy

    hierarchy.register(app)
    from homeserver.api.federation import user_keys

    user_keys.register(app)


def register_key_routes(app: web.Application) -> None:
    from homeserver.api.federation import keys

    keys.register(app)
