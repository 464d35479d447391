"""The shared partner directory across real servers over TLS: a directory D and
organizations A and B publish, search through their own client API, get
verified, withdraw and expire; forged and hostile publishes change nothing."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from federation.client import RemoteError
from federation.events.signing import generate_signing_key
from federation.request_auth import sign_request
from tests.conftest import FakeClock
from tests.homeserver.federation.servers import ServerSpec
from tests.homeserver.partners.directory_servers import ADMIN, CLIENT, FED, User, directory_server
from tests.tls_ca import TestCA

TTL_S = 3600

ACME = {
    "name": "Acme Legal",
    "description": "Contract and employment law for small firms.",
    "specialties": ["Contract law", "Mediation"],
    "location": "Berlin, Germany",
    "website": "https://acme.example",
    "publish_partners": True,
}
BRAVO = {
    "name": "Bravo Health",
    "description": "Telemedicine clinics; we mediate patient disputes.",
    "specialties": ["Telemedicine", "mediation"],
    "location": "Lyon, France",
}


def org_config(org: dict[str, Any], directory: str, *search: str) -> dict[str, Any]:
    return {
        "organization": org,
        "partner_directory": {"publish_to": [directory], "search": [directory, *search]},
    }


async def expect_remote(coro: Any, status: int, errcode: str) -> None:
    with pytest.raises(RemoteError) as err:
        await coro
    assert (err.value.status, err.value.errcode) == (status, errcode), err.value.message


def names(page: dict[str, Any]) -> list[str]:
    return [r["profile"]["name"] for r in page["results"]]


async def test_publish_search_verify_withdraw_expire(tmp_path: Path, ca: TestCA) -> None:
    d, a, b = (ServerSpec(tmp_path, ip) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"))
    down = ServerSpec(tmp_path, "127.0.0.5")  # a directory B searches that never runs
    clock = FakeClock(start_ms=int(time.time() * 1000))
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    d_conf = {"partner_directory": {"serve": True, "entry_ttl_s": TTL_S}}
    async with (
        directory_server(d, ca, clock=clock, **d_conf) as hs_d,
        directory_server(a, ca, **org_config(ACME, d.name)) as hs_a,
        directory_server(b, ca, **org_config(BRAVO, d.name, down.name),
                         federation={"static_hosts": {down.name: down.name}}) as hs_b,
        aiohttp.ClientSession() as s,
    ):
        # Both publish (the background publishers did too; publishing is idempotent).
        for hs in (hs_a, hs_b):
            results = await hs.partner_directory_publisher.publish_all()
            assert [r["ok"] for r in results] == [True], results
        bob = await User(s, b, ctx).register("bob", hs_b)

        # By specialty, case-insensitively; the down directory is reported, not fatal.
        page = await bob.call("GET", CLIENT + "/search", query={"specialty": "CONTRACT LAW"})
        assert names(page) == ["Acme Legal"]
        hit = page["results"][0]
        assert hit["server_name"] == a.name and hit["listed_by"] == [d.name] and hit["verified"] is False
        assert hit["profile"]["location"] == "Berlin, Germany"
        assert hit["profile"]["partners"] == []  # A publishes its (empty) partner list
        assert page["directories"] == [d.name] and list(page["failed"]) == [down.name]
        # Text, location, shared specialty, no filter.
        assert names(await bob.call("GET", CLIENT + "/search", query={"q": "employment LAW"})) == ["Acme Legal"]
        assert names(await bob.call("GET", CLIENT + "/search", query={"q": "telemedicine"})) == ["Bravo Health"]
        assert names(await bob.call("GET", CLIENT + "/search", query={"location": "lyon"})) == ["Bravo Health"]
        assert names(await bob.call("GET", CLIENT + "/search", query={"specialty": "Mediation"})) == [
            "Acme Legal", "Bravo Health"]
        assert names(await bob.call("GET", CLIENT + "/search", query={"q": "nothing like this"})) == []
        # Pagination: one per page, the token carries on at D only.
        first = await bob.call("GET", CLIENT + "/search", query={"limit": "1"})
        assert names(first) == ["Acme Legal"] and "next_batch" in first
        second = await bob.call("GET", CLIENT + "/search", query={"limit": "1", "since": first["next_batch"]})
        assert names(second) == ["Bravo Health"] and "next_batch" not in second
        assert second["failed"] == {}  # the down directory had nothing more to give
        await bob.call("GET", CLIENT + "/search", query={"since": "garbage!"}, expect=400)
        await bob.call("GET", CLIENT + "/search", query={"limit": "many"}, expect=400)
        # Users only: no token, no search.
        anon = User(s, b, ctx)
        assert (await anon.call("GET", CLIENT + "/search", expect=401))["errcode"] == "M_MISSING_TOKEN"

        # D's operator verifies A; a D user who is not an admin cannot.
        dora = await User(s, d, ctx).register("dora", hs_d, admin=True)
        eve = await User(s, d, ctx).register("eve", hs_d)
        err = await eve.call("POST", f"{ADMIN}/entries/{a.name}/verify", {}, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
        await eve.call("GET", ADMIN + "/entries", expect=403)
        verified = await dora.call("POST", f"{ADMIN}/entries/{a.name}/verify", {"note": "called their office"})
        assert verified["entry"]["verified"] is True and verified["verification"]["verified_by"] == dora.user_id
        await dora.call("POST", f"{ADMIN}/entries/not a server/verify", {}, expect=400)
        listing = await dora.call("GET", ADMIN + "/entries")
        assert [e["server_name"] for e in listing["results"]] == [a.name, b.name]  # verified first

        only = await bob.call("GET", CLIENT + "/search", query={"verified_only": "true"})
        assert names(only) == ["Acme Legal"] and only["results"][0]["verified_by"] == [d.name]
        # A learns its status on its next publish.
        await hs_a.partner_directory_publisher.publish_all()
        pubs = (await hs_a.partner_directory_publisher.status())["publications"]
        assert pubs[0]["directory"] == d.name and pubs[0]["verified"] is True

        # Recommendations for B: A shares "Mediation" and is verified.
        recs = await bob.call("GET", CLIENT + "/recommendations")
        assert [r["server_name"] for r in recs["recommendations"]] == [a.name]
        rec = recs["recommendations"][0]
        assert rec["score"] == 3 and rec["verified_by"] == [d.name]
        why = rec["explanations"][d.name]
        assert why["shared_specialties"] == ["Mediation"] and why["verified"] is True
        assert any("shared specialty" in r for r in why["reasons"])

        # A withdraws through its admin API: gone from searches, and it stays gone.
        alice = await User(s, a, ctx).register("alice", hs_a, admin=True)
        out = await alice.call("POST", ADMIN + "/withdraw", {})
        assert out["results"] == [{"directory": d.name, "ok": True, "withdrawn": True}]
        assert names(await bob.call("GET", CLIENT + "/search")) == ["Bravo Health"]
        pubs = (await alice.call("GET", ADMIN + "/publications"))["publications"]
        assert pubs[0]["withdrawn"] is True
        # D keeps its verification of A for when A comes back.
        assert (await dora.call("GET", f"{ADMIN}/entries/{a.name}"))["entry"] is None
        await alice.call("POST", ADMIN + "/publish", {})
        back = await bob.call("GET", CLIENT + "/search", query={"verified_only": "true"})
        assert names(back) == ["Acme Legal"]

        # Entries not refreshed within the TTL expire (B's next refresh is hours away).
        clock.advance((TTL_S - 10) * 1000)
        await hs_a.partner_directory_publisher.publish_all()  # A refreshes, B does not
        clock.advance(20 * 1000)
        assert names(await bob.call("GET", CLIENT + "/search")) == ["Acme Legal"]

        # The operator removes A (verification included).
        await dora.call("DELETE", f"{ADMIN}/entries/{a.name}")
        await dora.call("DELETE", f"{ADMIN}/entries/{a.name}", expect=404)
        assert names(await bob.call("GET", CLIENT + "/search")) == []

        actions = {(e.action, e.target, e.outcome) for e in await hs_d.audit.query(action="partner_directory.")}
        assert {
            ("partner_directory.publish", a.name, "ok"),
            ("partner_directory.publish", b.name, "ok"),
            ("partner_directory.verify", a.name, "ok"),
            ("partner_directory.withdraw", a.name, "ok"),
            ("partner_directory.remove", a.name, "ok"),
        } <= actions


async def test_forged_and_hostile_publishes_change_nothing(tmp_path: Path, ca: TestCA) -> None:
    d, a = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        directory_server(d, ca, partner_directory={"serve": True}) as hs_d,
        directory_server(a, ca, **org_config(ACME, d.name)) as hs_a,
        aiohttp.ClientSession() as s,
    ):
        await hs_a.partner_directory_publisher.publish_all()
        before = (await hs_d.partner_directory.get_entry(a.name))["entry"]
        assert before["profile"]["name"] == "Acme Legal"
        url = f"https://{d.name}{FED}/profile"
        forged = {"name": "Acme Legal (forged)"}

        async def raw_put(body: Any, auth: str | None) -> tuple[int, Any]:
            headers = {"Content-Type": "application/json"}
            if auth:
                headers["Authorization"] = auth
            async with s.put(url, data=orjson.dumps(body), headers=headers, ssl=ctx) as r:
                return r.status, await r.json(content_type=None)

        # Unsigned.
        status, err = await raw_put(forged, None)
        assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")
        # Claiming to be A, signed with a key that is not A's (same key ID, other key).
        impostor = generate_signing_key(a.key_id.split(":", 1)[1])
        header = sign_request(method="PUT", uri=FED + "/profile", origin=a.name, destination=d.name,
                              signing_key=impostor, content=forged)
        status, err = await raw_put(forged, header)
        assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")
        # A genuine signature over a different body than the one sent.
        header = sign_request(method="PUT", uri=FED + "/profile", origin=a.name, destination=d.name,
                              signing_key=a.signing_key, content={"name": "what was signed"})
        status, err = await raw_put(forged, header)
        assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")
        # Unsigned withdrawal.
        async with s.delete(url, ssl=ctx) as r:
            assert r.status == 401

        # Hostile bodies, properly signed by A.
        client = hs_a.federation_client
        assert client is not None
        path = FED + "/profile"
        cases: list[tuple[Any, int, str]] = [
            ({**forged, "description": "x" * 100_000}, 400, "M_TOO_LARGE"),
            ({"name": "n" * 129}, 400, "M_TOO_LARGE"),
            ({"name": 42}, 400, "M_BAD_JSON"),
            ({"name": "Acme", "specialties": "law"}, 400, "M_BAD_JSON"),
            ({"name": "Acme", "specialties": [1, 2]}, 400, "M_BAD_JSON"),
            ({"name": "Acme", "specialties": ["s"] * 21}, 400, "M_TOO_LARGE"),
            ({"name": "Acme", "contacts": ["alice"]}, 400, "M_INVALID_PARAM"),
            ({"name": "Acme", "website": "javascript:alert(1)"}, 400, "M_INVALID_PARAM"),
            ({"name": "Acme", "rooms": ["not a room"]}, 400, "M_INVALID_PARAM"),
            ({"name": "Acme", "partners": ["bad name!"]}, 400, "M_INVALID_PARAM"),
            ({"name": "Acme", "location": ["Berlin"]}, 400, "M_BAD_JSON"),
            ({"name": "   "}, 400, "M_INVALID_PARAM"),
            ({"description": "no name"}, 400, "M_MISSING_PARAM"),
            ({"withdrawn": "yes"}, 400, "M_BAD_JSON"),
            ([ACME], 400, "M_BAD_JSON"),
            ({"name": "Acme", "description": "y" * 300_000}, 413, "M_TOO_LARGE"),
        ]
        for body, status, errcode in cases:
            await expect_remote(client.put_json(d.name, path, body), status, errcode)
        # Not JSON at all, but signed (the signature covers no content).
        header = sign_request(method="PUT", uri=path, origin=a.name, destination=d.name,
                              signing_key=a.signing_key)
        async with s.put(url, data=b"{not json", headers={"Authorization": header}, ssl=ctx) as r:
            assert r.status == 400 and (await r.json())["errcode"] == "M_NOT_JSON"

        after = (await hs_d.partner_directory.get_entry(a.name))["entry"]
        assert after == before
        refused = await hs_d.audit.query(action="partner_directory.publish", target=a.name)
        assert sum(e.outcome == "refused" for e in refused) >= 10

        # A body cannot name another server: the X-Matrix origin is the key.
        answer = await client.put_json(d.name, path, {"name": "Acme", "server_name": "victim.example"})
        assert answer["server_name"] == a.name
        assert (await client.get_json(d.name, path))["profile"]["name"] == "Acme"
        assert "server_name" not in (await client.get_json(d.name, path))["profile"]

        # Hostile search parameters.
        search = FED + "/search"
        await expect_remote(client.get_json(d.name, search, query={"limit": "-1"}), 400, "M_INVALID_PARAM")
        await expect_remote(client.get_json(d.name, search, query={"since": "!!"}), 400, "M_INVALID_PARAM")
        await expect_remote(client.get_json(d.name, search, query={"verified_only": "maybe"}),
                            400, "M_INVALID_PARAM")
        await expect_remote(client.get_json(d.name, search, query={"q": "q" * 1000}), 400, "M_TOO_LARGE")
        await expect_remote(client.post_json(d.name, search, {"limit": "10"}), 400, "M_BAD_JSON")
        await expect_remote(client.post_json(d.name, search, {"q": ["x"]}), 400, "M_BAD_JSON")
        found = await client.post_json(d.name, search, {"q": "ACME", "limit": 1000})
        assert [r["server_name"] for r in found["results"]] == [a.name]
        # A server that does not serve a directory says so.
        await expect_remote(hs_d.federation_client.get_json(a.name, search), 404, "M_UNRECOGNIZED")  # type: ignore[union-attr]

        # A signed DELETE withdraws; a PUT {"withdrawn": true} too.
        await client.request("DELETE", d.name, path)
        await expect_remote(client.get_json(d.name, path), 404, "M_NOT_FOUND")
        await client.put_json(d.name, path, {"name": "Acme"})
        assert (await client.put_json(d.name, path, {"withdrawn": True}))["withdrawn"] is True
        await expect_remote(client.get_json(d.name, path), 404, "M_NOT_FOUND")


async def test_partnership_request_from_a_search_result(tmp_path: Path, ca: TestCA) -> None:
    """An organization's admin asks an organization found in the directory for a
    partnership; the request reaches the other server as an inbound request."""
    a, b = ServerSpec(tmp_path, "127.0.0.3"), ServerSpec(tmp_path, "127.0.0.4")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        directory_server(a, ca, organization=ACME) as hs_a,
        directory_server(b, ca, organization=BRAVO) as hs_b,
        aiohttp.ClientSession() as s,
    ):
        if getattr(hs_b, "partners", None) is None:
            pytest.skip("the partnerships service is not wired into this server yet")
        bob_admin = await User(s, b, ctx).register("boss", hs_b, admin=True)
        bob = await User(s, b, ctx).register("bob", hs_b)
        body = {"server_name": a.name, "message": "Found you in the directory."}
        assert (await bob.call("POST", CLIENT + "/request_partnership", body, expect=403))["errcode"] == "M_FORBIDDEN"
        for bad, errcode in (
            ({"message": "hi"}, "M_MISSING_PARAM"),
            ({"server_name": 7}, "M_BAD_JSON"),
            ({"server_name": "bad name"}, "M_INVALID_PARAM"),
            ({"server_name": b.name}, "M_INVALID_PARAM"),
            ({"server_name": a.name, "message": "m" * 5000}, "M_TOO_LARGE"),
        ):
            err = await bob_admin.call("POST", CLIENT + "/request_partnership", bad, expect=400)
            assert err["errcode"] == errcode, (bad, err)
        result = await bob_admin.call("POST", CLIENT + "/request_partnership", body)
        assert result["server_name"] == a.name and result["state"] == "pending"
        inbound = await hs_a.partners.get(b.name)
        assert inbound is not None and inbound.state == "pending" and inbound.direction == "inbound"


async def test_partners_policy_keeps_the_directory_reachable_and_slow_directories_time_out(tmp_path: Path, ca: TestCA) -> None:
    """Under federation policy 'partners' a directory and an organization that are
    not partners still publish and search; a directory that accepts connections
    but never answers costs one search timeout, not the search."""
    d, a = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    slow = ServerSpec(tmp_path, "127.0.0.6")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)

    sink = await asyncio.start_server(never_answer, slow.ip, slow.port)
    a_conf = org_config(ACME, d.name, slow.name)
    a_conf["partner_directory"]["search_timeout_s"] = 0.5
    policy = {"policy": "partners"}
    try:
        async with (
            directory_server(d, ca, federation=policy, partner_directory={"serve": True}) as hs_d,
            directory_server(a, ca, federation={**policy, "static_hosts": {slow.name: slow.name}},
                             **a_conf) as hs_a,
            aiohttp.ClientSession() as s,
        ):
            assert [r["ok"] for r in await hs_a.partner_directory_publisher.publish_all()] == [True]
            assert (await hs_d.partner_directory.get_entry(a.name))["entry"] is not None
            alice = await User(s, a, ctx).register("alice", hs_a)
            started = time.monotonic()
            page = await alice.call("GET", CLIENT + "/search", query={"q": "acme"})
            assert time.monotonic() - started < 5
            assert names(page) == ["Acme Legal"]
            assert list(page["failed"]) == [slow.name], page["failed"]
    finally:
        for writer in hung:
            writer.close()
        sink.close()
        await sink.wait_closed()
