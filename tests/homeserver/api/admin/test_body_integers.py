"""Integers in admin request bodies are stored, so they must fit the database's signed 64
bits: JSON sets no limit, and 2^63 to 2^64-1 still parse as integers. Beyond the range the
endpoint answers 400 with its own error, as for any other bad value, not 500 from the INSERT
(found by tests/fuzz/test_random_json.py)."""

from __future__ import annotations

import pytest

from tests.conftest import Api
from tests.homeserver.api.admin.helpers import V1, make_admin, make_user

TOO_BIG = [2**63, 2**64 - 1]
TOO_SMALL = -(2**63) - 1
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize("value", TOO_BIG)
@pytest.mark.parametrize("field", ["uses_allowed", "expiry_time"])
async def test_registration_token_integers_past_64_bits(api: Api, field: str, value: int) -> None:
    admin = await make_admin(api)
    _, err = await api.request("POST", V1 + "/registration_tokens/new", {"token": "abc", field: value},
                               token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM" and field in err["error"]
    # Nothing was created, and the same goes for an update of an existing token.
    assert (await api.get(V1 + "/registration_tokens", token=admin))["registration_tokens"] == []
    await api.post(V1 + "/registration_tokens/new", {"token": "abc"}, token=admin)
    _, err = await api.request("PUT", V1 + "/registration_tokens/abc", {field: value}, token=admin, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    assert (await api.get(V1 + "/registration_tokens/abc", token=admin))[field] is None


async def test_registration_token_largest_values_are_kept(api: Api) -> None:
    admin = await make_admin(api)
    made = await api.post(V1 + "/registration_tokens/new",
                          {"token": "abc", "uses_allowed": INT64_MAX, "expiry_time": INT64_MAX}, token=admin)
    assert made["uses_allowed"] == INT64_MAX and made["expiry_time"] == INT64_MAX
    stored = await api.get(V1 + "/registration_tokens/abc", token=admin)
    assert stored["uses_allowed"] == INT64_MAX and stored["expiry_time"] == INT64_MAX
    valid = (await api.get(V1 + "/registration_tokens?valid=true", token=admin))["registration_tokens"]
    assert [t["token"] for t in valid] == ["abc"]


@pytest.mark.parametrize("value", [*TOO_BIG, TOO_SMALL, -1])
@pytest.mark.parametrize("field", ["messages_per_second", "burst_count"])
async def test_override_ratelimit_integers_out_of_range(api: Api, field: str, value: int) -> None:
    admin = await make_admin(api)
    await make_user(api, "alice")
    path = V1 + "/users/@alice:test.local/override_ratelimit"
    _, err = await api.request("POST", path, {field: value}, token=admin, expect=400)
    assert err == {"errcode": "M_INVALID_PARAM", "error": f"{field!r} parameter must be a positive integer"}
    assert await api.get(path, token=admin) == {}
    # null is not a number either (Synapse's behaviour), and the largest value is kept.
    await api.request("POST", path, {field: None}, token=admin, expect=400)
    assert (await api.post(path, {field: INT64_MAX}, token=admin))[field] == INT64_MAX
    assert (await api.get(path, token=admin))[field] == INT64_MAX


@pytest.mark.parametrize("value", [*TOO_BIG, TOO_SMALL])
async def test_login_as_valid_until_past_64_bits(api: Api, value: int) -> None:
    admin = await make_admin(api)
    await make_user(api, "alice")
    path = V1 + "/users/@alice:test.local/login"
    _, err = await api.request("POST", path, {"valid_until_ms": value}, token=admin, expect=400)
    assert err == {"errcode": "M_UNKNOWN", "error": "'valid_until_ms' parameter must be an int"}
    token = (await api.post(path, {"valid_until_ms": INT64_MAX}, token=admin))["access_token"]
    assert (await api.get("account/whoami", token=token))["user_id"] == "@alice:test.local"
