"""Discovery endpoints and the behaviour every endpoint shares: error shapes, bodies,
access tokens and CORS."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import Api

V3 = "/_matrix/client/v3"
REPO_ROOT = Path(__file__).resolve().parents[3]

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}


# --- discovery ----------------------------------------------------------------------


async def test_versions(api: Api) -> None:
    async with api.client.get("/_matrix/client/versions") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        body = await resp.json()
    # Only what is implemented (see homeserver/api/client/versions.py): v1.18 added
    # the admin lock and suspend endpoints, which are not.
    assert body == {
        "versions": [f"v1.{minor}" for minor in range(1, 18)],
        "unstable_features": {
            "org.matrix.msc2285.stable": True, "org.matrix.msc3916.stable": True,
            "im.nheko.summary": True, "uk.half-shot.msc2666.query_mutual_rooms": True,
            "org.matrix.simplified_msc3575": True,
        },
    }


async def test_versions_ignores_a_bad_token(api: Api) -> None:
    """/versions is public: an unknown token must not turn it into a 401."""
    body = await api.get("/_matrix/client/versions", token="nonsense")
    assert "v1.1" in body["versions"]


async def test_well_known_not_configured(api: Api) -> None:
    status, body = await api.request("GET", "/.well-known/matrix/client", expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    status, body = await api.request("GET", "/.well-known/matrix/server", expect=404)
    assert body["errcode"] == "M_NOT_FOUND"


async def test_well_known_configured(make_api) -> None:
    api = await make_api(
        well_known={
            "client_base_url": "https://matrix.example.org",
            "server_delegation": "matrix.example.org:443",
        }
    )
    async with api.client.get("/.well-known/matrix/client") as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert await resp.json() == {"m.homeserver": {"base_url": "https://matrix.example.org"}}
    assert await api.get("/.well-known/matrix/server") == {"m.server": "matrix.example.org:443"}


async def test_capabilities_requires_auth(api: Api) -> None:
    _, body = await api.request("GET", "capabilities", expect=401)
    assert body["errcode"] == "M_MISSING_TOKEN"


async def test_capabilities(api: Api) -> None:
    reg = await api.register("alice")
    body = await api.get("capabilities", token=reg["access_token"])
    assert body == {
        "capabilities": {
            "m.change_password": {"enabled": True},
            "m.room_versions": {
                "default": "12",
                "available": {str(n): "stable" for n in range(1, 13)},
            },
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": False},
            "m.get_login_token": {"enabled": True},
            "m.profile_fields": {"enabled": True},
            "org.matrix.msc3882.get_login_token": {"enabled": False},
        }
    }


async def test_r0_prefix_is_served(api: Api) -> None:
    reg = await api.register("alice")
    body = await api.get("/_matrix/client/r0/account/whoami", token=reg["access_token"])
    assert body["user_id"] == "@alice:test.local"


# --- routing and bodies -------------------------------------------------------------


async def test_unknown_endpoint(api: Api) -> None:
    _, body = await api.request("GET", f"{V3}/no/such/endpoint", expect=404)
    assert body["errcode"] == "M_UNRECOGNIZED"
    assert isinstance(body["error"], str)
    _, body = await api.request("GET", "/_matrix/nothing", expect=404)
    assert body["errcode"] == "M_UNRECOGNIZED"


async def test_wrong_method(api: Api) -> None:
    _, body = await api.request("DELETE", "login", expect=405)
    assert body["errcode"] == "M_UNRECOGNIZED"
    _, body = await api.request("PUT", "/_matrix/client/versions", {}, expect=405)
    assert body["errcode"] == "M_UNRECOGNIZED"


async def test_invalid_json(api: Api) -> None:
    _, body = await api.request("POST", "login", data=b"{not json", expect=400)
    assert body["errcode"] == "M_NOT_JSON"
    _, body = await api.request("POST", "login", data=b"\xff\xfe", expect=400)
    assert body["errcode"] == "M_NOT_JSON"


async def test_empty_body_where_object_required(api: Api) -> None:
    _, body = await api.request("POST", "login", data=b"", expect=400)
    assert body["errcode"] == "M_NOT_JSON"


async def test_non_object_json(api: Api) -> None:
    for payload in (b"[]", b"42", b'"text"', b"null", b"true"):
        _, body = await api.request("POST", "login", data=payload, expect=400)
        assert body["errcode"] == "M_BAD_JSON", payload


async def test_oversized_body(make_api) -> None:
    api = await make_api(limits={"max_request_body_bytes": 1024})
    big = {"type": "m.login.password", "padding": "x" * 2000}
    _, body = await api.request("POST", "login", big, expect=413)
    assert body["errcode"] == "M_TOO_LARGE"
    # Just under the limit is read (and fails for its content, not its size).
    ok = {"type": "m.login.password", "padding": "x" * 900}
    _, body = await api.request("POST", "login", ok, expect=400)
    assert body["errcode"] == "M_BAD_JSON"


async def test_oversized_chunked_body(make_api) -> None:
    """Without a Content-Length the limit still holds while the body streams in."""
    api = await make_api(limits={"max_request_body_bytes": 1024})

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "m.login.password", "padding": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with api.client.post(f"{V3}/login", data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"



async def test_compressed_body_capped_by_its_decompressed_size(make_api) -> None:
    """A compressed body is read as aiohttp decompresses it: its declared (compressed)
    length says nothing of its size, so the cap holds on what it decompresses to."""
    api = await make_api(limits={"max_request_body_bytes": 1024})
    big = json.dumps({"type": "m.login.password", "padding": "x" * 5000}).encode()
    packed = gzip.compress(big)
    assert len(packed) < 1024
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with api.client.post(f"{V3}/login", data=packed, headers=headers) as resp:
        assert resp.status == 413
        assert (await resp.json())["errcode"] == "M_TOO_LARGE"
    small = gzip.compress(json.dumps({"type": "m.login.password", "padding": "x" * 900}).encode())
    async with api.client.post(f"{V3}/login", data=small, headers=headers) as resp:
        assert resp.status == 400  # read whole, then refused for its content
        assert (await resp.json())["errcode"] == "M_BAD_JSON"


async def test_body_arriving_after_its_headers(api: Api) -> None:
    """A body with a Content-Length that comes in pieces, after the headers, is read whole."""
    body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "nobody"},
                       "password": "wrong"}).encode()
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    try:
        writer.write(
            f"POST {V3}/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        for i in range(0, len(body), 16):
            await asyncio.sleep(0.01)
            writer.write(body[i:i + 16])
            await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403"), head
    assert json.loads(payload)["errcode"] == "M_FORBIDDEN"


# --- access tokens ------------------------------------------------------------------


async def test_missing_token(api: Api) -> None:
    _, body = await api.request("GET", "account/whoami", expect=401)
    assert body["errcode"] == "M_MISSING_TOKEN"


async def test_unknown_token(api: Api) -> None:
    _, body = await api.request("GET", "account/whoami", token="acc_nonsense", expect=401)
    assert body["errcode"] == "M_UNKNOWN_TOKEN"
    assert body["soft_logout"] is False


async def test_token_in_query_parameter(api: Api) -> None:
    reg = await api.register("alice")
    body = await api.get(f"account/whoami?access_token={reg['access_token']}")
    assert body["user_id"] == "@alice:test.local"
    _, body = await api.request("GET", "account/whoami?access_token=bogus", expect=401)
    assert body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_malformed_authorization_header(api: Api) -> None:
    reg = await api.register("alice")
    for header in (f"Basic {reg['access_token']}", "Bearer", "Bearer    ", reg["access_token"]):
        _, body = await api.request(
            "GET", "account/whoami", headers={"Authorization": header}, expect=401
        )
        assert body["errcode"] == "M_MISSING_TOKEN", header


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    reg = await api.register("alice")
    body = await api.get(
        "account/whoami", headers={"Authorization": f"bearer {reg['access_token']}"}
    )
    assert body["user_id"] == "@alice:test.local"


# --- CORS ---------------------------------------------------------------------------


async def test_cors_preflight_on_any_path(api: Api) -> None:
    for path in (f"{V3}/login", f"{V3}/account/whoami", f"{V3}/no/such/thing", "/anything"):
        async with api.client.options(
            path,
            headers={
                "Origin": "https://app.example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization",
            },
        ) as resp:
            assert resp.status == 204, path
            for name, value in CORS.items():
                assert resp.headers[name] == value, (path, name)


async def test_options_does_not_run_the_endpoint(api: Api) -> None:
    """The spec: no endpoint logic for OPTIONS (here: logout must not log out)."""
    reg = await api.register("alice")
    async with api.client.options(
        f"{V3}/logout", headers={"Authorization": f"Bearer {reg['access_token']}"}
    ) as resp:
        assert resp.status == 204
    await api.get("account/whoami", token=reg["access_token"])


async def test_cors_on_normal_and_error_responses(api: Api) -> None:
    for path, status in (
        ("/_matrix/client/versions", 200),
        (f"{V3}/login", 200),
        (f"{V3}/account/whoami", 401),
        (f"{V3}/nope", 404),
    ):
        async with api.client.get(path, headers={"Origin": "https://app.example.org"}) as resp:
            assert resp.status == status
            assert resp.headers["Access-Control-Allow-Origin"] == "*", path
            assert resp.headers["Content-Type"].startswith("application/json")



async def test_an_unexpected_error_is_a_500_that_says_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a handler answers 500 M_UNKNOWN in the spec's shape, with CORS, and keeps
    the exception's text in the log, never in the response."""
    reg = await api.register("alice")

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.hs.auth, "get_requester", broken)
    async with api.client.get(
        f"{V3}/account/whoami", headers={"Authorization": f"Bearer {reg['access_token']}"}
    ) as resp:
        assert resp.status == 500
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        text = await resp.text()
    assert json.loads(text) == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    assert "secret" not in text
    assert "secret internals" in caplog.text


