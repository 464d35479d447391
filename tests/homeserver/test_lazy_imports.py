"""What an idle server has not loaded: optional libraries cost resident memory at start-up
(measured beside a started server: cryptography 8 MB, dnspython 3.4, asyncpg 3.2, Pillow
2.3, Jinja2 2.0, importlib.metadata 0.8 (signedjson's package reads its version with it),
aiosmtplib 0.4), so each is imported by the feature that needs it, when
first used. Checked in a fresh process (another test may have imported them here), which
then serves requests to services built at their first use (notifications, media) and one
needing Pillow: a thumbnail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import config_dict
from tests.homeserver.media.helpers import png

REPO = Path(__file__).resolve().parents[2]
LAZY = ["PIL", "jinja2", "aiosmtplib", "asyncpg", "dns", "cryptography", "signedjson", "importlib.metadata",
        # Our own seldom-used services, built at their first request (HomeServer's properties)
        # or, for URL previews, only when turned on: about 0.3 MB resident each.
        "homeserver.sync.sliding.service", "homeserver.search.service", "homeserver.media.preview",
        "homeserver.media.repository", "homeserver.media.remote", "homeserver.media.fetch",
        "homeserver.reports", "homeserver.e2ee.key_backup", "homeserver.federation.timestamps",
        "homeserver.push.inbox", "homeserver.rooms.hierarchy", "homeserver.rooms.summary",
        "homeserver.rooms.mutual_rooms", "homeserver.partners.directory_search",
        # E-mail is off in this config: its mailer and notifier are never built.
        "homeserver.email.mailer", "homeserver.email.notifier"]

_SCRIPT = """
import asyncio, json, sys
import aiohttp
from homeserver.config import load_config

LAZY = json.loads(sys.argv[2])

async def main() -> None:
    from homeserver.server import HomeServer

    hs = HomeServer(load_config(sys.argv[1]))
    await hs.start()
    try:
        await hs.start_listeners()
        idle = [m for m in LAZY if m in sys.modules]
        url = f"http://127.0.0.1:{hs.bound[0][2]}"
        token = (await hs.registration.create_account("@lazy:test.local", "pw-lazy-1"))["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=auth) as s:
            async with s.get(f"{url}/_matrix/client/v3/notifications") as r:
                notifications = (r.status, await r.json())
            with open(sys.argv[3], "rb") as f:
                image = f.read()
            async with s.post(f"{url}/_matrix/media/v3/upload", data=image,
                              headers={"Content-Type": "image/png"}) as r:
                mxc = (await r.json())["content_uri"].removeprefix("mxc://")
            async with s.get(f"{url}/_matrix/client/v1/media/thumbnail/{mxc}",
                             params={"width": "32", "height": "32", "method": "scale"}) as r:
                thumb = (r.status, r.headers.get("Content-Type"), len(await r.read()))
        print(json.dumps({"idle": idle, "thumbnail": thumb, "pil_after": "PIL" in sys.modules,
                          "notifications": notifications}))
    finally:
        await hs.stop()

asyncio.run(main())
"""


def test_optional_libraries_load_when_first_needed(tmp_path: Path) -> None:
    config = tmp_path / "homeserver.yaml"
    config.write_text(yaml.safe_dump(config_dict(tmp_path / "hs")))
    image = tmp_path / "image.png"
    image.write_bytes(png(640, 480))
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(config), json.dumps(LAZY), str(image)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["idle"] == [], f"imported at start-up: {result['idle']}"
    status, content_type, size = result["thumbnail"]
    assert (status, content_type) == (200, "image/png") and size > 0
    assert result["pil_after"]
    assert result["notifications"] == [200, {"notifications": []}]
