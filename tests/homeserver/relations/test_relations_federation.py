"""Relations between two Accords: thread replies and edits backfilled from another
server are indexed like live ones, received ones aggregate, and a received redaction
of a reply takes it out of the thread."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.homeserver.federation.conftest import pair  # noqa: F401  (fixture)
from tests.homeserver.federation.servers import Client, Pair

V1 = "/_matrix/client/v1"


async def _send(client: Client, room: str, txn: str, content: dict[str, Any]) -> str:
    return str((await client.call("PUT", f"/rooms/{room}/send/m.room.message/{txn}", content))["event_id"])


def _reply(root: str, body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


async def _thread(client: Client, room: str, root: str) -> dict[str, Any]:
    event = await client.call("GET", f"/rooms/{room}/event/{root}")
    return dict(event.get("unsigned", {}).get("m.relations", {}).get("m.thread", {}))


async def _until_count(client: Client, room: str, root: str, count: int) -> None:
    async with asyncio.timeout(20):
        while True:
            if (await _thread(client, room, root)).get("count") == count:
                return
            await asyncio.sleep(0.1)


async def test_backfilled_and_received_relations(pair: Pair) -> None:  # noqa: F811
    alice, bob, a_spec = pair.alice, pair.bob, pair.a_spec
    room = (await alice.call("POST", "/createRoom", {"preset": "public_chat"}))["room_id"]
    root = await _send(alice, room, "root", {"msgtype": "m.text", "body": "root"})
    early = [await _send(alice, room, f"r{i}", _reply(root, f"early {i}")) for i in range(2)]
    edit = await _send(alice, room, "edit", {
        "msgtype": "m.text", "body": "* root!", "m.new_content": {"msgtype": "m.text", "body": "root!"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": root},
    })
    for i in range(15):  # enough history that bob's server backfills it page by page
        await _send(alice, room, f"f{i}", {"msgtype": "m.text", "body": f"filler {i}"})
    await bob.call("POST", f"/join/{room}?server_name={a_spec.name}", {})
    token = ""
    for _ in range(20):  # back through history: B backfills it from A
        page = await bob.call("GET", f"/rooms/{room}/messages?dir=b&limit=10{token}")
        if "end" not in page:
            break
        token = f"&from={page['end']}"
    listed = await bob.call("GET", f"{V1}/rooms/{room}/relations/{root}")
    assert [e["event_id"] for e in listed["chunk"]] == [edit, *early[::-1]]
    thread = await _thread(bob, room, root)
    assert thread["count"] == 2 and thread["latest_event"]["event_id"] == early[-1]
    event = await bob.call("GET", f"/rooms/{room}/event/{root}")
    assert event["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit

    # Live: a reply received from A joins the thread, a received redaction leaves it.
    late = await _send(alice, room, "late", _reply(root, "late"))
    await _until_count(bob, room, root, 3)
    await alice.call("PUT", f"/rooms/{room}/redact/{late}/red1", {})
    await _until_count(bob, room, root, 2)
    participated = await bob.call("GET", f"{V1}/rooms/{room}/threads?include=participated")
    assert participated["chunk"] == []
    assert [e["event_id"] for e in (await bob.call("GET", f"{V1}/rooms/{room}/threads"))["chunk"]] == [root]
