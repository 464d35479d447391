"""The admin API: a Synapse-compatible subset, so operators' existing tools work."""

from __future__ import annotations

from aiohttp import web


def register_routes(app: web.Application) -> None:
    from homeserver.api.admin import register

    register.register(app)
