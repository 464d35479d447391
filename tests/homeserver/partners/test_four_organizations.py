"""The whole "organizations and partners" story on four real servers, all under
the ``partners`` federation policy: organizations A, B and C, and a partner
directory D.

A and B publish their profiles to D; B's user finds A by specialty through B's
own client API; B's admin asks A for a partnership from the search result; A's
admin reads the request in the server notice room and accepts; a B user invites
an A user to a federated room and they talk both ways. C, not a partner, is
refused at both ends. A's internal room refuses the B user and nothing about it
leaves A. A revokes: B is refused from then on and A sends B nothing more. The
audit logs of A and B (and D) hold every step.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.homeserver.federation.servers import ServerSpec
from tests.homeserver.partners.directory_servers import CLIENT, directory_server
from tests.homeserver.partners.helpers import (
    ADMIN_API,
    PARTNERS_API,
    Client,
    Recorder,
    partner_server,
    signed_request,
    until,
)
from tests.tls_ca import TestCA

AUDIT_LOG = "/_accord/admin/v1/audit_log"
PUBLISH = "/_accord/admin/v1/partner_directory/publish"
PASSWORD = "a-long-password"
PARTNERS = {"policy": "partners"}


def org(name: str, specialties: list[str], directory: str, *, search: bool = False) -> dict[str, Any]:
    """Config of an organization's server publishing to (and maybe searching) `directory`."""
    return {
        "federation": dict(PARTNERS),
        "organization": {"name": name, "description": f"{name}, a test organization.", "specialties": specialties},
        "partner_directory": {"publish_to": [directory], "search": [directory] if search else []},
    }


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


async def login(client: Client, localpart: str) -> None:
    """A real password login (audited as ``login``); the client uses the new token."""
    data = await client.call("POST", "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart}, "password": PASSWORD,
    })
    client.token = data["access_token"]


async def sync_until(client: Client, check: Callable[[dict[str, Any]], bool], within: float = 10) -> dict[str, Any]:
    """Long-poll the client's /sync from the start until `check` holds for the
    accumulated responses (a real client's view)."""
    since: str | None = None
    seen: dict[str, Any] = {"rooms": {"join": {}, "invite": {}}}
    async with asyncio.timeout(within):
        while True:
            path = "/sync?timeout=1000" + (f"&since={q(since)}" if since else "")
            page = await client.call("GET", path)
            for kind in ("join", "invite"):
                for room_id, room in page.get("rooms", {}).get(kind, {}).items():
                    acc = seen["rooms"][kind].setdefault(room_id, {"events": []})
                    if kind == "join":
                        acc["events"] += room.get("timeline", {}).get("events", [])
                    else:
                        acc["events"] = room.get("invite_state", {}).get("events", [])
            if check(seen):
                return seen
            since = page["next_batch"]


