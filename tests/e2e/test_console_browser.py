"""The organization console in a real browser: Debian's Chromium, headless, driven by
Selenium through Debian's chromedriver, against two real Accord servers. A is an
organization; B is an organization and the partner directory A searches.

Scenario: A's admin signs in, searches B's directory, asks B for a partnership; B's
admin accepts it in B's own console (signing in with the keyboard alone); A's admin
starts a conversation with B's listed contact; the test sends messages and A's
analytics charts fill with them. Along the way: every page renders, a stored
description or display name holding HTML is shown as text, a non-admin sees no admin
page and the server refuses them the admin API, and the layout holds on a phone-sized
window. Screenshots of each page go to $ACCORD_CONSOLE_SCREENSHOTS (default
build/console-screenshots).

Selenium is synchronous: each browser step runs in a worker thread so the servers,
which run on the test's event loop, keep answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from homeserver.config import parse_config
from homeserver.server import HomeServer
from tests.conftest import LOOPBACK_OUTBOUND, config_dict
from tests.homeserver.federation.servers import ServerSpec, free_port
from tests.homeserver.partners.helpers import until
from tests.tls_ca import TestCA

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("ACCORD_CONSOLE_SCREENSHOTS", ROOT / "build" / "console-screenshots"))
PASSWORD = "a-long-password"
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
T = TypeVar("T")


def _need_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    reason = f"the console's browser tests need {', '.join(missing)} (scripts/test installs Debian's chromium and chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail("CI must run the browser tests: " + reason)
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def console_server(spec: ServerSpec, ca: TestCA, **sections: Any) -> AsyncIterator[tuple[HomeServer, str]]:
    """A real server: federation and keys over TLS on the spec's port, and the client
    and admin APIs (so the console) over plain HTTP on another loopback port, as behind
    a reverse proxy. Yields the server and the console's base URL."""
    cert = ca.issue(spec.ip, name=f"{spec.ip}-{spec.port}")
    http_port = free_port(spec.ip)
    listeners = [
        {"port": spec.port, "bind_addresses": [spec.ip], "resources": ["federation", "keys"], "tls": True,
         "tls_certificate_path": str(cert.cert_path), "tls_private_key_path": str(cert.key_path)},
        {"port": http_port, "bind_addresses": [spec.ip], "resources": ["client", "media", "admin"]},
    ]
    fed = {"enabled": True, "ca_bundle_path": str(ca.ca_path), "policy": "partners", **sections.pop("federation", {})}
    config = parse_config(config_dict(
        spec.data_dir, server_name=spec.name, listeners=listeners, federation=fed, outbound=LOOPBACK_OUTBOUND,
        **sections,
    ))
    hs = HomeServer(config)
    await hs.start()
    try:
        await hs.start_listeners()
        yield hs, f"http://{spec.ip}:{http_port}"
    finally:
        await hs.stop()


