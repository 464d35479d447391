"""Push notifications across federation with stock Synapse: a message a Synapse user
sends into our room reaches our user's push gateway (written to the Push Gateway
API, HTTPS on loopback with the test CA) with the right counts and sender, and so
does a local user's message after it."""

from __future__ import annotations

import pytest

from homeserver.rooms.creation import create_room
from tests.homeserver.push.gateway import PushGateway
from tests.interop.test_federation_basics import Accord, accord, bob  # noqa: F401  (fixtures)
from tests.tls_ca import TestCA

from .synapse import SynapseClient, SynapseServer

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_synapse_users_message_reaches_our_gateway(
    accord: Accord, bob: SynapseClient, synapse: SynapseServer, ca: TestCA,  # noqa: F811
) -> None:
    gateway = PushGateway(ca)
    await gateway.start()
    try:
        hs = accord.hs
        room_id = await create_room(hs, accord.alice, {"preset": "public_chat", "name": "Pushed"})
        assert await bob.join(room_id, via=[accord.name]) == room_id
        await hs.pushers.set(accord.alice, None, {
            "kind": "http", "app_id": "org.example.interop", "pushkey": "alice-phone",
            "app_display_name": "Interop", "device_display_name": "Phone", "lang": "en",
            "data": {"url": gateway.url},
        })
        event_id = await bob.send_text(room_id, "hello from synapse")
        (note,) = await gateway.wait_for(1)
        assert note["event_id"] == event_id and note["room_id"] == room_id
        assert note["sender"] == bob.user_id and note["sender_display_name"] == "Bob of Synapse"
        assert note["counts"] == {"unread": 1} and note["room_name"] == "Pushed"
        # Two members: the one-to-one rule, which rings.
        assert note["prio"] == "high" and note["devices"][0]["tweaks"] == {"sound": "default"}

        carol = f"@carol:{accord.name}"
        await hs.registration.create_account(carol, None, login=False)
        room = await hs.room_store.get_room(room_id)
        assert room is not None
        await hs.membership.update(room, carol, carol, "join")
        local = await hs.room_service.create_event(room, carol, "m.room.message", {"msgtype": "m.text", "body": "and me"})
        notes = await gateway.wait_for(2)
        assert notes[1]["event_id"] == local.event_id and notes[1]["counts"] == {"unread": 2}
        assert gateway.events() == [event_id, local.event_id]
    finally:
        await gateway.stop()