def timeline(seen: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    return list(seen["rooms"]["join"].get(room_id, {}).get("events", []))


async def audit(admin: Client) -> list[tuple[str, str | None, str]]:
    """(action, target, outcome) of every audit entry, through the admin API."""
    page = await admin.call("GET", AUDIT_LOG + "?limit=1000")
    assert page["next_token"] is None
    return [(e["action"], e["target"], e["outcome"]) for e in page["entries"]]


async def test_four_organizations(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec, c_spec, d_spec = (
        ServerSpec(tmp_path, ip) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
    )
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    d_conf = {"federation": dict(PARTNERS), "partner_directory": {"serve": True}}
    async with (
        directory_server(d_spec, ca, **d_conf) as d,
        partner_server(a_spec, ca, rooms={"internal_by_default": True},
                       **org("Alpha Freight", ["Logistics", "Customs"], d_spec.name)) as a,
        partner_server(b_spec, ca, **org("Bravo Retail", ["Retail"], d_spec.name, search=True)) as b,
        partner_server(c_spec, ca, federation=dict(PARTNERS)),
        aiohttp.ClientSession() as s,
    ):
        a_admin, alice = Client(s, a_spec, ctx), Client(s, a_spec, ctx)
        b_admin, bob = Client(s, b_spec, ctx), Client(s, b_spec, ctx)
        carol = Client(s, c_spec, ctx)
        await a_admin.register("admin", a, admin=True)
        await login(a_admin, "admin")
        alice_id = await alice.register("alice")
        await b_admin.register("admin", b, admin=True)
        await login(b_admin, "admin")
        bob_id = await bob.register("bob")
        carol_id = await carol.register("carol")
        a_sent = Recorder(a)

        # --- A and B publish to D; B's user finds A by specialty, through B ---
        for admin in (a_admin, b_admin):
            out = await admin.call("POST", PUBLISH, {})
            assert [(r["directory"], r["ok"]) for r in out["results"]] == [(d_spec.name, True)], out
        page = await bob.call("GET", CLIENT + "/search?specialty=logistics")
        assert [(r["server_name"], r["profile"]["name"]) for r in page["results"]] == [
            (a_spec.name, "Alpha Freight")
        ], page
        assert page["results"][0]["listed_by"] == [d_spec.name] and page["failed"] == {}
        found = page["results"][0]["server_name"]

        # --- B's admin asks A from the search result (a plain user may not) ---
        status, err = await bob.raw("POST", CLIENT + "/request_partnership", {"server_name": found})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        asked = await b_admin.call("POST", CLIENT + "/request_partnership", {
            "server_name": found, "message": "We found you in the directory: shipping for our shops?",
        })
        assert (asked["state"], asked["direction"]) == ("pending", "outbound"), asked

        # --- A's admin is invited to the notice room, reads the request in /sync, accepts ---
        seen = await sync_until(a_admin, lambda v: bool(v["rooms"]["invite"]))
        (notice_room,) = seen["rooms"]["invite"]
        assert notice_room == await a.partners.notices.room_id()
        await a_admin.call("POST", f"/join/{q(notice_room)}", {})
        seen = await sync_until(a_admin, lambda v: any(
            e["content"].get("msgtype") == "m.notice" for e in timeline(v, notice_room)))
        (notice,) = [e["content"]["body"] for e in timeline(seen, notice_room) if e["content"].get("msgtype") == "m.notice"]
        assert "Bravo Retail" in notice and b_spec.name in notice and "shipping for our shops?" in notice
        assert f"{ADMIN_API}/{b_spec.name}/accept" in notice
        accepted = await a_admin.call("POST", f"{ADMIN_API}/{b_spec.name}/accept", {})
        assert accepted["state"] == "active"
        await until(lambda: b.partners.is_partner(a_spec.name))

        # --- a B user invites an A user to a federated room; they talk both ways ---
        shared = (await bob.call("POST", "/createRoom", {"preset": "private_chat", "name": "Shipments"}))["room_id"]
        await bob.call("POST", f"/rooms/{q(shared)}/invite", {"user_id": alice_id})
        seen = await sync_until(alice, lambda v: shared in v["rooms"]["invite"])
        invite_state = seen["rooms"]["invite"][shared]["events"]
        assert _by_type(invite_state, "m.room.name")["content"] == {"name": "Shipments"}
        assert await alice.call("POST", f"/join/{q(shared)}", {}) == {"room_id": shared}
        await bob.say(shared, "hello from Bravo")
        await alice.wait_for_message(shared, "hello from Bravo")
        await alice.say(shared, "hello from Alpha")
        await bob.wait_for_message(shared, "hello from Alpha")

        # --- C is no partner: refused at both ends ---
        a_public = (await alice.call("POST", "/createRoom", {
            "preset": "public_chat", "name": "Alpha lobby", "creation_content": {"m.federate": True}}))["room_id"]
        status, err = await carol.raw("POST", f"/join/{q(a_public)}?server_name={a_spec.name}", {})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err  # C's own server does not ask A
        for method, path, content in (
            ("GET", f"/_matrix/federation/v1/make_join/{q(a_public)}/{q(carol_id)}?ver=10&ver=11&ver=12", None),
            ("PUT", "/_matrix/federation/v1/send/c1", {"origin": c_spec.name, "origin_server_ts": 1, "pdus": []}),
            ("GET", f"/_matrix/federation/v1/state_ids/{q(shared)}?event_id=x", None),
        ):
            status, err = await signed_request(s, ctx, signer=c_spec, destination=a_spec, method=method,
                                               path=path, content=content)
            assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), (path, err)
        c_room = (await carol.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        status, err = await alice.raw("POST", f"/join/{q(c_room)}?server_name={c_spec.name}", {})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err  # A does not ask C either
        # A only fetched C's key, to check the signatures of C's requests before refusing them.
        assert {x.path for x in a_sent.sent if x.destination == c_spec.name} <= {"/_matrix/key/v2/server"}

        # --- A's internal room refuses the B user, and nothing about it leaves A ---
        internal = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Alpha only"}))["room_id"]
        assert (await alice.call("GET", f"/rooms/{q(internal)}/state/m.room.create"))["m.federate"] is False
        await alice.say(internal, "internal pricing")
        status, err = await alice.raw("POST", f"/rooms/{q(internal)}/invite", {"user_id": bob_id})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        status, err = await bob.raw("POST", f"/join/{q(internal)}?server_name={a_spec.name}", {})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        # Something federated after it, through the same sender, proves the recorder sees what goes out.
        await alice.say(shared, "after the internal room")
        await bob.wait_for_message(shared, "after the internal room")
        await a.federation_sender.drain_intake()
        everything = a_sent.text()
        assert "after the internal room" in everything
        assert internal not in everything and "internal pricing" not in everything and "Alpha only" not in everything

        # --- A revokes: B is refused at A, and A sends B nothing more ---
        revoked = await a_admin.call("POST", f"{ADMIN_API}/{b_spec.name}/revoke", {"reason": "contract ended"})
        assert revoked["state"] == "revoked"
        await bob.say(shared, "after revoke from Bravo")  # B may not know yet: A refuses it anyway
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path="/_matrix/federation/v1/send/b-late",
            content={"origin": b_spec.name, "origin_server_ts": 1, "pdus": []},
        )
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        await until(lambda: _not(b.partners.is_partner(a_spec.name)))
        sent_before = len(a_sent.sent)
        await alice.say(shared, "after revoke from Alpha")
        await a.federation_sender.drain_intake()
        assert await a.federation_sender.store.count(b_spec.name) == 0
        await bob.say(shared, "later from Bravo")
        await b.federation_sender.drain_intake()
        assert await b.federation_sender.store.count(a_spec.name) == 0
        await a.partners.wait_for_deliveries()
        assert a_sent.sent[sent_before:] == []  # A sends B nothing more (the revoke notice went before)
        assert [x.path for x in a_sent.to(b_spec.name, PARTNERS_API + "/revoke/")]  # that notice did go
        bodies = [ev["content"]["body"] for ev in await alice.messages(shared)]
        assert "hello from Bravo" in bodies and "after revoke from Alpha" in bodies
        assert "after revoke from Bravo" not in bodies and "later from Bravo" not in bodies
        await b.federation_sender.drain_intake()
        await a.federation_policy.flush()
        await b.federation_policy.flush()

        # --- the audit logs hold each step ---
        a_log = await audit(a_admin)
        for entry in (
            ("login", a_admin.user_id, "ok"),
            ("partner_directory.publish_requested", None, "ok"),
            ("partnership.request.received", b_spec.name, "ok"),
            ("partnership.accept", b_spec.name, "ok"),
            ("partnership.revoke", b_spec.name, "ok"),
            ("federation.refused", c_spec.name, "refused"),  # C's requests, and A's user asking for C's room
        ):
            assert entry in a_log, (entry, a_log)
        assert [x for x in a_log if x[0] == "federation.refused" and x[1] == b_spec.name]  # B, after the revoke
        b_log = await audit(b_admin)
        for entry in (
            ("login", b_admin.user_id, "ok"),
            ("partner_directory.publish_requested", None, "ok"),
            ("partnership.request", a_spec.name, "ok"),
            ("partnership.accept", a_spec.name, "ok"),
            ("partnership.revoke", a_spec.name, "ok"),
        ):
            assert entry in b_log, (entry, b_log)
        d_log = [(e.action, e.target, e.outcome) for e in await d.audit.query(action="partner_directory.")]
        assert ("partner_directory.publish", a_spec.name, "ok") in d_log
        assert ("partner_directory.publish", b_spec.name, "ok") in d_log


def _by_type(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    (event,) = [e for e in events if e["type"] == event_type]
    return event


async def _not(value: Any) -> bool:
    return not await value
