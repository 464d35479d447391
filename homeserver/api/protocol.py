"""The HTTP/1.1 connection layer under every listener: requests aiohttp's parser
refuses before any application code runs still get a Matrix JSON error.

aiohttp rejects a request line or header longer than its limits (8190 bytes), and
malformed requests generally, in the protocol itself: no middleware sees them, and
the answer would be aiohttp's plain text. Clients and servers parse our errors as
JSON (`errcode`, `error`), so the connection handler is subclassed to answer those
too in the spec's shape: 414 for an overlong URI, 431 for an overlong header (both
M_TOO_LARGE), 400 M_UNKNOWN for anything else unparseable.

The handler also lets go of each response's body once it is sent: aiohttp keeps a
keep-alive connection's last request and response until the next request arrives on
it, so every idle connection would hold its last body (an initial sync's, megabytes)
for as long as the client keeps the connection open.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_request import BaseRequest

from homeserver.api.http import CORS_HEADERS

logger = logging.getLogger(__name__)

# aiohttp's own defaults, named here because they are part of our HTTP contract.
MAX_REQUEST_LINE_BYTES = 8190
MAX_HEADER_BYTES = 8190


def _error_for(status: int, exc: BaseException | None) -> tuple[int, str, str]:
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        if isinstance(line, str):
            line = line.encode("utf-8", "replace")
        # The parser hands over the start of what overflowed: a request target
        # starts with "/" (or is absolute), a header does not.
        if line.startswith((b"/", b"http:", b"https:")):
            return 414, "M_TOO_LARGE", f"Request URI longer than {MAX_REQUEST_LINE_BYTES} bytes"
        return 431, "M_TOO_LARGE", f"Request header longer than {MAX_HEADER_BYTES} bytes"
    if status >= 500:
        return status, "M_UNKNOWN", "Internal server error"
    return status, "M_UNKNOWN", "Malformed HTTP request"


class MatrixRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering protocol-level errors in Matrix JSON."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response is under way: only closing helps
            return super().handle_error(request, status, exc, message)
        code, errcode, text = _error_for(status, exc)
        if code >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            logger.debug("refused a malformed request from %s: %s", request.remote, exc)
        resp = web.Response(
            status=code,
            body=orjson.dumps({"errcode": errcode, "error": text}),
            content_type="application/json",
            headers=CORS_HEADERS,
        )
        resp.force_close()
        return resp

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            if isinstance(resp, web.Response) and resp.body is not None:
                resp.body = None  # sent (or never to be): only the connection's wait held it


class MatrixServer(web.Server):
    """Makes a :class:`MatrixRequestHandler` for each connection."""

    def __call__(self) -> web.RequestHandler:
        return MatrixRequestHandler(self, loop=self._loop, **self._kwargs)


class MatrixAppRunner(web.AppRunner):
    """An AppRunner whose connections answer parser errors in Matrix JSON."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_REQUEST_LINE_BYTES)
        kwargs.setdefault("max_field_size", MAX_HEADER_BYTES)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same server, with our handler class for its connections.
        server.__class__ = MatrixServer
        return server
