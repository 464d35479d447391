"""Identifier grammars (spec appendix)."""

from __future__ import annotations

import pytest

from homeserver.identifiers import (
    LocalServer,
    domain_is,
    is_valid_localpart,
    is_valid_server_name,
    parse_user_id,
)


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


def test_is_mine_splits_at_the_first_colon() -> None:
    here = LocalServer("example.org")
    assert here.is_mine("@alice:example.org")
    assert here.is_mine("#room:example.org")
    assert not here.is_mine("@alice:other.example.org")
    assert not here.is_mine("@alice:example.org:8448")
    assert not here.is_mine("example.org")
    assert not here.is_mine("@alice")
    # A name with a port: the domain is everything after the first colon.
    with_port = LocalServer("8.8.8.8:8448")
    assert with_port.is_mine("@bob:8.8.8.8:8448")
    assert not with_port.is_mine("@bob:1.2.3.4:8.8.8.8:8448")
    assert not LocalServer("8448").is_mine("@bob:example.org:8448")
    assert domain_is("@bob:[::1]:8448", "[::1]:8448")
