"""matrix-nio end to end: a room's whole life through a real client library.

Two users create a room, invite, join, exchange 100 messages, set name and topic,
redact one, and paginate the full history both ways; a third user who was never
invited is refused on every read.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import nio

from tests.e2e.server_process import ServerProcess


async def _client(url: str, name: str) -> nio.AsyncClient:
    client = nio.AsyncClient(url, name)
    resp = await client.register(name, f"{name}-password-1")
    assert isinstance(resp, nio.RegisterResponse), resp
    return client


async def test_nio_room_lifecycle(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    alice = await _client(server.client_url, "alice")
    bob = await _client(server.client_url, "bob")
    eve = await _client(server.client_url, "eve")
    try:
        created = await alice.room_create(name="Project", topic="Start")
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        assert isinstance(await alice.room_invite(room, bob.user_id), nio.RoomInviteResponse)
        assert isinstance(await bob.join(room), nio.JoinResponse)

        sent: list[str] = []
        for i in range(100):
            who = alice if i % 2 == 0 else bob
            resp = await who.room_send(room, "m.room.message", {"msgtype": "m.text", "body": f"message {i}"})
            assert isinstance(resp, nio.RoomSendResponse), resp
            sent.append(resp.event_id)
        name = await alice.room_put_state(room, "m.room.name", {"name": "Project X"})
        topic = await bob.room_put_state(room, "m.room.topic", {"topic": "Launch"})
        assert isinstance(name, nio.RoomPutStateResponse), name
        # Bob has no power over the topic in a private room's default power levels.
        assert isinstance(topic, nio.RoomPutStateError) and topic.status_code == "M_FORBIDDEN"
        assert isinstance(await alice.room_put_state(room, "m.room.topic", {"topic": "Launch"}), nio.RoomPutStateResponse)
        redaction = await bob.room_redact(room, sent[51], reason="typo")
        assert isinstance(redaction, nio.RoomRedactResponse), redaction

        # Backwards through everything, in pages of 30.
        backwards: list[nio.Event] = []
        token = ""
        while True:
            page = await bob.room_messages(room, start=token, limit=30, direction=nio.MessageDirection.back)
            assert isinstance(page, nio.RoomMessagesResponse), page
            backwards.extend(page.chunk)
            if not page.end or not page.chunk:
                break
            token = page.end
        texts = [e for e in backwards if isinstance(e, (nio.RoomMessageText, nio.RedactedEvent))]
        assert [e.event_id for e in reversed(texts)] == sent
        redacted = next(e for e in backwards if e.event_id == sent[51])
        assert isinstance(redacted, nio.RedactedEvent) and redacted.reason == "typo"
        assert isinstance(backwards[-1], nio.RoomCreateEvent)

        # And forwards from the very start: the same events in the opposite order.
        start = await bob.room_messages(room, start="", limit=1000, direction=nio.MessageDirection.front)
        assert isinstance(start, nio.RoomMessagesResponse), start
        forwards = list(start.chunk)
        assert [e.event_id for e in forwards] == [e.event_id for e in reversed(backwards)]

        state = await bob.room_get_state(room)
        assert isinstance(state, nio.RoomGetStateResponse)
        by_type = {e["type"]: e for e in state.events if e.get("state_key") == ""}
        assert by_type["m.room.name"]["content"] == {"name": "Project X"}
        assert by_type["m.room.topic"]["content"]["topic"] == "Launch"

        # Eve was never invited: every read path refuses her.
        assert isinstance(await eve.room_messages(room, start="", limit=10), nio.RoomMessagesError)
        assert isinstance(await eve.room_get_state(room), nio.RoomGetStateError)
        # nio parses any JSON body of this call as state content, so read the HTTP status.
        refused = await eve.room_get_state_event(room, "m.room.name")
        assert refused.transport_response.status == 403
        assert isinstance(await eve.room_get_event(room, sent[0]), nio.RoomGetEventError)
        assert isinstance(await eve.joined_members(room), nio.JoinedMembersError)
        async with aiohttp.ClientSession() as s:
            headers = {"Authorization": f"Bearer {eve.access_token}"}
            base = f"{server.client_url}/_matrix/client/v3/rooms/{room}"
            for path in ("/messages", "/state", "/state/m.room.name", f"/event/{sent[0]}",
                         "/members", "/joined_members", f"/context/{sent[0]}", "/aliases"):
                async with s.get(base + path, headers=headers) as r:
                    body = await r.json()
                    assert (r.status, body["errcode"]) in ((403, "M_FORBIDDEN"), (404, "M_NOT_FOUND")), path
    finally:
        for c in (alice, bob, eve):
            await c.close()
        assert await server.stop() == 0
