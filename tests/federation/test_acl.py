"""m.room.server_acl decisions, in the order the event schema lists them."""

from __future__ import annotations

import pytest

from federation.acl import server_allowed_by_acl, strip_port


@pytest.mark.parametrize(
    ("name", "host"),
    [("evil.com", "evil.com"), ("evil.com:8448", "evil.com"), ("[::1]:8448", "[::1]"), ("1.2.3.4:1", "1.2.3.4")],
)
def test_ports_are_not_considered(name: str, host: str) -> None:
    assert strip_port(name) == host


@pytest.mark.parametrize(
    ("server", "acl", "allowed"),
    [
        ("any.org", None, True),  # no ACL: allow
        ("any.org", {}, False),  # no allow list: deny everyone
        ("any.org", {"allow": ["*"]}, True),
        ("evil.com:1234", {"allow": ["*"], "deny": ["evil.com"]}, False),
        ("EVIL.com", {"allow": ["*"], "deny": ["evil.COM"]}, False),  # case-insensitive
        ("sub.evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, False),
        ("evil.com", {"allow": ["*"], "deny": ["*.evil.com"]}, True),
        ("a1.org", {"allow": ["a?.org"]}, True),
        ("a12.org", {"allow": ["a?.org"]}, False),
        ("a.org", {"allow": ["a.org"], "deny": ["a.org"]}, False),  # deny beats allow
        ("x.y", {"allow": ["x.y*"]}, True),
        ("xay", {"allow": ["x.y"]}, False),  # '.' is literal
        ("1.2.3.4:8448", {"allow": ["*"], "allow_ip_literals": False}, False),
        ("[::1]:8448", {"allow": ["*"], "allow_ip_literals": False}, False),
        ("1.2.3.4", {"allow": ["*"]}, True),  # IP literals allowed by default
        ("1.2.3.4", {"allow": ["*"], "allow_ip_literals": "no"}, True),  # non-boolean: default
        ("1.2.3.4.example", {"allow": ["*"], "allow_ip_literals": False}, True),
        ("a.org", {"allow": "*"}, False),  # malformed lists match nothing
        ("a.org", {"allow": [5, "a.org"]}, True),
    ],
)
def test_acl(server: str, acl: dict | None, allowed: bool) -> None:
    assert server_allowed_by_acl(server, acl) is allowed
