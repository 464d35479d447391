"""Two real servers under the ``partners`` federation policy: refused until they
are partners, federating while they are, refused again once one side revokes;
and under ``open``, federating as any Matrix server does."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from homeserver.server import HomeServer
from tests.homeserver.federation.servers import Pair, ServerSpec
from tests.homeserver.partners.helpers import (
    ADMIN_API,
    PARTNERS_API,
    Recorder,
    notices,
    partner_pair,
    partner_server,
    signed_request,
    until,
)
from tests.tls_ca import TestCA

PARTNERS = {"federation": {"policy": "partners"}}


async def audit_actions(hs: HomeServer, target: str) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) for e in reversed(await hs.audit.query(target=target, limit=500))]


async def state_of(hs: HomeServer, peer: str) -> str | None:
    p = await hs.partners.get(peer)
    return p.state if p else None


async def test_partners_refused_then_accepted_then_revoked(tmp_path: Path, ca: TestCA) -> None:
    async with partner_pair(tmp_path, ca, PARTNERS, PARTNERS) as p:
        a, b, a_spec, b_spec, s, ctx = p.a, p.b, p.a_spec, p.b_spec, p.session, p.ctx
        alice, bob, bob_id = p.alice, p.bob, p.bob_id
        a_admin, b_admin = p.client(a_spec), p.client(b_spec)
        await a_admin.register("admin", a, admin=True)
        await b_admin.register("admin", b, admin=True)
        room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
        a_sent = Recorder(a)

        # --- no partnership: refused at both ends ---
        status, err = await bob.raw("POST", f"/join/{room}?server_name={a_spec.name}", {})
        assert status != 200 and "policy" in err["error"], err  # B's own client refuses to ask A
        await b.federation_policy.flush()  # outbound refusals are recorded by a task
        assert ("federation.refused", "refused") in await audit_actions(b, a_spec.name)
        # A forged-free, correctly signed request from B reaches A and is refused there.
        txn = {"origin": b_spec.name, "origin_server_ts": 1, "pdus": []}
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT",
            path="/_matrix/federation/v1/send/t1", content=txn,
        )
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        status, _ = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="GET",
            path=f"/_matrix/federation/v1/make_join/{room}/{bob_id}?ver=10&ver=11&ver=12",
        )
        assert status == 403
        # Dot segments cannot borrow an exempt prefix.
        status, _ = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT",
            path="/_matrix/key/../federation/v1/send/t2", content=txn,
        )
        assert status in (401, 403, 404)
        refusals = [x for x in await audit_actions(a, b_spec.name) if x[0] == "federation.refused"]
        assert refusals == [("federation.refused", "refused")]  # three refusals, one record a minute
        # /version and the key API stay open to any server.
        status, _ = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="GET", path="/_matrix/federation/v1/version"
        )
        assert status == 200

        # --- B asks; A's admin reads the notice and accepts ---
        status, err = await bob.raw("POST", ADMIN_API, {"server_name": a_spec.name})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN")  # not an admin
        asked = await b_admin.call("POST", ADMIN_API, {"server_name": a_spec.name, "message": "Let us work together"})
        assert (asked["state"], asked["direction"]) == ("pending", "outbound")
        pending = await a_admin.call("GET", ADMIN_API + "?state=pending")
        assert [(p["server_name"], p["direction"], p["message"]) for p in pending["partnerships"]] == [
            (b_spec.name, "inbound", "Let us work together")
        ]
        (notice,) = await notices(a_admin, a)
        assert b_spec.name in notice and "Let us work together" in notice
        assert f"{ADMIN_API}/{b_spec.name}/accept" in notice
        notice_room = await a.partners.notices.room_id()
        assert notice_room is not None
        assert (await a.room_service.get_room(notice_room)).federate is False  # the notice room is internal

        status, err = await alice.raw("POST", f"{ADMIN_API}/{b_spec.name}/accept", {})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
        accepted = await a_admin.call("POST", f"{ADMIN_API}/{b_spec.name}/accept", {})
        assert accepted["state"] == "active"
        assert await a.partners.active_partners() == [b_spec.name]
        await until(lambda: _is(state_of(b, a_spec.name), "active"))
        assert await b.partners.is_partner(a_spec.name)
        (b_notice,) = await notices(b_admin, b)
        assert "accepted" in b_notice

        # --- partners: B's user joins A's room, they talk ---
        assert await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {}) == {"room_id": room}
        await bob.say(room, "hello from B")
        await alice.wait_for_message(room, "hello from B")
        await alice.say(room, "hello from A")
        await bob.wait_for_message(room, "hello from A")

        # --- A revokes: federation stops at once, both ways ---
        revoked = await a_admin.call("POST", f"{ADMIN_API}/{b_spec.name}/revoke", {"reason": "project over"})
        assert revoked["state"] == "revoked"
        assert not await a.partners.is_partner(b_spec.name)
        await until(lambda: _is(state_of(b, a_spec.name), "revoked"))
        sent_before = len(a_sent.to(b_spec.name, "/send/"))
        await alice.say(room, "after revoke from A")
        await a.federation_sender.drain_intake()
        assert await a.federation_sender.store.count(b_spec.name) == 0
        assert len(a_sent.to(b_spec.name, "/send/")) == sent_before  # A sends B nothing more
        await bob.say(room, "after revoke from B")  # B's sender does not even queue it
        await b.federation_sender.drain_intake()
        assert await b.federation_sender.store.count(a_spec.name) == 0
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT",
            path="/_matrix/federation/v1/send/t3", content=txn,
        )
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN")
        assert "after revoke from B" not in [ev["content"]["body"] for ev in await alice.messages(room)]

        # --- replays change nothing ---
        # B's old accept-worthy request, replayed: remembered, not a new pending request.
        status, body = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT",
            path=f"{PARTNERS_API}/request/{asked['request_id']}", content={"organization": "B"},
        )
        assert status == 200 and body["state"] == "revoked"
        assert await state_of(a, b_spec.name) == "revoked"
        # An old revoke cannot end a later partnership; an old accept cannot revive one.
        status, body = await signed_request(
            s, ctx, signer=a_spec, destination=b_spec, method="PUT",
            path=f"{PARTNERS_API}/respond/{asked['request_id']}", content={"response": "accept"},
        )
        assert (status, body["errcode"]) == (400, "M_BAD_STATE")
        assert await state_of(b, a_spec.name) == "revoked"

        # The audit log tells the whole story, on both sides.
        a_log = await audit_actions(a, b_spec.name)
        for step in ("partnership.request.received", "partnership.accept", "partnership.revoke"):
            assert (step, "ok") in a_log, a_log
        assert ("federation.refused", "refused") in a_log
        b_log = await audit_actions(b, a_spec.name)
        for step in ("partnership.request", "partnership.accept", "partnership.revoke"):
            assert (step, "ok") in b_log, b_log


async def _is(value: object, expected: str) -> bool:
    return await value == expected  # type: ignore[misc]


async def test_forged_partnership_requests_are_unauthorized(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    c_spec = ServerSpec(tmp_path, "127.0.0.4")  # never started: its name is borrowed by a forger
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        partner_server(a_spec, ca, **PARTNERS) as a,
        partner_server(b_spec, ca, **PARTNERS),
        aiohttp.ClientSession() as s,
    ):
        path = f"{PARTNERS_API}/request/r1"
        body = {"organization": "Forgers Ltd"}
        async with s.put(f"https://{a_spec.name}{path}", json=body, ssl=ctx) as r:  # unsigned
            assert r.status == 401 and (await r.json())["errcode"] == "M_UNAUTHORIZED"
        # Signed over other content than what is sent.
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=path, content=body,
            signed_content={"organization": "Honest Inc"},
        )
        assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")
        # B's key, claiming to be C: the signature is not C's.
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=path, content=body,
            origin=c_spec.name,
        )
        assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")
        # C's real key, but C itself is not there to vouch for it: no key, no trust.
        status, err = await signed_request(
            s, ctx, signer=c_spec, destination=a_spec, method="PUT", path=path, content=body,
        )
        assert (status, err["errcode"]) == (401, "M_UNAUTHORIZED")
        assert await a.partners.list() == []
        # A body claiming another origin is ignored: the partnership is with the signer.
        status, answer = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=path,
            content={**body, "origin": c_spec.name, "server_name": c_spec.name},
        )
        assert (status, answer) == (200, {"state": "pending"})
        assert [p.server_name for p in await a.partners.list()] == [b_spec.name]
        # Hostile bodies.
        for bad in ({}, {"organization": 5}, {"organization": "x" * 500}, {"organization": "a\u0000b"},
                    {"organization": "ok", "message": ["list"]}):
            status, err = await signed_request(
                s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=f"{PARTNERS_API}/request/r9",
                content=bad,
            )
            assert status == 400, (bad, err)
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=f"{PARTNERS_API}/request/bad%20id",
            content=body,
        )
        assert (status, err["errcode"]) == (400, "M_INVALID_PARAM")
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=f"{PARTNERS_API}/respond/r1",
            content={"response": "maybe"},
        )
        assert (status, err["errcode"]) == (400, "M_BAD_JSON")
        # B cannot answer its own request on A's behalf, nor revoke what is not there.
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=f"{PARTNERS_API}/respond/r1",
            content={"response": "accept"},
        )
        assert status == 400 and err["errcode"] == "M_BAD_STATE"
        assert not await a.partners.is_partner(b_spec.name)
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=f"{PARTNERS_API}/revoke/nope",
            content={},
        )
        assert (status, err["errcode"]) == (404, "M_NOT_FOUND")
        # A fresh request ID within a minute of the last one is rate limited.
        status, err = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=f"{PARTNERS_API}/request/r2",
            content=body,
        )
        assert (status, err["errcode"]) == (429, "M_LIMIT_EXCEEDED")
        # The same ID again is a retry: same answer, no second notice.
        status, answer = await signed_request(
            s, ctx, signer=b_spec, destination=a_spec, method="PUT", path=path, content=body,
        )
        assert (status, answer) == (200, {"state": "pending"})


async def test_asking_a_server_that_asked_us_accepts(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    async with partner_server(a_spec, ca, **PARTNERS) as a, partner_server(b_spec, ca, **PARTNERS) as b:
        await a.partners.request(b_spec.name, by="@admin:a")
        p = await b.partners.request(a_spec.name, by="@admin:b")  # accepts A's pending request
        assert p.state == "active"
        await until(lambda: _is(state_of(a, b_spec.name), "active"))
        # Either side may end it, and the other hears of it.
        await b.partners.revoke(a_spec.name, by="@admin:b")
        await until(lambda: _is(state_of(a, b_spec.name), "revoked"))
        assert await a.partners.active_partners() == [] == await b.partners.active_partners()


async def _joined_room(p: Pair) -> str:
    """A public room of alice's on A that bob of B has joined."""
    room: str = (await p.alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    assert await p.bob.call("POST", f"/join/{room}?server_name={p.a_spec.name}", {}) == {"room_id": room}
    return room


async def test_open_policy_federates_as_before(tmp_path: Path, ca: TestCA) -> None:
    async with partner_pair(tmp_path, ca, {"federation": {"policy": "open"}}) as p:
        a, b, alice, bob = p.a, p.b, p.alice, p.bob
        room = await _joined_room(p)
        await bob.say(room, "hi A")
        await alice.wait_for_message(room, "hi A")
        await alice.say(room, "hi B")
        await bob.wait_for_message(room, "hi B")
        assert await a.partners.list() == [] and await b.partners.list() == []
        assert not [e for e in await a.audit.query(action="federation.refused")]


async def test_static_allow_list(tmp_path: Path, ca: TestCA) -> None:
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    a_config = {"federation": {"policy": "partners", "allowed_servers": [b_spec.name]}}
    b_config = {"federation": {"policy": "partners", "allowed_servers": [a_spec.name]}}
    async with partner_pair(tmp_path, ca, a_config, b_config, specs=(a_spec, b_spec)) as p:
        alice, bob = p.alice, p.bob
        room = await _joined_room(p)
        await bob.say(room, "allowed")
        await alice.wait_for_message(room, "allowed")
