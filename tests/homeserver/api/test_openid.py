"""OpenID: POST /user/{userId}/openid/request_token and the federation's
GET /openid/userinfo, which takes no signature: expiry, tampering, other users,
deactivated accounts and hostile tokens."""

from __future__ import annotations

from typing import Any

from homeserver.accounts.openid import TOKEN_LIFETIME_MS
from tests.conftest import ClientFactory
from tests.homeserver.api.reading_helpers import uid, user

USERINFO = "/_matrix/federation/v1/openid/userinfo"


async def test_request_token_and_userinfo(make_api: ClientFactory, clock: Any) -> None:
    api = await make_api(clock=clock, federation={"enabled": True})
    alice, bob = await user(api, "alice"), await user(api, "bob")
    token = await api.post(f"user/{uid('alice')}/openid/request_token", {}, token=alice)
    assert token["token_type"] == "Bearer" and token["matrix_server_name"] == "test.local"
    assert token["expires_in"] == TOKEN_LIFETIME_MS // 1000
    assert isinstance(token["access_token"], str) and len(token["access_token"]) > 40

    async def userinfo(access_token: str | None) -> tuple[int, Any]:
        params = {} if access_token is None else {"access_token": access_token}
        r = await api.client.get(USERINFO, params=params)  # unsigned, as a third party asks
        return r.status, await r.json()

    assert await userinfo(token["access_token"]) == (200, {"sub": uid("alice")})
    # Never an access token of the client API.
    _, err = await api.request("GET", "account/whoami", token=token["access_token"], expect=401)
    assert err["errcode"] == "M_UNKNOWN_TOKEN"
    # Only for oneself; a body that is not an object is refused.
    _, err = await api.request("POST", f"user/{uid('alice')}/openid/request_token", {}, token=bob, expect=403)
    assert err["errcode"] == "M_FORBIDDEN"
    r = await api.client.post(f"/_matrix/client/v3/user/{uid('bob')}/openid/request_token", data=b"[1",
                              headers={"Authorization": f"Bearer {bob}"})
    assert r.status == 400 and (await r.json())["errcode"] == "M_NOT_JSON"
    # Missing, garbage, tampered and oversized tokens.
    status, body = await userinfo(None)
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"
    for bad in ("x", "!!!not-base64!!!", token["access_token"][:-3] + "AAA", "A" * 5000,
                token["access_token"].replace(token["access_token"][5], "B" if token["access_token"][5] != "B" else "C")):
        status, body = await userinfo(bad)
        assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN", bad
    # Expired after an hour.
    clock.advance(TOKEN_LIFETIME_MS + 1000)
    status, body = await userinfo(token["access_token"])
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"


async def test_deactivated_accounts_tokens_stop_working(make_api: ClientFactory) -> None:
    from tests.conftest import password_auth

    api = await make_api(federation={"enabled": True})
    carol = await user(api, "carol")
    token = (await api.post(f"user/{uid('carol')}/openid/request_token", {}, token=carol))["access_token"]
    r = await api.client.get(USERINFO, params={"access_token": token})
    assert r.status == 200
    _, challenge = await api.request("POST", "account/deactivate", {}, token=carol, expect=401)
    await api.post("account/deactivate", {"auth": password_auth(challenge["session"], "carol")}, token=carol)
    r = await api.client.get(USERINFO, params={"access_token": token})
    assert r.status == 401 and (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"
