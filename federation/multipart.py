"""The ``multipart/mixed`` answers of the federation media endpoints.

``GET /_matrix/federation/v1/media/download/{mediaId}`` (and ``/thumbnail``)
answer with exactly two parts (RFC 2046): a JSON object of metadata (today
always ``{}``), then either the media's bytes with their ``Content-Type`` and
``Content-Disposition``, or a ``Location`` header naming where to fetch them.

Writing is a head (boundary, metadata part, the media part's headers), the
bytes, and a tail. Reading is streaming and bounded, as the answer comes from
another server: the preamble, each header block and the metadata part have
small caps, the media part is capped by the caller's ``max_bytes``, and a
stream that ends before the closing delimiter is an error (so a truncated
download is never taken for the whole file).

Independent of the homeserver; the bytes come from anything with an
``async read(n)`` returning ``b""`` at the end (an aiohttp ``StreamReader``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any, Protocol

import orjson

from .events.json_bounds import JSONBoundsError, loads_bounded

__all__ = [
    "ByteSource",
    "MediaPart",
    "MultipartError",
    "PartTooLargeError",
    "boundary_of",
    "media_head",
    "media_tail",
    "multipart_content_type",
    "new_boundary",
    "read_media_multipart",
    "redirect_body",
]

# What one server may make us buffer while reading another's answer.
MAX_PREAMBLE_BYTES = 4096
MAX_HEADER_BLOCK_BYTES = 16 * 1024
MAX_HEADERS = 32
MAX_METADATA_BYTES = 64 * 1024
READ_SIZE = 64 * 1024

# RFC 2046 5.1.1: 1 to 70 of these, not ending in a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class MultipartError(ValueError):
    """The body is not the two-part ``multipart/mixed`` answer the spec describes."""


class PartTooLargeError(MultipartError):
    """The media part is larger than the reader allows."""


class ByteSource(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


# --- writing -------------------------------------------------------------------------


def new_boundary() -> str:
    """A boundary no file's bytes will contain by chance (128 random bits)."""
    return secrets.token_hex(16)


def multipart_content_type(boundary: str) -> str:
    return f"multipart/mixed; boundary={boundary}"


def _header_value(value: str) -> str:
    """A header value with no line breaks or control characters (header injection)."""
    return "".join(ch for ch in value if ch >= " " and ch != "\x7f")


def _part_headers(headers: Mapping[str, str]) -> bytes:
    return b"".join(f"{k}: {_header_value(v)}\r\n".encode() for k, v in headers.items())


def media_head(
    boundary: str, metadata: Mapping[str, Any], *, content_type: str,
    content_disposition: str | None = None,
) -> bytes:
    """Everything before the media's bytes: the metadata part and the media part's headers."""
    media_headers = {"Content-Type": content_type}
    if content_disposition:
        media_headers["Content-Disposition"] = content_disposition
    return (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode()
        + orjson.dumps(dict(metadata))
        + f"\r\n--{boundary}\r\n".encode()
        + _part_headers(media_headers)
        + b"\r\n"
    )


def media_tail(boundary: str) -> bytes:
    """What follows the media's bytes: the closing delimiter."""
    return f"\r\n--{boundary}--\r\n".encode()


def redirect_body(boundary: str, metadata: Mapping[str, Any], location: str) -> bytes:
    """A whole answer whose second part sends the caller to ``location``."""
    return (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode()
        + orjson.dumps(dict(metadata))
        + f"\r\n--{boundary}\r\n".encode()
        + _part_headers({"Location": location})
        + b"\r\n"
        + media_tail(boundary)
    )


# --- reading -------------------------------------------------------------------------


def boundary_of(content_type: str | None) -> str:
    """The boundary of a ``multipart/mixed`` Content-Type; MultipartError for anything else."""
    if not content_type:
        raise MultipartError("no Content-Type")
    msg = Message()
    msg["Content-Type"] = content_type
    if msg.get_content_type() != "multipart/mixed":
        raise MultipartError(f"Content-Type is {msg.get_content_type()}, not multipart/mixed")
    boundary = msg.get_param("boundary")
    if not isinstance(boundary, str) or not _BOUNDARY.fullmatch(boundary):
        raise MultipartError("missing or invalid boundary")
    return boundary


@dataclass
class MediaPart:
    """The answer once its headers are read: the metadata, the media part's
    headers (names in lower case), and its bytes as a stream when there was no
    ``Location``. ``chunks`` must be read to its end: a missing closing
    delimiter or too many bytes raise from it."""

    metadata: dict[str, Any]
    headers: dict[str, str]
    chunks: AsyncIterator[bytes] | None

    @property
    def location(self) -> str | None:
        return self.headers.get("location")

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def content_disposition(self) -> str | None:
        return self.headers.get("content-disposition")


