"""Internal rooms (``m.federate: false``) never leave their server: proved by
recording every request the server's federation client sends while users chat,
type, send receipts and change presence in one, next to a federated room that
does talk to a peer."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp

from tests.homeserver.federation.servers import ServerSpec
from tests.homeserver.partners.helpers import Client, Recorder, partner_server, until
from tests.tls_ca import TestCA


async def test_internal_room_sends_nothing_to_any_server(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        partner_server(a_spec, ca, rooms={"internal_by_default": True}) as a,
        partner_server(b_spec, ca),
        aiohttp.ClientSession() as s,
    ):
        alice, carol, bob = Client(s, a_spec, ctx), Client(s, a_spec, ctx), Client(s, b_spec, ctx)
        alice_id = await alice.register("alice")
        carol_id = await carol.register("carol")
        bob_id = await bob.register("bob")

        # The default is internal; a client may still ask for a federated room.
        internal = (await alice.call("POST", "/createRoom", {"preset": "public_chat", "name": "Internal"}))["room_id"]
        create = await alice.call("GET", f"/rooms/{internal}/state/m.room.create")
        assert create["m.federate"] is False
        shared = (await alice.call("POST", "/createRoom", {
            "preset": "public_chat", "creation_content": {"m.federate": True}}))["room_id"]
        assert (await alice.call("GET", f"/rooms/{shared}/state/m.room.create"))["m.federate"] is True
        await bob.call("POST", f"/join/{shared}?server_name={a_spec.name}", {})
        await alice.say(shared, "warm up")
        await bob.wait_for_message(shared, "warm up")

        sent = Recorder(a)
        await carol.call("POST", f"/join/{internal}", {})
        for i in range(3):
            event_id = await carol.say(internal, f"internal {i}")
            await alice.call("PUT", f"/rooms/{internal}/typing/{alice_id}", {"typing": True, "timeout": 5000})
            await alice.call("POST", f"/rooms/{internal}/receipt/m.read/{event_id}", {})
            await carol.call("PUT", f"/rooms/{internal}/typing/{carol_id}", {"typing": True, "timeout": 5000})
            await carol.call("PUT", f"/presence/{carol_id}/status", {"presence": "online", "status_msg": f"s{i}"})
        await alice.say(internal, "internal from alice")
        await alice.call("PUT", f"/rooms/{internal}/typing/{alice_id}", {"typing": False})
        # The remote user cannot join the internal room, nor be invited to it.
        status, err = await bob.raw("POST", f"/join/{internal}?server_name={a_spec.name}", {})
        assert status != 200 and "federate" in err["error"], err
        status, err = await alice.raw("POST", f"/rooms/{internal}/invite", {"user_id": bob_id})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err

        # Something in the federated room, queued after all of the above (one
        # intake worker keeps order), proves the recorder sees what does go out.
        await alice.say(shared, "federated after")
        await bob.wait_for_message(shared, "federated after")
        await a.federation_sender.drain_intake()
        await asyncio.sleep(0.3)  # ephemeral EDUs (typing, presence) go out with the next transaction
        assert sent.to(b_spec.name, "/send/"), "the recorder saw nothing at all"
        everything = sent.text()
        assert internal not in everything
        assert carol_id not in everything  # carol shares no federated room: not even her presence
        for i in range(3):
            assert f"internal {i}" not in everything and f"s{i}" not in everything
        assert "internal from alice" not in everything
        assert {x.destination for x in sent.sent} == {b_spec.name}
        await until(lambda: _no_queue(a, b_spec.name))


async def _no_queue(hs: object, dest: str) -> bool:
    return await hs.federation_sender.store.count(dest) == 0  # type: ignore[attr-defined]