class Http:
    """A user of one server over its plain-HTTP client listener."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.s, self.base, self.token, self.user_id = session, base, "", ""

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        url = self.base + (path if path.startswith("/_") else "/_matrix/client/v3" + path)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.s.request(method, url, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            assert r.status == expect, (method, path, r.status, data)
            return data

    async def register(self, name: str, hs: HomeServer, *, admin: bool = False, displayname: str | None = None) -> Http:
        data = await self.call("POST", "/register", {"username": name, "password": PASSWORD,
                                                     "auth": {"type": "m.login.dummy"}})
        self.token, self.user_id = data["access_token"], data["user_id"]
        if admin:
            await hs.users.set_admin(self.user_id, True)
        if displayname is not None:
            await self.call("PUT", f"/profile/{self.user_id}/displayname", {"displayname": displayname})
        return self

    async def say(self, room: str, text: str, txn: str) -> None:
        await self.call("PUT", f"/rooms/{room}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": text})

    async def bodies(self, room: str) -> list[str]:
        page = await self.call("GET", f"/rooms/{room}/messages?dir=b&limit=50")
        return [ev["content"].get("body") for ev in page["chunk"] if ev["type"] == "m.room.message"]


class Browser:
    """One headless Chromium (a fresh profile) and the console's pages in it."""

    def __init__(self, profile: str) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium look for a browser online
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
            opts.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_script_timeout(20)

    def quit(self) -> None:
        self.driver.quit()

    def wait(self, css: str, within: float = 20) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, within).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def wait_for(self, check: Callable[[Any], Any], within: float = 20) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, within).until(check)

    def find(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SHOTS / f"{name}.png"))

    def open(self, base: str, page: str = "") -> None:
        self.driver.get(f"{base}/_accord/console/{'#/' + page if page else ''}")

    def page(self, page: str, shot: str | None = None) -> Any:
        """Go to a console page (by its navigation link) and wait until it has loaded."""
        self.wait(f"#nav-{page}").click()
        section = self.wait(f'#page-{page}[data-loaded="true"]')
        if shot:
            self.shot(shot)
        return section

    def sign_in(self, base: str, user: str, *, keyboard: bool = False, shot: str | None = None) -> None:
        from selenium.webdriver.common.keys import Keys

        self.open(base)
        field = self.wait("#login-user")
        if shot:
            self.shot(shot)
        if keyboard:  # focus starts in the user field; Tab to the password, Enter submits
            self.driver.switch_to.active_element.send_keys(user, Keys.TAB, PASSWORD, Keys.ENTER)
        else:
            field.send_keys(user)
            self.wait("#login-password").send_keys(PASSWORD)
            self.wait("#login-submit").click()
        self.wait('#page-directory[data-loaded="true"]')

    def sign_out(self) -> None:
        self.wait("#logout").click()
        self.wait("#login-user")

    def fetch_status(self, path: str) -> int:
        """The status the server answers the signed-in user for `path`, asked from the page."""
        return int(self.driver.execute_async_script(
            """const done = arguments[1];
            const s = JSON.parse(sessionStorage.getItem("accord.console.session"));
            fetch(arguments[0], {headers: {Authorization: "Bearer " + s.access_token}})
              .then((r) => done(r.status), () => done(0));""", path))


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_console_in_chromium(tmp_path: Path, ca: TestCA) -> None:
    _need_browser()
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    a_name, b_name = a_spec.name, b_spec.name
    bob_id = f"@bob:{b_name}"
    beta = {"name": "Beta Freight", "description": f"{HOSTILE} We move goods by river.",
            "specialties": ["freight", "logistics"], "location": "Rotterdam", "contacts": [bob_id]}
    alpha = {"name": "Alpha Health", "description": "A hospital group.", "specialties": ["health"],
             "location": "Lyon"}
    b_sections = {"organization": beta,
                  "partner_directory": {"serve": True, "publish_to": [b_name], "search": [b_name]}}
    a_sections = {"organization": alpha, "partner_directory": {"publish_to": [b_name], "search": [b_name]}}
    browser: Browser | None = None
    async with (
        console_server(b_spec, ca, **b_sections) as (b, b_url),
        console_server(a_spec, ca, **a_sections) as (a, a_url),
        aiohttp.ClientSession() as s,
    ):
        alice = await Http(s, a_url).register("alice", a, admin=True)
        carol = await Http(s, a_url).register("carol", a, displayname="<b>Carol</b><script>x()</script>")
        boss = await Http(s, b_url).register("boss", b, admin=True)
        bob = await Http(s, b_url).register("bob", b)

        async def both_listed() -> bool:
            found = await alice.call("GET", "/_matrix/client/unstable/org.accord.directory/search")
            return {r["server_name"] for r in found["results"]} == {a_name, b_name}

        await until(both_listed, within=30)
        profile_dir = tempfile.mkdtemp(prefix="accord-chromium-", dir=tmp_path)
        browser = await in_thread(Browser, profile_dir)
        try:
            await run_scenario(browser, a, a_url, b_url, a_name, b_name, alice, carol, bob, boss)
        finally:
            await in_thread(browser.quit)
            shutil.rmtree(profile_dir, ignore_errors=True)


