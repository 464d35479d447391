"""The client-server API, one module per spec section."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes


def register_routes(app: web.Application) -> None:
    from homeserver.api.client import (
        account,
        account_data,
        capabilities,
        devices,
        directory,
        filter,
        login,
        membership,
        presence,
        profile,
        push_rules,
        receipts,
        register,
        room_history,
        room_upgrades,
        rooms,
        sync,
        typing,
        versions,
    )

    routes = ClientRoutes(app)
    versions.register(app)
    for module in (capabilities, register, login, account, devices, profile, rooms, membership, directory, room_upgrades, sync, room_history, account_data, typing, receipts, presence, filter, push_rules):
        module.register(routes)
    from homeserver.api.client import partner_directory

    partner_directory.register(routes)
    from homeserver.api.client import report

    report.register(routes)
    from homeserver.api.client import media

    media.register(routes)  # also served by a listener naming only `media`
    from homeserver.api.client import media_preview

    media_preview.register(routes)
    from homeserver.api.client import relations

    relations.register(routes)
    from homeserver.api.client import hierarchy

    hierarchy.register(routes)
    from homeserver.api.client import openid

    openid.register(routes)
    from homeserver.api.client import voip

    voip.register(routes)
    from homeserver.api.client import whois

    whois.register(routes)
    from homeserver.api.client import thirdparty

    thirdparty.register(routes)
    from homeserver.api.client import tags

    tags.register(routes)
    from homeserver.api.client import user_directory

    user_directory.register(routes)
    from homeserver.api.client import room_summary

    room_summary.register(routes)
    from homeserver.api.client import mutual_rooms

    mutual_rooms.register(routes)
    from homeserver.api.client import search

    search.register(routes)
    from homeserver.api.client import to_device

    to_device.register(routes)
    from homeserver.api.client import device_lists

    device_lists.register(routes)
    from homeserver.api.client import keys

    keys.register(routes)
    from homeserver.api.client import room_keys

    room_keys.register(routes)
    from homeserver.api.client import notifications

    notifications.register(routes)
    from homeserver.api.client import pushers

    pushers.register(routes)
    from homeserver.api.client import threepids

    threepids.register(routes)
    from homeserver.api.client import initial_sync

    initial_sync.register(routes)
    from homeserver.api.client import sliding_sync

    sliding_sync.register(routes)
