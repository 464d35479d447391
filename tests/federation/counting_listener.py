"""A real listening TCP socket that counts the connections made to it.

Tests of the outbound guard must show that nothing connected, not merely that a
request failed: a refused request and a connection to a dead service both fail,
only the count tells them apart.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class CountingListener:
    """Accepts on ``host`` (a free port), counts each connection, holds it open
    for ``hold_s`` (a slow peer) and closes it without a word."""

    def __init__(self, host: str = "127.0.0.1", hold_s: float = 0.0) -> None:
        self.host = host
        self.hold_s = hold_s
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._open.add(writer)
        try:
            if self.hold_s:
                await asyncio.sleep(self.hold_s)
        finally:
            self._open.discard(writer)
            writer.close()

    async def __aenter__(self) -> CountingListener:
        self._server = await asyncio.start_server(self._on_connect, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.close()
        await self._server.wait_closed()

    @property
    def name(self) -> str:
        """``host:port``, usable as a server name."""
        return f"{self.host}:{self.port}"
