"""The unpadded URL-safe base64 of every opaque token (homeserver/base64url.py)."""

from __future__ import annotations

import base64
import os

import pytest

from homeserver import base64url


def test_round_trips_every_length_without_padding() -> None:
    for n in range(0, 40):
        data = os.urandom(n)
        text = base64url.encode(data)
        assert "=" not in text and "+" not in text and "/" not in text
        assert base64url.decode(text) == data
        # Padded input, as some clients echo tokens, decodes the same.
        assert base64url.decode(base64.urlsafe_b64encode(data).decode()) == data


def test_known_vector_and_url_alphabet() -> None:
    assert base64url.encode(b"\xfb\xff\xbf") == "-_-_"  # '+/+/' in standard base64
    assert base64url.encode(b"ab") == "YWI"
    assert base64url.decode("YWI") == b"ab"


def test_garbage_is_a_value_error() -> None:
    for bad in ("a", "abcde", "a==="):
        with pytest.raises(ValueError):
            base64url.decode(bad)
