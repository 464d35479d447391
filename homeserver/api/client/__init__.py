"""The client-server API, one module per spec section."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes


def register_routes(app: web.Application) -> None:
    from homeserver.api.client import (
        account,
        capabilities,
        devices,
        login,
        profile,
        register,
        rooms,
        versions,
    )

    routes = ClientRoutes(app)
    versions.register(app)
    for module in (capabilities, register, login, account, devices, profile, rooms):
        module.register(routes)
