"""The console's partner APIs between two real servers: cancelling an outgoing request,
the federation destinations and their state, and the partner figures of the analytics."""

from __future__ import annotations

from pathlib import Path

from homeserver.server import HomeServer
from tests.homeserver.partners.helpers import ADMIN_API, partner_pair, until
from tests.tls_ca import TestCA

PARTNERS = {"federation": {"policy": "partners"}}
DESTINATIONS = "/_synapse/admin/v1/federation/destinations"
ANALYTICS = "/_accord/admin/v1/analytics?days=1"


async def state_of(hs: HomeServer, peer: str) -> str | None:
    p = await hs.partners.get(peer)
    return p.state if p else None


async def test_cancel_destinations_and_partner_analytics(tmp_path: Path, ca: TestCA) -> None:
    async with partner_pair(tmp_path, ca, PARTNERS, PARTNERS) as p:
        a, b, a_name, b_name = p.a, p.b, p.a_spec.name, p.b_spec.name
        alice, bob = p.alice, p.bob
        a_admin, b_admin = p.client(p.a_spec), p.client(p.b_spec)
        await a_admin.register("admin", a, admin=True)
        await b_admin.register("admin", b, admin=True)
        room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]

        # Not partners yet: B's policy refuses to ask A, and B's destinations say so.
        status, _ = await bob.raw("POST", f"/join/{room}?server_name={a_name}", {})
        assert status != 200
        refused = await b_admin.call("GET", f"{DESTINATIONS}/{a_name}")
        assert refused["refusals"] >= 1 and refused["partner"] is False and refused["last_refusal_ts"]
        await bob.call("GET", DESTINATIONS, expect=403)

        # B asks A, then cancels: withdrawn at both ends; only B's own pending request can be cancelled.
        asked = await b_admin.call("POST", ADMIN_API, {"server_name": a_name, "message": "hello"})
        assert asked["state"] == "pending"
        await until(lambda: _is(state_of(a, b_name), "pending"))
        await a_admin.call("POST", f"{ADMIN_API}/{b_name}/cancel", {}, expect=400)  # theirs, not ours
        cancelled = await b_admin.call("POST", f"{ADMIN_API}/{a_name}/cancel", {})
        assert (cancelled["state"], cancelled["direction"]) == ("revoked", "outbound")
        assert (await b_admin.call("POST", f"{ADMIN_API}/{a_name}/cancel", {}))["state"] == "revoked"  # a retry
        await until(lambda: _is(state_of(a, b_name), "revoked"))
        status, err = await bob.raw("POST", f"{ADMIN_API}/{a_name}/cancel", {})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
        assert [e.action for e in await b.audit.query(action="partnership.cancel")] == ["partnership.cancel"]

        # A asks B, B accepts; they talk.
        await a_admin.call("POST", ADMIN_API, {"server_name": b_name})
        await until(lambda: _is(state_of(b, a_name), "pending"))
        await b_admin.call("POST", f"{ADMIN_API}/{a_name}/accept", {})
        await until(lambda: _is(state_of(a, b_name), "active"))
        await bob.call("POST", f"/join/{room}?server_name={a_name}", {})
        for i in range(3):
            await alice.say(room, f"from A {i}")
        await bob.say(room, "from B")
        await alice.wait_for_message(room, "from B")
        await bob.wait_for_message(room, "from A 2")

        dest = await a_admin.call("GET", f"{DESTINATIONS}/{b_name}")
        assert dest["partner"] is True and dest["last_success_ts"] and dest["consecutive_failures"] == 0
        assert dest["queue_depth"] == 0 and dest["retry_interval"] == 0 and dest["failure_ts"] is None
        listing = await a_admin.call("GET", f"{DESTINATIONS}?destination={b_name}")
        assert [d["destination"] for d in listing["destinations"]] == [b_name] and listing["total"] == 1
        shared = await a_admin.call("GET", f"{DESTINATIONS}/{b_name}/rooms")
        assert shared["total"] == 1 and [(r["room_id"], r["members"]) for r in shared["rooms"]] == [
            (room, [p.bob_id])]
        assert isinstance(shared["rooms"][0]["stream_ordering"], int)
        assert (await a_admin.call("GET", f"{DESTINATIONS}/unknown.example/rooms"))["total"] == 0
        await bob.call("GET", f"{DESTINATIONS}/{a_name}/rooms", expect=403)
        await a_admin.call("POST", f"{DESTINATIONS}/{b_name}/reset_connection", {})
        await a_admin.call("GET", f"{DESTINATIONS}/unknown.example", expect=404)
        await a_admin.call("GET", f"{DESTINATIONS}?order_by=nonsense", expect=400)

        report = await a_admin.call("GET", ANALYTICS)
        assert report["messages"]["federated"] == [4]
        assert report["partners"] == [1]
        assert report["partner_traffic"] == [{"server_name": b_name, "sent": 3, "received": 1}]
        (times,) = report["response_times"]
        assert times["server_name"] == b_name and times["transactions"] >= 1 and times["avg_ms"] >= 0
        b_report = await b_admin.call("GET", ANALYTICS)
        assert b_report["partner_traffic"] == [{"server_name": a_name, "sent": 1, "received": 3}]
        assert b_report["active_users"] == [1]  # bob; alice is not B's user


async def _is(value: object, expected: str) -> bool:
    return await value == expected  # type: ignore[misc]
