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