async def test_errors_and_preflights_are_counted(api: Api) -> None:
    """Requests that never reach a route (preflights, unknown paths, wrong methods) are
    counted too, under "unmatched"."""
    async with api.client.options(f"{V3}/login") as resp:
        assert resp.status == 204
    await api.request("GET", f"{V3}/no/such/thing", expect=404)
    await api.request("DELETE", "login", expect=405)
    async with api.client.get("/metrics") as r:
        text = await r.text()
    for method, status in (("OPTIONS", 204), ("GET", 404), ("DELETE", 405)):
        assert f'accord_http_requests_total{{method="{method}",route="unmatched",status="{status}"}} 1' in text


# Endpoints a listed version added that are not served, each for a reason the spec allows
# (see homeserver/api/client/versions.py); anything else a claimed version added must be.
NOT_SERVED_BY_CHOICE = {
    ("POST", "/_matrix/client/v1/appservice/{appserviceId}/ping"): "the Application Service API is not implemented",
    ("GET", "/_matrix/client/v3/login/sso/redirect"): "no SSO: /login does not offer m.login.sso",
    ("GET", "/_matrix/client/v3/login/sso/redirect/{idpId}"): "no SSO",
    ("GET", "/_matrix/client/v1/media/preview_url"): "URL previews are off unless media.url_preview.enabled",
}