class _Buffer:
    def __init__(self, source: ByteSource) -> None:
        self.source = source
        self.data = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        """Read more; False at the end of the stream."""
        if self.eof:
            return False
        chunk = await self.source.read(READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        self.data += chunk
        return True

    async def find(self, needle: bytes, limit: int, what: str) -> int:
        """The index of ``needle``, reading until it is there but no more than ``limit`` bytes."""
        start = 0
        while True:
            i = self.data.find(needle, start)
            if i != -1 and i <= limit:
                return i
            if len(self.data) > limit + len(needle):
                raise MultipartError(f"{what} is too long")
            start = max(0, len(self.data) - len(needle) + 1)
            if not await self.fill():
                raise MultipartError(f"the body ends inside the {what}")

    def take(self, n: int) -> bytes:
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    async def need(self, n: int) -> None:
        while len(self.data) < n:
            if not await self.fill():
                raise MultipartError("the body ends inside a delimiter")


async def _after_delimiter(buf: _Buffer) -> bool:
    """Past a delimiter's boundary: True when it was the closing one (``--``),
    False when a part follows (transport padding and CRLF consumed)."""
    await buf.need(2)
    if buf.data[:2] == b"--":
        buf.take(2)
        return True
    end = await buf.find(b"\r\n", 80, "delimiter line")
    if buf.data[:end].strip(b" \t"):
        raise MultipartError("junk after a boundary")
    buf.take(end + 2)
    return False


async def _read_headers(buf: _Buffer) -> dict[str, str]:
    await buf.need(2)
    if buf.data[:2] == b"\r\n":
        buf.take(2)
        return {}
    end = await buf.find(b"\r\n\r\n", MAX_HEADER_BLOCK_BYTES, "part header block")
    block = buf.take(end + 4)[:end]
    headers: dict[str, str] = {}
    lines = block.split(b"\r\n")
    if len(lines) > MAX_HEADERS:
        raise MultipartError("too many part headers")
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise MultipartError("malformed part header")
        headers[name.decode().lower()] = value.strip(b" \t").decode("utf-8", "replace")
    return headers


async def _read_part_body(buf: _Buffer, delimiter: bytes, limit: int) -> bytes:
    end = await buf.find(delimiter, limit, "metadata part")
    body = buf.take(end)
    buf.take(len(delimiter))
    return body


async def _stream_part(
    buf: _Buffer, delimiter: bytes, max_bytes: int
) -> AsyncIterator[bytes]:
    seen = 0
    keep = len(delimiter) - 1
    while True:
        i = buf.data.find(delimiter)
        if i != -1:
            chunk = buf.take(i)
            buf.take(len(delimiter))
        else:
            chunk = buf.take(max(0, len(buf.data) - keep))
        seen += len(chunk)
        if seen > max_bytes:
            raise PartTooLargeError(f"the media is larger than {max_bytes} bytes")
        if chunk:
            yield chunk
        if i != -1:
            break
        if not await buf.fill():
            raise MultipartError("the body ends before the closing delimiter")
    if not await _after_delimiter(buf):
        raise MultipartError("more than two parts")


async def read_media_multipart(
    source: ByteSource, boundary: str, *, max_bytes: int
) -> MediaPart:
    """Read the metadata part and the media part's headers from ``source``; the
    media's bytes follow through :attr:`MediaPart.chunks` (at most ``max_bytes``)."""
    buf = _Buffer(source)
    dash = b"--" + boundary.encode()
    # The first delimiter may start the body or follow a (short) preamble and CRLF.
    first = await buf.find(dash, MAX_PREAMBLE_BYTES, "preamble")
    if first != 0:
        first = await buf.find(b"\r\n" + dash, MAX_PREAMBLE_BYTES, "preamble")
        first += 2
    buf.take(first + len(dash))
    if await _after_delimiter(buf):
        raise MultipartError("no parts")
    delimiter = b"\r\n" + dash
    meta_headers = await _read_headers(buf)
    meta_type = meta_headers.get("content-type", "application/json")
    if meta_type.split(";")[0].strip().lower() != "application/json":
        raise MultipartError("the first part is not application/json")
    raw = await _read_part_body(buf, delimiter, MAX_METADATA_BYTES)
    try:
        metadata = loads_bounded(raw) if raw.strip() else {}
    except JSONBoundsError:
        raise MultipartError("the metadata part is not JSON") from None
    if not isinstance(metadata, dict):
        raise MultipartError("the metadata part is not a JSON object")
    if await _after_delimiter(buf):
        raise MultipartError("no second part")
    headers = await _read_headers(buf)
    if "location" in headers:
        return MediaPart(metadata, headers, None)
    return MediaPart(metadata, headers, _stream_part(buf, delimiter, max_bytes))
