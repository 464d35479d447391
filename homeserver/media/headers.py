"""The headers media is served with (downloads and thumbnails).

- ``Content-Type`` as uploaded (``application/octet-stream`` when none was given);
- ``Content-Disposition``: ``inline`` only for the spec's list of types that cannot
  run script ("Serving inline content"; SVG and HTML are not on it), ``attachment``
  otherwise; the filename is given RFC 6266 style: ``filename*=utf-8''<percent-encoded>``,
  plus a plain ``filename="..."`` when the name is harmless printable ASCII;
- ``X-Content-Type-Options: nosniff``, ``Cross-Origin-Resource-Policy: cross-origin``
  and the spec's sandboxing ``Content-Security-Policy``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

INLINE_TYPES = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave",
    "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
    " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)

_PLAIN_FILENAME = re.compile(r"^[\x20-\x7e]+$")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[\x20-\x7e]*)?$")


def base_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def valid_content_type(content_type: str) -> bool:
    """A syntactically sane media type (no control characters), as stored and served back."""
    return len(content_type) <= 255 and bool(_CONTENT_TYPE.match(content_type))


def valid_filename(name: str) -> bool:
    """A filename we store and put in headers: 1-255 characters, no control characters
    (NUL, CR, LF...). Path separators are harmless here (never used as a path)."""
    return 0 < len(name) <= 255 and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)


def content_disposition(content_type: str | None, filename: str | None) -> str:
    disposition = "inline" if base_type(content_type) in INLINE_TYPES else "attachment"
    if not filename or not valid_filename(filename):
        return disposition
    parts = [disposition]
    if _PLAIN_FILENAME.match(filename) and '"' not in filename and "\\" not in filename:
        parts.append(f'filename="{filename}"')
    parts.append("filename*=utf-8''" + quote(filename, safe=""))
    return "; ".join(parts)


def media_headers(content_type: str | None, filename: str | None) -> dict[str, str]:
    served_type = content_type if content_type and valid_content_type(content_type) else "application/octet-stream"
    return {
        "Content-Type": served_type,
        "Content-Disposition": content_disposition(served_type, filename),
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "private, max-age=31536000, immutable",
    }
