"""The test CA issues certificates that a verifying TLS client accepts."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from tests.tls_ca import TestCA


async def test_issued_certificate_verifies_against_the_ca(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    leaf = ca.issue("127.0.0.2")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(leaf.cert_path, leaf.key_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.2", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        client_ctx = ssl.create_default_context(cafile=str(ca.ca_path))
        reader, writer = await asyncio.open_connection("127.0.0.2", port, ssl=client_ctx)
        assert await reader.read() == b"ok"
        writer.close()
        # A client that does not trust the test CA refuses the same certificate.
        try:
            await asyncio.open_connection("127.0.0.2", port, ssl=ssl.create_default_context())
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("an untrusted CA was accepted")
    finally:
        server.close()
        await server.wait_closed()
