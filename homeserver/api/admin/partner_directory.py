"""Admin API of the partner directory (``/_accord/admin/v1/partner_directory``).

For the operator of a directory (``partner_directory.serve``): list entries,
look one up, verify or unverify an organization, remove an entry. For the
operator of an organization: see where our profile is published, publish now,
withdraw. Server admins only.

    GET    .../entries                       ?q=&specialty=&location=&verified_only=&limit=&since=
    GET    .../entries/{serverName}
    DELETE .../entries/{serverName}
    POST   .../entries/{serverName}/verify   {"note": "checked by phone with ..."}
    POST   .../entries/{serverName}/unverify
    GET    .../publications
    POST   .../publish
    POST   .../withdraw                      {"directory": "..."} (absent: every directory)
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.admin.common import require_admin
from homeserver.api.http import client_ip, field, get_hs, json_response, read_json
from homeserver.errors import MatrixError, invalid_param
from homeserver.identifiers import is_valid_server_name
from homeserver.partners.directory import SearchQuery

PREFIX = "/_accord/admin/v1/partner_directory"
MAX_NOTE = 1000


async def require_server_admin(request: web.Request) -> str:
    """The requesting user's ID if they are a server admin; 403 M_FORBIDDEN otherwise
    (the admin API's one check, shared with the Synapse-compatible endpoints)."""
    return (await require_admin(request)).user_id


async def list_entries(request: web.Request) -> web.Response:
    await require_server_admin(request)
    query = SearchQuery.from_json(request.query, strings=True)
    return json_response(await get_hs(request).partner_directory.list_entries(query))


async def get_entry(request: web.Request) -> web.Response:
    await require_server_admin(request)
    return json_response(await get_hs(request).partner_directory.get_entry(request.match_info["server_name"]))


async def remove_entry(request: web.Request) -> web.Response:
    admin = await require_server_admin(request)
    result = await get_hs(request).partner_directory.remove(
        request.match_info["server_name"], by=admin, ip=client_ip(request)
    )
    return json_response(result)


async def verify(request: web.Request) -> web.Response:
    admin = await require_server_admin(request)
    body = await read_json(request, allow_empty=True)
    note = field(body, "note", str)
    if note is not None and len(note) > MAX_NOTE:
        raise MatrixError(400, "M_TOO_LARGE", f"'note' is longer than {MAX_NOTE} characters")
    result = await get_hs(request).partner_directory.verify(
        request.match_info["server_name"], by=admin, note=note, ip=client_ip(request)
    )
    return json_response(result)


async def unverify(request: web.Request) -> web.Response:
    admin = await require_server_admin(request)
    result = await get_hs(request).partner_directory.unverify(
        request.match_info["server_name"], by=admin, ip=client_ip(request)
    )
    return json_response(result)


async def publications(request: web.Request) -> web.Response:
    await require_server_admin(request)
    return json_response(await get_hs(request).partner_directory_publisher.status())


async def publish(request: web.Request) -> web.Response:
    admin = await require_server_admin(request)
    hs = get_hs(request)
    results = await hs.partner_directory_publisher.publish_all()
    await hs.audit.record(
        "partner_directory.publish_requested", actor=admin, ip=client_ip(request),
        details={"results": results},
    )
    return json_response({"results": results})


async def withdraw(request: web.Request) -> web.Response:
    admin = await require_server_admin(request)
    hs = get_hs(request)
    body = await read_json(request, allow_empty=True)
    directory = field(body, "directory", str)
    if directory is not None and not is_valid_server_name(directory):
        raise invalid_param("'directory' is not a server name")
    results = await hs.partner_directory_publisher.withdraw(directory)
    await hs.audit.record(
        "partner_directory.withdraw_requested", actor=admin, target=directory, ip=client_ip(request),
        details={"results": results},
    )
    return json_response({"results": results})


def register(app: web.Application) -> None:
    app.router.add_get(PREFIX + "/entries", list_entries)
    app.router.add_get(PREFIX + "/entries/{server_name}", get_entry)
    app.router.add_delete(PREFIX + "/entries/{server_name}", remove_entry)
    app.router.add_post(PREFIX + "/entries/{server_name}/verify", verify)
    app.router.add_post(PREFIX + "/entries/{server_name}/unverify", unverify)
    app.router.add_get(PREFIX + "/publications", publications)
    app.router.add_post(PREFIX + "/publish", publish)
    app.router.add_post(PREFIX + "/withdraw", withdraw)
