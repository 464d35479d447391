"""matrix-nio, a real client library, against a server started as an operator would."""

from __future__ import annotations

from pathlib import Path

import nio

from tests.e2e.server_process import ServerProcess


async def test_nio_register_login_rename_profile_logout(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    try:
        client = nio.AsyncClient(server.client_url, "carol")
        try:
            resp = await client.register("carol", "s3cret-passw0rd", device_name="first")
            assert isinstance(resp, nio.RegisterResponse), resp
            assert resp.user_id == "@carol:localhost"
            await client.logout()

            login = await client.login("s3cret-passw0rd", device_name="nio laptop")
            assert isinstance(login, nio.LoginResponse), login
            device_id = login.device_id

            renamed = await client.update_device(device_id, {"display_name": "renamed by nio"})
            assert isinstance(renamed, nio.UpdateDeviceResponse), renamed
            devices = await client.devices()
            assert isinstance(devices, nio.DevicesResponse), devices
            by_id = {d.id: d.display_name for d in devices.devices}
            assert by_id[device_id] == "renamed by nio"

            set_name = await client.set_displayname("Carol C.")
            assert isinstance(set_name, nio.ProfileSetDisplayNameResponse), set_name
            name = await client.get_displayname()
            assert isinstance(name, nio.ProfileGetDisplayNameResponse), name
            assert name.displayname == "Carol C."
            profile = await client.get_profile()
            assert isinstance(profile, nio.ProfileGetResponse) and profile.displayname == "Carol C."

            who = await client.whoami()
            assert isinstance(who, nio.WhoamiResponse) and who.device_id == device_id

            out = await client.logout()
            assert isinstance(out, nio.LogoutResponse), out
            client.access_token = login.access_token
            after = await client.whoami()
            assert isinstance(after, nio.WhoamiError) and after.status_code == "M_UNKNOWN_TOKEN"

            wrong = await client.login("wrong password")
            assert isinstance(wrong, nio.LoginError) and wrong.status_code == "M_FORBIDDEN"
        finally:
            await client.close()
    finally:
        assert await server.stop() == 0


async def test_nio_openid_token_checked_by_a_third_party(tmp_path: Path) -> None:
    """A widget's backend holds no server key: it checks the token a client got with
    matrix-nio over the federation listener's userinfo, unsigned, and learns the user."""
    import aiohttp

    server = ServerProcess(tmp_path / "hs")
    await server.start()
    try:
        client = nio.AsyncClient(server.client_url, "dora")
        try:
            resp = await client.register("dora", "s3cret-passw0rd")
            assert isinstance(resp, nio.RegisterResponse), resp
            token = await client.get_openid_token(resp.user_id)
            assert isinstance(token, nio.GetOpenIDTokenResponse), token
            assert token.matrix_server_name == "localhost" and token.token_type == "Bearer"
            assert token.expires_in == 3600
        finally:
            await client.close()
        userinfo = server.urls["federation"] + "/_matrix/federation/v1/openid/userinfo"
        async with aiohttp.ClientSession() as s:
            async with s.get(userinfo, params={"access_token": token.access_token}, ssl=False) as r:
                assert r.status == 200 and await r.json() == {"sub": "@dora:localhost"}
            async with s.get(userinfo, params={"access_token": token.access_token[:-2] + "AA"}, ssl=False) as r:
                assert r.status == 401 and (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"
    finally:
        assert await server.stop() == 0
