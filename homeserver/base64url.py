"""Unpadded URL-safe base64 (RFC 4648 §5), the encoding of every opaque token this
server hands out (pagination tokens, OpenID tokens): safe in a query string and a
path without escaping."""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes of `text`, padded or not; ValueError (binascii.Error) for what is not
    base64. Characters outside the alphabet are ignored, as by base64.urlsafe_b64decode."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
