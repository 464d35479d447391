"""Third-party networks: no application services run here, so no protocol is known;
the list is empty and every lookup is the spec's 404, never an unrouted endpoint."""

from __future__ import annotations

import pytest

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import user


async def test_no_protocols(api: Api) -> None:
    alice = await user(api, "alice")
    assert await api.get("thirdparty/protocols", token=alice) == {}
    for path in ("thirdparty/protocol/irc", "thirdparty/location/irc?channel=x", "thirdparty/user/irc",
                 "thirdparty/location?alias=%23a:test.local", "thirdparty/user?userid=@a:test.local"):
        _, err = await api.request("GET", path, token=alice, expect=404)
        assert err["errcode"] == "M_NOT_FOUND", path
    for path in ("thirdparty/location", "thirdparty/user"):
        _, err = await api.request("GET", path, token=alice, expect=400)
        assert err["errcode"] == "M_MISSING_PARAM", path


@pytest.mark.parametrize("path", ["thirdparty/protocols", "thirdparty/protocol/irc", "thirdparty/user?userid=@a:b"])
async def test_needs_a_token(api: Api, path: str) -> None:
    _, err = await api.request("GET", path, expect=401)
    assert err["errcode"] == "M_MISSING_TOKEN"
