"""Server names that name no reachable server (a port beyond 65535) are refused where
they are parsed: in an X-Matrix header and in discovery, never at a socket."""

from __future__ import annotations

import pytest

from federation.discovery import split_host_port
from federation.events.identifiers import is_valid_server_address, is_valid_server_name
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