def _spec_operations() -> list[tuple[str, str, str]]:
    """(method, path, version added) of every client-server operation the spec dates."""
    spec = REPO_ROOT.parent / "shared" / "matrix-spec" / "openapi" / "openapi-client-server.json"
    if not spec.exists():
        pytest.skip(f"the spec snapshot is not at {spec}")
    doc = json.loads(spec.read_text())
    return [
        (method.upper(), path, op["x-addedInMatrixVersion"])
        for path, item in doc["paths"].items() for method, op in item.items()
        if isinstance(op, dict) and "x-addedInMatrixVersion" in op
    ]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.lstrip("v").split("."))


async def test_listed_versions_route_what_they_added(api: Api) -> None:
    """Every endpoint the spec says a listed version added is routed (answers anything
    but M_UNRECOGNIZED) unless not serving it is a documented choice."""
    listed = (await api.get("/_matrix/client/versions"))["versions"]
    newest = max(_version(v) for v in listed)
    checked = 0
    for method, path, added in _spec_operations():
        if _version(added) > newest or (method, path) in NOT_SERVED_BY_CHOICE:
            continue
        url = re.sub(r"\{([^}]+)\}", lambda m: quote("@probe:test.local" if m.group(1) == "userId" else "probe"), path)
        status, answer = await api.request(method, url, {} if method in ("POST", "PUT") else None, expect=None)
        assert not (status in (404, 405) and (answer or {}).get("errcode") == "M_UNRECOGNIZED"), (method, path, added)
        checked += 1
    assert checked >= 30  # 34 operations up to v1.17


async def test_well_known_support(make_api) -> None:  # noqa: ANN001
    """v1.10: the administrators' contacts as configured, 404 when there are none."""
    api = await make_api()
    _, body = await api.request("GET", "/.well-known/matrix/support", expect=404)
    assert body["errcode"] == "M_NOT_FOUND"
    api = await make_api(well_known={
        "support_contacts": [{"matrix_id": "@admin:test.local", "email_address": "admin@example.org"},
                             {"role": "m.role.security", "email_address": "security@example.org"}],
        "support_page": "https://example.org/help",
    })
    assert await api.get("/.well-known/matrix/support") == {
        "contacts": [{"matrix_id": "@admin:test.local", "email_address": "admin@example.org", "role": "m.role.admin"},
                     {"email_address": "security@example.org", "role": "m.role.security"}],
        "support_page": "https://example.org/help",
    }


async def test_phone_numbers_are_not_supported(api: Api) -> None:
    """v1.13: requestToken for phone numbers answers M_THREEPID_MEDIUM_NOT_SUPPORTED."""
    body = {"client_secret": "s3cret", "country": "GB", "phone_number": "07700900001", "send_attempt": 1}
    for path in ("register", "account/password", "account/3pid"):
        _, err = await api.request("POST", f"{path}/msisdn/requestToken", body, expect=400)
        assert err["errcode"] == "M_THREEPID_MEDIUM_NOT_SUPPORTED", path
    status, err = await api.request("POST", "register/msisdn/requestToken", data=b"{", expect=400)
    assert err["errcode"] == "M_NOT_JSON"