async def run_scenario(
    br: Browser, a: HomeServer, a_url: str, b_url: str, a_name: str, b_name: str,
    alice: Http, carol: Http, bob: Http, boss: Http,
) -> None:
    from selenium.webdriver.common.by import By

    # --- A's admin signs in and searches B's directory ---
    await in_thread(br.sign_in, a_url, "alice", shot="01-sign-in")

    def search() -> Any:
        br.wait("#dir-q").send_keys("freight")
        br.wait("#dir-search").click()
        card = br.wait(f'#dir-results .org[data-server="{b_name}"]')
        br.shot("02-directory-search")
        return card

    card = await in_thread(search)
    # B's description holds markup: shown as text, never run or rendered.
    description = await in_thread(lambda: card.find_element(By.CSS_SELECTOR, ".org-description").text)
    assert HOSTILE in description
    assert await in_thread(lambda: card.find_elements(By.CSS_SELECTOR, "img, script")) == []
    assert await in_thread(br.driver.execute_script, "return window.__pwned === undefined")
    assert "Beta Freight" in await in_thread(lambda: card.find_element(By.CSS_SELECTOR, ".org-name").text)

    # --- A asks B for a partnership from the search result ---
    await in_thread(lambda: card.find_element(By.CSS_SELECTOR, ".request-partnership").click())
    await until(lambda: _state(a, b_name, "pending"), within=20)

    def outgoing() -> None:
        br.page("partnerships")
        br.wait("#partnerships-outgoing code")
        br.shot("03-partnerships-outgoing")

    await in_thread(outgoing)

    # --- B's admin accepts in B's own console, signing in by keyboard ---
    await in_thread(br.sign_in, b_url, "boss", keyboard=True)

    def accept() -> None:
        from selenium.webdriver.common.keys import Keys

        # By keyboard too: a navigation link followed with Enter, the button pressed with Space.
        br.wait("#nav-partnerships").send_keys(Keys.ENTER)
        br.wait('#page-partnerships[data-loaded="true"]')
        br.shot("04-b-partnerships-incoming")
        br.wait(f'#partnerships-incoming .accept[data-server="{a_name}"]').send_keys(Keys.SPACE)
        br.wait_for(lambda d: br.find("#partnerships-active td code") and not br.find("#partnerships-incoming .accept"))
        br.shot("05-b-partnership-accepted")
        br.page("operator", shot="06-b-directory-operator")
        assert len(br.find("#page-operator tbody tr")) == 2

    await in_thread(accept)
    await until(lambda: _state(a, b_name, "active"), within=20)

    # --- back on A: start a conversation with B's contact ---
    def converse() -> Any:
        br.open(a_url, "directory")
        br.wait('#page-directory[data-loaded="true"]')
        br.wait("#dir-q").send_keys("freight")
        br.wait("#dir-search").click()
        br.wait(f'#dir-results .org[data-server="{b_name}"] .start-conversation').click()
        started = br.wait("#dir-results .conversation-started")
        br.shot("07-conversation-started")
        return started.find_element(By.CSS_SELECTOR, "code").text

    room = await in_thread(converse)
    assert room.startswith("!")
    direct = await alice.call("GET", f"/user/{alice.user_id}/account_data/m.direct")
    assert direct == {bob.user_id: [room]}  # a direct chat, as Matrix clients list them

    async def invited() -> bool:
        sync = await bob.call("GET", "/sync?timeout=0")
        return room in sync.get("rooms", {}).get("invite", {})

    await until(invited, within=20)
    await bob.call("POST", f"/join/{room}", {})
    for i in range(3):
        await alice.say(room, f"hello Beta {i}", f"a{i}")
    for i in range(2):
        await bob.say(room, f"hello Alpha {i}", f"b{i}")
    internal = (await alice.call("POST", "/createRoom", {"creation_content": {"m.federate": False}}))["room_id"]
    for i in range(2):
        await alice.say(internal, f"internal {i}", f"i{i}")

    async def delivered() -> bool:
        return sum(1 for body in await alice.bodies(room) if body.startswith("hello Alpha")) == 2

    await until(delivered, within=20)

    # --- the analytics charts fill with those messages ---
    def analytics() -> dict[str, str]:
        br.page("analytics")
        br.wait("#chart-messages")
        totals = {fid: br.wait(f"#{fid}").get_attribute("data-total") for fid in (
            "chart-messages", "chart-active-users", "chart-partners", "chart-partner-traffic", "chart-response-times")}
        br.shot("08-analytics")
        return totals

    totals = await in_thread(analytics)
    assert totals["chart-messages"] == "7", totals  # 3 + 2 with Beta, 2 internal
    assert totals["chart-partner-traffic"] == "5", totals
    assert int(totals["chart-partners"]) >= 1 and totals["chart-active-users"] == "1"
    assert int(totals["chart-response-times"]) >= 0
    labels = await in_thread(lambda: [t.get_attribute("textContent") for t in br.find("#chart-partner-traffic svg text")])
    assert any(b_name in label or label.startswith(b_name[:20]) for label in labels), labels

    # --- every admin page renders, and shows what it must ---
    def admin_pages() -> None:
        br.page("organization", shot="09-organization")
        assert br.wait("#org-name").get_attribute("value") == "Alpha Health"
        where = br.wait("#org-location")
        where.clear()
        where.send_keys("Lyon, France")
        br.wait("#org-save").click()
        br.wait_for(lambda d: "Edited by" in br.wait("#page-organization").text)
        assert br.wait("#org-location").get_attribute("value") == "Lyon, France"
        br.page("partnerships")
        br.wait("#partnerships-active button.secondary").click()  # what the partner shares with us
        br.wait_for(lambda d: bob.user_id in br.wait("#partnerships-active .shared").text)
        br.shot("09b-partner-shares")
        people = br.page("people", shot="10-people")
        br.wait("#people-list tbody tr")
        assert "<b>Carol</b><script>x()</script>" in people.text  # a display name holding HTML, as text
        assert not br.find("#people-list b, #people-list script")
        br.page("rooms")
        br.wait("#rooms-list tbody tr")
        for show in br.find("#rooms-list td button.secondary"):  # the rooms other servers are in
            show.click()
        br.wait_for(lambda d: any(f"partner {b_name}" in e.text for e in br.find("#rooms-list .badge")))
        br.shot("11-rooms")
        fed = br.page("federation", shot="12-federation")
        assert b_name in fed.text
        audit = br.page("audit", shot="13-audit")
        br.wait("#audit-list tbody tr")
        assert "partnership.request" in audit.text

    await in_thread(admin_pages)
    assert a.organization.current.location == "Lyon, France" and a.organization.source == "edited"

    async def republished() -> bool:  # B, the directory, lists the edit
        found = await alice.call("GET", "/_matrix/client/unstable/org.accord.directory/search?q=Alpha")
        return [r["profile"].get("location") for r in found["results"]] == ["Lyon, France"]

    await until(republished, within=20)

    # --- a phone-sized window: the navigation goes above the page, nothing overflows ---
    def phone() -> None:
        br.driver.set_window_size(390, 844)
        br.page("directory", shot="14-directory-phone")
        nav, main = br.wait("#nav"), br.wait("#main")
        assert nav.rect["y"] < main.rect["y"]
        assert br.driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        br.driver.set_window_size(1280, 900)

    await in_thread(phone)

    # --- a non-admin sees no admin page, and the server refuses them the admin API ---
    def non_admin() -> tuple[list[str], int, int]:
        br.sign_out()
        br.sign_in(a_url, "carol", shot=None)
        br.shot("15-non-admin")
        links = [e.get_attribute("id") for e in br.find("#nav a")]
        return links, br.fetch_status("/_accord/admin/v1/analytics"), br.fetch_status("/_accord/admin/v1/partnerships")

    links, analytics_status, partners_status = await in_thread(non_admin)
    assert links == ["nav-directory"]
    assert (analytics_status, partners_status) == (403, 403)
    await in_thread(br.open, a_url, "analytics")  # asking for an admin page by its address
    assert await in_thread(lambda: br.wait('#page-directory[data-loaded="true"]') is not None)
    assert carol.user_id and boss.user_id


async def _state(hs: HomeServer, peer: str, expected: str) -> bool:
    p = await hs.partners.get(peer)
    return p is not None and p.state == expected

