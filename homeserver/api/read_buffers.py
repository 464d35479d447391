"""How much of a connection's incoming bytes the event loop reads at once.

asyncio reads up to 256 KiB per socket read and, for TLS, keeps a 256 KiB
decryption buffer and up to 256 KiB of undecrypted input per connection before
flow control stops reading. A server that refuses a request from its headers
(unsigned, forged, over its cap) never reads the body, but a client that keeps
sending fills those buffers anyway: 50 such connections cost about 1 MiB each,
doubling the resident memory of an idle server. Reading 16 KiB at a time (the
largest TLS record, so TLS decrypts one record per read) bounds that to a
few percent, at the price of more, smaller reads for large uploads.

The sizes are class attributes of asyncio's transports, the same in every
supported Python; where one is missing the default stays and a warning says so.
"""

from __future__ import annotations

import asyncio.selector_events
import asyncio.sslproto
import logging

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 16 * 1024


def bound_read_buffers(chunk: int = READ_CHUNK_BYTES) -> None:
    """Make every socket and TLS transport of this process read ``chunk`` bytes at a time."""
    targets = (
        (asyncio.sslproto, "SSLProtocol"),
        (asyncio.selector_events, "_SelectorSocketTransport"),
    )
    for module, name in targets:
        cls = getattr(module, name, None)
        if cls is None or not isinstance(getattr(cls, "max_size", None), int):
            logger.warning("cannot bound the read buffer of %s.%s", module.__name__, name)
            continue
        cls.max_size = chunk
