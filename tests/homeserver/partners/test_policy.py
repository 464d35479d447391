"""The federation policy and the partnership inputs, as units; the admin API in process."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.partners.partnerships import check_request_id, clean_text
from homeserver.partners.policy import FederationPolicy, is_exempt_path
from tests.conftest import Api, ClientFactory

ADMIN = "/_accord/admin/v1/partnerships"


class Partners:
    def __init__(self, *names: str) -> None:
        self.names = set(names)

    def is_partner_cached(self, server_name: str) -> bool:
        return server_name in self.names


class Audit:
    """An audit log that keeps records in a list (the policy only appends)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    async def record(self, action: str, **kw: Any) -> None:
        self.records.append((action, kw))


class Mono:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def policy(mode: str, *, partners: tuple[str, ...] = (), allowed: tuple[str, ...] = ()) -> FederationPolicy:
    return FederationPolicy(
        mode=mode, server_name="us.example", allowed_servers=allowed, partners=Partners(*partners),
        audit=Audit(), monotonic=Mono(),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/_matrix/key/v2/server", True),
        ("/_matrix/key/v2/query", True),
        ("/_matrix/federation/v1/version", True),
        ("/_matrix/federation/unstable/org.accord.partners/v1/request/x", True),
        ("/_matrix/federation/unstable/org.accord.directory/v1/search", True),
        ("/_matrix/federation/v1/send/1", False),
        ("/_matrix/federation/v1/version/extra", False),
        ("/_matrix/federation/v2/send_join/!r/$e", False),
        ("/_matrix/key/../federation/v1/send/1", False),
        ("/_matrix/federation/unstable/org.accord.partners/../../v1/send/1", False),
        ("/_matrix/federation/unstable/org.accord.partnersX/v1/request/x", False),
        ("/_matrix/keys/v2/server", False),
    ],
)
def test_exempt_paths(path: str, exempt: bool) -> None:
    assert is_exempt_path(path) is exempt


def test_open_allows_everyone() -> None:
    p = policy("open")
    assert p.server_allowed("anyone.example") and p.allow_outbound("anyone.example", "/_matrix/federation/v1/send/1")


def test_partners_allows_partners_allow_list_and_ourselves_only() -> None:
    p = policy("partners", partners=("partner.example",), allowed=("friend.example",))
    assert p.server_allowed("partner.example")
    assert p.server_allowed("friend.example")
    assert p.server_allowed("us.example")
    assert not p.server_allowed("stranger.example")
    assert not p.server_allowed("partner.example.evil")  # exact names, no suffix matching
    assert p.request_allowed("stranger.example", "/_matrix/key/v2/server")
    assert not p.request_allowed("stranger.example", "/_matrix/federation/v1/send/1")


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        policy("closed")


async def test_refusals_are_audited_at_most_once_a_minute_per_server() -> None:
    p = policy("partners")
    audit: Audit = p.audit  # type: ignore[assignment]
    mono: Mono = p.monotonic  # type: ignore[assignment]
    for _ in range(100):
        assert not p.allow_outbound("stranger.example", "/_matrix/federation/v1/send/1?x=1")
        with pytest.raises(MatrixError) as e:
            await p.check_inbound("stranger.example", "/_matrix/federation/v1/send/1")
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    await p.flush()
    assert sorted((a, kw["target"], kw["details"]["direction"]) for a, kw in audit.records) == [
        ("federation.refused", "stranger.example", "inbound"),
        ("federation.refused", "stranger.example", "outbound"),
    ]
    assert all(kw["outcome"] == "refused" for _, kw in audit.records)
    # The path is recorded without its query string.
    assert {kw["details"]["path"] for _, kw in audit.records} == {"/_matrix/federation/v1/send/1"}
    mono.t += 61
    assert not p.allow_outbound("stranger.example", "/_matrix/federation/v1/send/2")
    assert not p.allow_outbound("other.example", "/_matrix/federation/v1/send/2")
    await p.flush()
    assert len(audit.records) == 4


