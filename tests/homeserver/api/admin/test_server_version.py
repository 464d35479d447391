"""GET /_synapse/admin/v1/server_version."""

from __future__ import annotations

from homeserver.server import SERVER_VERSION
from tests.conftest import Api
from tests.homeserver.api.admin.helpers import V1


async def test_server_version(api: Api) -> None:
    assert await api.get(V1 + "/server_version") == {"server_version": f"Accord {SERVER_VERSION}"}


async def test_admin_routes_only_on_admin_listeners(make_hs, aiohttp_client) -> None:  # noqa: ANN001
    hs = await make_hs()
    client = await aiohttp_client(hs.build_app(["client"]))
    async with client.get(V1 + "/server_version") as resp:
        assert resp.status == 404
        assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"
