"""The admin API: a Synapse-compatible subset, so operators' existing tools work,
and Accord's own audit log under /_accord/admin."""

from __future__ import annotations

from aiohttp import web


def register_routes(app: web.Application) -> None:
    from homeserver.api.admin import (
        audit,
        event_reports,
        ratelimit,
        register,
        registration_tokens,
        rooms,
        server_version,
        users,
    )

    for module in (register, users, ratelimit, rooms, registration_tokens, event_reports, server_version, audit):
        module.register(app)
    from homeserver.api.admin import partner_directory

    partner_directory.register(app)
    from homeserver.api.admin import partners

    partners.register(app)
    from homeserver.api.admin import media

    media.register(app)
    from homeserver.api.admin import analytics, destinations, devices, organization, reports

    for extra in (devices, destinations, organization, analytics, reports):
        extra.register(app)