async def test_refusal_memory_is_bounded() -> None:
    p = policy("partners")
    for i in range(10_050):
        p.note_refusal(f"s{i}.example", "outbound", "/x")
    await p.flush()
    assert len(p._last_recorded) == 10_000


def test_clean_text() -> None:
    assert clean_text("  hello\nworld ", "m", 100) == "hello\nworld"
    assert clean_text(None, "m", 100) is None
    for bad, code in ((5, "M_BAD_JSON"), ("x" * 101, "M_TOO_LARGE"), ("a\x00b", "M_INVALID_PARAM"),
                      ("a\u202eb", "M_INVALID_PARAM")):
        with pytest.raises(MatrixError) as e:
            clean_text(bad, "m", 100)
        assert e.value.errcode == code
    with pytest.raises(MatrixError):
        clean_text("   ", "m", 100, required=True)


@pytest.mark.parametrize("rid", ["", "a" * 65, "a b", "a/b", "é", "../x"])
def test_bad_request_ids(rid: str) -> None:
    with pytest.raises(MatrixError):
        check_request_id(rid)


async def _admin(api: Api, name: str = "admin") -> str:
    reg = await api.register(name)
    await api.hs.users.set_admin(reg["user_id"], True)
    return str(reg["access_token"])


async def test_admin_api_requires_a_server_admin(make_api: ClientFactory) -> None:
    api = await make_api(federation={"enabled": True, "policy": "partners"})
    user = (await api.register("user"))["access_token"]
    status, err = await api.request("GET", ADMIN, expect=None)
    assert (status, err["errcode"]) == (401, "M_MISSING_TOKEN")
    for method, path, body in (
        ("GET", ADMIN, None),
        ("POST", ADMIN, {"server_name": "peer.example"}),
        ("GET", ADMIN + "/peer.example", None),
        ("POST", ADMIN + "/peer.example/accept", {}),
        ("POST", ADMIN + "/peer.example/decline", {}),
        ("POST", ADMIN + "/peer.example/revoke", {}),
        ("POST", ADMIN, "not json at all"),
    ):
        status, err = await api.request(method, path, body, token=user, expect=None)
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), (method, path)
    assert await api.hs.audit.query(action="partnership.") == []


async def test_admin_api_refuses_bad_input(make_api: ClientFactory) -> None:
    api = await make_api(federation={"enabled": True, "policy": "partners"})
    token = await _admin(api)
    assert await api.get(ADMIN, token=token) == {"partnerships": []}
    for body in ({}, {"server_name": 5}, {"server_name": "not a server"}, {"server_name": "test.local"},
                 {"server_name": "peer.example", "message": {"x": 1}},
                 {"server_name": "peer.example", "message": "m" * 3000}):
        status, err = await api.request("POST", ADMIN, body, token=token, expect=None)
        assert status in (400, 413) or err["errcode"] == "M_TOO_LARGE", (body, status, err)
    for query in ("?state=bogus", "?direction=sideways"):
        status, err = await api.request("GET", ADMIN + query, token=token, expect=None)
        assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
    status, err = await api.request("GET", ADMIN + "/peer.example", token=token, expect=None)
    assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
    for action in ("accept", "decline", "revoke"):
        status, err = await api.request("POST", f"{ADMIN}/peer.example/{action}", {}, token=token, expect=None)
        assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
    status, _ = await api.request("POST", f"{ADMIN}/peer.example/explode", {}, token=token, expect=None)
    assert status in (404, 405)


async def test_unreachable_peer_marks_the_request_failed(make_api: ClientFactory) -> None:
    api = await make_api(federation={"enabled": True, "static_hosts": {"peer.example": "127.0.0.1:9"}})
    token = await _admin(api)
    status, err = await api.request("POST", ADMIN, {"server_name": "peer.example"}, token=token, expect=None)
    assert status == 502, err
    (p,) = (await api.get(ADMIN + "?state=failed", token=token))["partnerships"]
    assert (p["server_name"], p["direction"]) == ("peer.example", "outbound")
    outcomes = [(e.action, e.outcome) for e in await api.hs.audit.query(action="partnership.request")]
    assert outcomes == [("partnership.request", "failed"), ("partnership.request", "ok")]
