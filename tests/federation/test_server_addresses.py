"""Server names that name no reachable server (a port beyond 65535) are refused where
they are parsed: in an X-Matrix header and in discovery, never at a socket."""

from __future__ import annotations

import pytest

from federation.discovery import split_host_port
from federation.events.identifiers import (
    ServerName,
    is_valid_server_address,
    is_valid_server_name,
    parse_server_name,
)
from federation.request_auth import RequestAuthError, parse_authorization_header

BAD_PORTS = ["example.org:99999", "example.org:0", "1.2.3.4:65536", "[::1]:70000", "example.org:00000"]
GOOD = ["example.org", "example.org:1", "example.org:65535", "1.2.3.4:8448", "[::1]", "[::1]:8448"]


@pytest.mark.parametrize("name", BAD_PORTS)
def test_bad_ports_are_not_addresses(name: str) -> None:
    # Still the grammar (events naming such users must keep passing the auth rules)...
    assert is_valid_server_name(name)
    # ...but nothing to connect to or accept a request from.
    assert not is_valid_server_address(name)
    with pytest.raises(ValueError):
        split_host_port(name)


@pytest.mark.parametrize("name", GOOD)
def test_good_names_are_addresses(name: str) -> None:
    assert is_valid_server_address(name)
    split_host_port(name)


@pytest.mark.parametrize("param", ["origin", "destination"])
@pytest.mark.parametrize("name", BAD_PORTS)
def test_x_matrix_header_refuses_bad_ports(param: str, name: str) -> None:
    params = {"origin": "good.example", "destination": "us.example", "key": "ed25519:a", "sig": "c2ln"}
    params[param] = name
    header = "X-Matrix " + ",".join(f'{k}="{v}"' for k, v in params.items())
    with pytest.raises(RequestAuthError):
        parse_authorization_header(header)


# One grammar, two strengths: what an event may name, and what names a reachable server.
@pytest.mark.parametrize(
    ("name", "grammar", "address"),
    [
        ("example.org", True, True),
        ("Example.ORG:8448", True, True),
        ("1.2.3.4", True, True),
        ("1.2.3.4:1234", True, True),
        ("[1234:5678::abcd]", True, True),
        ("[1234:5678::abcd]:5678", True, True),
        ("[::1.2.3.4]", True, True),
        ("example.org:99999", True, False),
        ("[::::::]", True, False),  # IPv6 characters, but no RFC 3513 address
        ("01.2.3.4", True, False),  # a leading zero reads as octal to resolvers
        ("256.1.1.1", False, False),  # digits and dots: an IPv4 literal, numbers up to 255
        ("1.2.3", False, False),
        ("1..2.3", False, False),
        ("0001.1.1.1", False, False),
        ("[fe80::1%eth0]", False, False),  # a zone index is not in the grammar
        ("[::1", False, False),
        ("[::1]x", False, False),
        ("ex_ample.org", False, False),
        ("example.org:", False, False),
        ("example.org:123456", False, False),
        ("example.org:\uff18\uff10", False, False),  # non-ASCII digits
        ("example.org\n", False, False),
        ("", False, False),
        ("a" * 256, False, False),
    ],
)
def test_one_grammar_two_strengths(name: str, grammar: bool, address: bool) -> None:
    assert is_valid_server_name(name) is grammar
    assert is_valid_server_address(name) is address
    assert (parse_server_name(name, reachable=True) is not None) is address


def test_parsed_parts() -> None:
    assert parse_server_name("[::1]:7") == ServerName("::1", 7, True)
    assert parse_server_name("example.org") == ServerName("example.org", None, False)
    assert parse_server_name("example.org:99999") == ServerName("example.org", 99999, False)
    assert parse_server_name("example.org:99999", reachable=True) is None
