"""The organization console's files (homeserver/console/static), served by the client
listener at /_accord/console/.

Only files that exist under the static directory, with a known type, are served (a
path with `..` or any other trick resolves outside it and is 404). Every answer carries
a strict Content-Security-Policy: scripts, styles and connections from this origin
only, no inline script or style, no framing, no plugins; the console never loads
anything from elsewhere, so it works offline.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from homeserver.console import STATIC_DIR
from homeserver.errors import MatrixError

PREFIX = "/_accord/console"
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def _resolve(rel: str) -> Path:
    root = STATIC_DIR.resolve()
    path = (root / (rel or "index.html")).resolve()
    if root not in path.parents or not path.is_file() or path.suffix not in TYPES:
        raise MatrixError(404, "M_NOT_FOUND", "No such console file")
    return path


async def serve_file(request: web.Request) -> web.Response:
    path = _resolve(request.match_info.get("path", ""))
    return web.Response(
        body=path.read_bytes(), content_type=TYPES[path.suffix], charset="utf-8", headers=HEADERS
    )


async def redirect(request: web.Request) -> web.Response:
    # Answered, not raised: the Matrix middleware turns raised HTTP exceptions into errors.
    return web.Response(status=302, headers={"Location": PREFIX + "/"})


def register_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX, redirect)
    app.router.add_get(PREFIX + "/", serve_file)
    app.router.add_get(PREFIX + "/{path:.+}", serve_file)
