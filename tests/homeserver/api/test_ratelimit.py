"""Rate limiting: 429 M_LIMIT_EXCEEDED with retry_after_ms and Retry-After, per action,
per address or user, and the operator's exempt users.

A fake clock stands still unless moved, so bucket refills are exact.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import PASSWORD, Api, FakeClock, running_hs

BOT = "@bot:test.local"


def limits(**actions: tuple[float, int]) -> dict[str, Any]:
    return {
        "enabled": True,
        "actions": {k: {"per_second": ps, "burst": b} for k, (ps, b) in actions.items()},
        "exempt_users": [BOT],
    }


def login_body(user: str, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
    }


async def assert_limited(api: Api, method: str, path: str, body: Any = None, *,
                         token: str | None = None, retry_after_ms: int) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if not path.startswith("/"):
        path = "/_matrix/client/v3/" + path
    async with api.client.request(method, path, json=body, headers=headers) as resp:
        assert resp.status == 429
        err = await resp.json()
        assert err["errcode"] == "M_LIMIT_EXCEEDED"
        assert isinstance(err["error"], str)
        assert err["retry_after_ms"] == retry_after_ms
        assert resp.headers["Retry-After"] == str(-(-retry_after_ms // 1000))
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_registration_limit(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(registration=(1.0, 2)))
    await api.get("register/available?username=a")
    await api.get("register/available?username=b")
    await assert_limited(api, "GET", "register/available?username=c", retry_after_ms=1001)
    await assert_limited(api, "POST", "register", {"username": "c", "password": PASSWORD},
                         retry_after_ms=1001)
    clock.advance(500)
    await assert_limited(api, "GET", "register/available?username=c", retry_after_ms=501)
    clock.advance(501)
    await api.get("register/available?username=c")
    await assert_limited(api, "GET", "register/available?username=d", retry_after_ms=1000)


async def test_retry_after_header_rounds_up_to_seconds(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(registration=(0.25, 1)))
    await api.get("register/available?username=a")
    await assert_limited(api, "GET", "register/available?username=b", retry_after_ms=4001)


async def test_login_limit_per_address(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(login=(0.5, 2)))
    await api.register("alice")
    await api.register("carol")
    await api.post("login", login_body("alice"))
    await api.post("login", login_body("carol"))
    # Same address, other account: still limited.
    await assert_limited(api, "POST", "login", login_body("alice"), retry_after_ms=2001)
    clock.advance(2001)
    await api.post("login", login_body("alice"))


async def test_exempt_user_is_not_limited(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(login=(0.5, 1), profile=(1.0, 1)))
    await api.register("bot")
    await api.register("alice")
    tokens = [(await api.post("login", login_body("bot")))["access_token"] for _ in range(5)]
    # The bot's logins took nothing from the address's bucket.
    await api.post("login", login_body("alice"))
    await assert_limited(api, "POST", "login", login_body("alice"), retry_after_ms=2001)
    for i in range(5):
        await api.put(f"profile/{BOT}/displayname", {"displayname": f"Bot {i}"}, token=tokens[0])


async def test_failed_logins_limited_per_account(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(login_failures=(0.1, 2)))
    await api.register("alice")
    for _ in range(2):
        _, err = await api.request("POST", "login", login_body("alice", "guess guess"), expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    # Even the right password waits now: guessing must not continue at full speed.
    await assert_limited(api, "POST", "login", login_body("alice"), retry_after_ms=10001)
    await assert_limited(api, "POST", "login", login_body("ALICE", "guess"), retry_after_ms=10001)
    # Other accounts are unaffected.
    await api.register("bob")
    await api.post("login", login_body("bob"))
    clock.advance(10001)
    await api.post("login", login_body("alice"))


async def test_successful_logins_do_not_count_as_failures(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(login_failures=(0.1, 1)))
    await api.register("alice")
    for _ in range(5):
        await api.post("login", login_body("alice"))


async def test_profile_limit_per_user(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(profile=(1.0, 2)))
    alice = (await api.register("alice"))["access_token"]
    bob = (await api.register("bob"))["access_token"]
    path = "profile/@alice:test.local/displayname"
    await api.put(path, {"displayname": "A1"}, token=alice)
    await api.put(path, {"displayname": "A2"}, token=alice)
    await assert_limited(api, "PUT", path, {"displayname": "A3"}, token=alice, retry_after_ms=1001)
    await assert_limited(api, "DELETE", path, token=alice, retry_after_ms=1001)
    assert await api.get(path) == {"displayname": "A2"}
    await api.put("profile/@bob:test.local/displayname", {"displayname": "B"}, token=bob)
    # Reading is not limited.
    for _ in range(5):
        await api.get("profile/@alice:test.local")


async def test_disabled(make_api, clock: FakeClock) -> None:
    api = await make_api(
        clock=clock,
        rate_limits={"enabled": False,
                     "actions": {"registration": {"per_second": 0.001, "burst": 1}}},
    )
    for i in range(5):
        await api.get(f"register/available?username=u{i}")


async def test_actions_not_configured_are_not_limited(make_api, clock: FakeClock) -> None:
    api = await make_api(clock=clock, rate_limits=limits(registration=(1.0, 2)))
    await api.register("alice")  # two requests: the challenge and the dummy stage
    for _ in range(5):
        await api.post("login", login_body("alice"))


async def test_x_forwarded_for_is_trusted_only_where_configured(make_hs, aiohttp_client) -> None:  # noqa: ANN001
    """Behind a proxy, limits apply per real client address, not per proxy."""
    from homeserver.config import RESOURCES

    hs = await make_hs(
        rate_limits={"enabled": True, "actions": {"registration": {"per_second": 0.001, "burst": 1}}}
    )
    proxied = await aiohttp_client(hs.build_app(list(RESOURCES), x_forwarded=True))
    direct = await aiohttp_client(hs.build_app(list(RESOURCES)))
    url = "/_matrix/client/v3/register/available?username=free"
    for ip in ("10.0.0.1", "10.0.0.2"):
        async with proxied.get(url, headers={"X-Forwarded-For": f"{ip}, 127.0.0.1"}) as r:
            assert r.status == 200
    async with proxied.get(url, headers={"X-Forwarded-For": "10.0.0.1"}) as r:
        assert r.status == 429
    # Without x_forwarded the header is ignored: both requests come from the test client.
    async with direct.get(url, headers={"X-Forwarded-For": "10.0.0.3"}) as r:
        assert r.status == 200
    async with direct.get(url, headers={"X-Forwarded-For": "10.0.0.4"}) as r:
        assert r.status == 429


async def test_exemption_set_by_api_survives_restart(make_config) -> None:  # noqa: ANN001
    config = make_config()
    async with running_hs(config) as hs:
        await hs.registration.create_account("@bot:test.local", "bot-password-1", login=False)
        assert not hs.is_ratelimit_exempt("@bot:test.local")
        await hs.set_ratelimit_exempt("@bot:test.local", True)
        assert hs.is_ratelimit_exempt("@bot:test.local")
    async with running_hs(config) as hs:
        assert hs.is_ratelimit_exempt("@bot:test.local")
        await hs.set_ratelimit_exempt("@bot:test.local", False)
        assert not hs.is_ratelimit_exempt("@bot:test.local")
