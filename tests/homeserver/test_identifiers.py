"""Identifier grammars (spec appendix)."""

from __future__ import annotations

import pytest

from homeserver.identifiers import is_valid_localpart, is_valid_server_name, parse_user_id


@pytest.mark.parametrize(
    "name",
    ["example.org", "example.org:8448", "127.0.0.2:8448", "[::1]", "[2001:db8::1]:443", "localhost"],
)
def test_valid_server_names(name: str) -> None:
    assert is_valid_server_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "exa mple.org", "example.org:", "example.org:0", "example.org:65536", "example.org:80a",
     "[::1", "[nothex]:80", "example.org\n", "ex_ample.org", "a" * 256],
)
def test_invalid_server_names(name: str) -> None:
    assert not is_valid_server_name(name)


def test_localparts() -> None:
    assert is_valid_localpart("alice.b_c=d-e/f+g")
    for bad in ("Alice", "al ice", "alice\n", "", "al:ice", "ål"):
        assert not is_valid_localpart(bad), bad


def test_user_ids() -> None:
    assert parse_user_id("@alice:example.org") == ("alice", "example.org")
    # Historical localparts (from other servers) may contain upper case.
    assert parse_user_id("@Alice:example.org:8448") == ("Alice", "example.org:8448")
    for bad in ("alice:example.org", "@alice", "@:example.org", "@alice:", "@al ice:example.org",
                "@alice\n:example.org", "@alice:example.org\n", "@" + "a" * 250 + ":example.org"):
        assert parse_user_id(bad) is None, bad
