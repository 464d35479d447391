"""Internal rooms (``m.federate: false``) never leave their server: proved by
recording every request the server's federation client sends while users chat,
type, send receipts and change presence in one, next to a federated room that
does talk to a peer."""

from __future__ import annotations

import secrets
from pathlib import Path

from homeserver.server import HomeServer
from tests.homeserver.partners.helpers import Recorder, partner_pair, until
from tests.tls_ca import TestCA


async def test_internal_room_sends_nothing_to_any_server(tmp_path: Path, ca: TestCA) -> None:
    async with partner_pair(tmp_path, ca, {"rooms": {"internal_by_default": True}}) as p:
        a, a_spec, b_spec, alice, bob = p.a, p.a_spec, p.b_spec, p.alice, p.bob
        alice_id, bob_id = p.alice_id, p.bob_id
        carol = p.client(a_spec)
        carol_id = await carol.register("carol")

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
        # Unique strings, long enough that no signature or hash could contain them by chance.
        tag = secrets.token_hex(12)
        bodies = [f"internal message {i} {tag}" for i in range(3)] + [f"internal from alice {tag}"]
        statuses = [f"carol's status {i} {tag}" for i in range(3)]
        await carol.call("POST", f"/join/{internal}", {})
        for i in range(3):
            event_id = await carol.say(internal, bodies[i])
            await alice.call("PUT", f"/rooms/{internal}/typing/{alice_id}", {"typing": True, "timeout": 5000})
            await alice.call("POST", f"/rooms/{internal}/receipt/m.read/{event_id}", {})
            await carol.call("PUT", f"/rooms/{internal}/typing/{carol_id}", {"typing": True, "timeout": 5000})
            await carol.call("PUT", f"/presence/{carol_id}/status", {"presence": "online", "status_msg": statuses[i]})
        await alice.say(internal, bodies[3])
        await alice.call("PUT", f"/rooms/{internal}/typing/{alice_id}", {"typing": False})
        # The remote user cannot join the internal room, nor be invited to it.
        status, err = await bob.raw("POST", f"/join/{internal}?server_name={a_spec.name}", {})
        assert status != 200 and "federate" in err["error"], err
        status, err = await alice.raw("POST", f"/rooms/{internal}/invite", {"user_id": bob_id})
        assert (status, err["errcode"]) == (403, "M_FORBIDDEN"), err
        page = await alice.call("GET", f"/rooms/{internal}/messages?dir=b&limit=100")
        internal_events = {ev["event_id"] for ev in page["chunk"]}
        assert {ev["content"].get("body") for ev in page["chunk"]} >= set(bodies)
        assert any(ev["type"] == "m.room.create" for ev in page["chunk"])  # the whole room, from its start

        # Something in the federated room, queued after all of the above (one
        # intake worker keeps order), proves the recorder sees what does go out.
        await alice.say(shared, "federated after")
        await bob.wait_for_message(shared, "federated after")
        # Everything queued for b so far (PDUs, receipts, the typing and presence
        # EDUs that ride along with the next transaction) has gone out.
        await a.federation_sender.drain_intake()
        await until(lambda: _settled(a, b_spec.name))
        transactions = sent.to(b_spec.name, "/send/")
        assert transactions, "the recorder saw nothing at all"
        assert {x.destination for x in sent.sent} == {b_spec.name}
        everything = sent.text()
        assert internal not in everything
        assert carol_id not in everything  # carol shares no federated room: not even her presence
        for text in [*internal_events, *bodies, *statuses]:
            assert text not in everything, text
        # The same, structurally: no PDU of the room, no typing or receipt EDU naming
        # it, no presence of carol.
        for x in transactions:
            assert all(pdu["room_id"] != internal for pdu in x.content.get("pdus", []))
            for edu in x.content.get("edus", []):
                content = edu["content"]
                if edu["edu_type"] == "m.typing":
                    assert content["room_id"] != internal
                elif edu["edu_type"] == "m.receipt":
                    assert internal not in content
                elif edu["edu_type"] == "m.presence":
                    assert all(push["user_id"] != carol_id for push in content["push"])


async def _settled(hs: HomeServer, dest: str) -> bool:
    """Nothing left for `dest`: the outbox empty and no transaction in flight or pending."""
    return await hs.federation_sender.store.count(dest) == 0 and hs.federation_sender.idle(dest)
