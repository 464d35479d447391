"""matrix-nio's sync loop against a server started by the test: messages, state,
typing, receipts and presence arrive, and reconnecting with the last token loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import nio

from tests.e2e.matrix_http import RawClient
from tests.e2e.server_process import ServerProcess


async def _sync_until(client: nio.AsyncClient, found: Callable[[nio.SyncResponse], bool], rounds: int = 20) -> nio.SyncResponse:
    for _ in range(rounds):
        resp = await client.sync(timeout=5000, since=client.next_batch)
        assert isinstance(resp, nio.SyncResponse), resp
        if found(resp):
            return resp
    raise AssertionError("never arrived")


def _timeline(resp: nio.SyncResponse, room: str) -> list[nio.Event]:
    joined = resp.rooms.join.get(room)
    return list(joined.timeline.events) if joined else []


def _ephemeral(resp: nio.SyncResponse, room: str) -> list[object]:
    joined = resp.rooms.join.get(room)
    return list(joined.ephemeral) if joined else []


async def test_nio_sync_loop(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "hs")
    await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            alice = await RawClient(s, server.client_url).register("alice")
            bob = nio.AsyncClient(server.client_url, "bob")
            try:
                reg = await bob.register("bob", "bob-password-1")
                assert isinstance(reg, nio.RegisterResponse), reg
                room = (await alice.call("POST", "/createRoom", {"invite": [bob.user_id]}))["room_id"]
                first = await bob.sync(timeout=0)
                assert isinstance(first, nio.SyncResponse) and room in first.rooms.invite
                joined = await bob.join(room)
                assert isinstance(joined, nio.JoinResponse), joined
                await _sync_until(bob, lambda r: room in r.rooms.join)

                sent = await alice.call("PUT", f"/rooms/{room}/send/m.room.message/1", {"msgtype": "m.text", "body": "hi nio"})
                await _sync_until(bob, lambda r: any(
                    isinstance(e, nio.RoomMessageText) and e.body == "hi nio" for e in _timeline(r, room)))
                await alice.call("PUT", f"/rooms/{room}/state/m.room.topic", {"topic": "News"})
                await _sync_until(bob, lambda r: any(
                    isinstance(e, nio.RoomTopicEvent) and e.topic == "News" for e in _timeline(r, room)))
                await alice.call("PUT", f"/rooms/{room}/typing/{alice.user_id}", {"typing": True, "timeout": 10000})
                await _sync_until(bob, lambda r: any(
                    isinstance(e, nio.TypingNoticeEvent) and alice.user_id in e.users for e in _ephemeral(r, room)))
                await alice.call("POST", f"/rooms/{room}/receipt/m.read/{sent['event_id']}", {})
                await _sync_until(bob, lambda r: any(
                    isinstance(e, nio.ReceiptEvent)
                    and any(rc.event_id == sent["event_id"] and rc.user_id == alice.user_id for rc in e.receipts)
                    for e in _ephemeral(r, room)))
                await alice.call("PUT", f"/presence/{alice.user_id}/status", {"presence": "online", "status_msg": "here"})
                await _sync_until(bob, lambda r: any(
                    isinstance(e, nio.PresenceEvent) and e.user_id == alice.user_id and e.status_msg == "here"
                    for e in r.presence_events))

                # "Disconnect": traffic happens while bob is not syncing; the next sync with the
                # last token brings all of it.
                for i in range(15):
                    await alice.call("PUT", f"/rooms/{room}/send/m.room.message/m{i}", {"msgtype": "m.text", "body": f"missed {i}"})
                bodies: list[str] = []
                resp = await bob.sync(timeout=0, since=bob.next_batch,
                                      sync_filter={"room": {"timeline": {"limit": 50}}})
                assert isinstance(resp, nio.SyncResponse)
                bodies = [e.body for e in _timeline(resp, room) if isinstance(e, nio.RoomMessageText)]
                assert bodies == [f"missed {i}" for i in range(15)]
                assert not resp.rooms.join[room].timeline.limited
            finally:
                await bob.close()
    finally:
        assert await server.stop() == 0
