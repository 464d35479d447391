"""matrix-nio end to end against the `accord` command: a pusher set through nio
reaches a push gateway (written to the Push Gateway API, HTTPS on loopback with
the test CA) with the right counts; reading on another nio session sends the
badge update; notifications queued while the gateway is down survive the server
being killed and are delivered exactly once after it comes back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nio
from nio.api import Api

from tests.e2e.server_process import ServerProcess
from tests.homeserver.push.gateway import PushGateway
from tests.tls_ca import TestCA


async def _set_pusher(client: nio.AsyncClient, url: str) -> None:
    """nio has no pusher method: its raw request path, with its own token."""
    body = {
        "kind": "http", "app_id": "org.example.nio", "pushkey": f"nio-{client.device_id}",
        "app_display_name": "nio", "device_display_name": "test", "lang": "en", "data": {"url": url},
    }
    resp = await client.send(
        "POST", Api._build_path(["pushers", "set"]), json.dumps(body),
        headers={"Authorization": f"Bearer {client.access_token}"},
    )
    assert resp.status == 200, await resp.text()


def _server(tmp_path: Path, ca: TestCA) -> ServerProcess:
    return ServerProcess(
        tmp_path / "hs",
        outbound={"allowed_ranges": ["127.0.0.0/8"]},
        federation={"ca_bundle_path": str(ca.ca_path)},
        push={"retry_base_s": 0.05, "retry_cap_s": 0.2},
    )


async def _two_users(server: ServerProcess) -> tuple[nio.AsyncClient, nio.AsyncClient, str]:
    alice = nio.AsyncClient(server.client_url, "alice")
    bob = nio.AsyncClient(server.client_url, "bob")
    assert isinstance(await alice.register("alice", "alice-password-1"), nio.RegisterResponse)
    assert isinstance(await bob.register("bob", "bob-password-1"), nio.RegisterResponse)
    created = await alice.room_create(name="Push", invite=[bob.user_id])
    assert isinstance(created, nio.RoomCreateResponse), created
    assert isinstance(await bob.join(created.room_id), nio.JoinResponse)
    return alice, bob, created.room_id


async def _say(client: nio.AsyncClient, room: str, text: str) -> str:
    resp = await client.room_send(room, "m.room.message", {"msgtype": "m.text", "body": text})
    assert isinstance(resp, nio.RoomSendResponse), resp
    return resp.event_id


async def test_nio_pusher_gets_notifications_and_badge_updates(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    gateway = PushGateway(ca)
    await gateway.start()
    server = _server(tmp_path, ca)
    await server.start()
    clients: list[Any] = []
    try:
        alice, bob, room = await _two_users(server)
        clients += [alice, bob]
        await _set_pusher(bob, gateway.url)
        first = await _say(alice, room, "one")
        second = await _say(alice, room, "two")
        notes = await gateway.wait_for(2)
        assert [n["event_id"] for n in notes] == [first, second]
        assert [n["counts"] for n in notes] == [{"unread": 1}, {"unread": 2}]
        assert notes[0]["room_name"] == "Push" and notes[0]["devices"][0]["pushkey"] == f"nio-{bob.device_id}"

        # Bob reads on another session: the phone's badge drops to nothing.
        tablet = nio.AsyncClient(server.client_url, "bob")
        clients.append(tablet)
        assert isinstance(await tablet.login("bob-password-1"), nio.LoginResponse)
        resp = await tablet.room_read_markers(room, second, second)
        assert isinstance(resp, nio.RoomReadMarkersResponse), resp
        notes = await gateway.wait_for(3)
        assert "event_id" not in notes[2] and notes[2]["counts"] == {}
    finally:
        for c in clients:
            await c.close()
        assert await server.stop() == 0
        await gateway.stop()


async def test_queued_notifications_survive_a_kill_and_arrive_once(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    gateway = PushGateway(ca)  # down for now
    server = _server(tmp_path, ca)
    await server.start()
    clients: list[Any] = []
    try:
        alice, bob, room = await _two_users(server)
        clients += [alice, bob]
        await _set_pusher(bob, gateway.url)
        sent = [await _say(alice, room, f"while down {i}") for i in range(3)]
        server.kill()
        await server.stop()
        for c in clients:
            await c.close()
        clients.clear()
        await gateway.start()
        await server.start()
        notes = await gateway.wait_for(3)
        alice = nio.AsyncClient(server.client_url, "alice")
        clients.append(alice)
        assert isinstance(await alice.login("alice-password-1"), nio.LoginResponse)
        later = await _say(alice, room, "after")
        notes = await gateway.wait_for(4)
        assert [n["event_id"] for n in notes] == [*sent, later]  # each exactly once, in order
    finally:
        for c in clients:
            await c.close()
        await server.stop()
        await gateway.stop()
