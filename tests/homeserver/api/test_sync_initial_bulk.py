"""An initial sync reads its rooms in bulk (`RoomEventsStream._preload`): what it sends
must be exactly what the room-by-room path sends, for a room with a bit of everything
(edits, a thread, references, annotations, a redaction, state changes, the reader's
own transaction IDs), and the same after a restart, when no event is known to the
in-memory relation targets and which events to bundle is read from the database."""

from __future__ import annotations

from typing import Any

from homeserver.config import RESOURCES
from tests.conftest import Api, FakeClock, running_hs
from tests.homeserver.api.reading_helpers import create, join, put_state, send, uid, user
from tests.homeserver.relations.helpers import edit, react, redact, reference, reply_in_thread

FILTER = '{"room":{"timeline":{"limit":100}}}'


async def _varied_room(api: Api, alice: str, bob: str) -> str:
    room = await create(api, alice, preset="public_chat", name="varied")
    await join(api, room, bob)
    root = await send(api, room, alice, "root")
    await reply_in_thread(api, room, bob, root, "bob in thread")
    await reply_in_thread(api, room, alice, root, "alice in thread")
    edited = await send(api, room, bob, "typo")
    await edit(api, room, bob, edited, "fixed")
    await reference(api, room, alice, edited)
    await react(api, room, alice, edited, "+1")
    gone = await send(api, room, alice, "regret")
    await redact(api, room, alice, gone)
    await put_state(api, room, alice, "m.room.topic", {"topic": "varied topics"})
    await put_state(api, room, bob, "m.room.member", {"membership": "join", "displayname": "Bob"}, state_key=uid("bob"))
    await send(api, room, alice, "last")
    return room


def _bundled(entry: dict[str, Any]) -> dict[str, set[str]]:
    """Event ID -> the kinds of relation bundled with it."""
    return {
        e["event_id"]: set(e["unsigned"]["m.relations"]) for e in entry["timeline"]["events"]
        if "m.relations" in e["unsigned"]
    }


async def test_initial_sync_matches_room_by_room_and_after_restart(
    db_overrides: dict[str, Any], make_config: Any, aiohttp_client: Any, clock: FakeClock
) -> None:
    config = make_config(**db_overrides)
    async with running_hs(config, clock=clock) as hs:
        api = Api(await aiohttp_client(hs.build_app(list(RESOURCES))), hs)
        alice, bob = await user(api, "alice"), await user(api, "bob")
        before = (await api.get("sync", token=alice))["next_batch"]
        room = await _varied_room(api, alice, bob)
        initial = {t: (await api.get(f"sync?filter={FILTER}", token=t))["rooms"]["join"][room] for t in (alice, bob)}
        # Bob's join is new since `before`: his room is read room by room, not in bulk.
        incremental = (await api.get(f"sync?filter={FILTER}&since={before}", token=bob))["rooms"]["join"][room]
        await api.client.close()
    for entry in initial.values():
        kinds = _bundled(entry)
        assert sorted(map(sorted, kinds.values())) == [["m.reference", "m.replace"], ["m.thread"]]
        redacted = [e for e in entry["timeline"]["events"] if "redacted_because" in e["unsigned"]]
        assert len(redacted) == 1 and redacted[0]["content"] == {}
    own = [e["unsigned"].get("transaction_id") for e in initial[alice]["timeline"]["events"] if e["sender"] == uid("alice")]
    assert any(own) and not any(
        "transaction_id" in e["unsigned"] for e in initial[bob]["timeline"]["events"] if e["sender"] == uid("alice")
    )
    assert incremental["timeline"] == initial[bob]["timeline"]
    assert incremental["state"] == initial[bob]["state"]

    async with running_hs(config, clock=clock) as hs:
        api = Api(await aiohttp_client(hs.build_app(list(RESOURCES))), hs)
        for token in (alice, bob):
            again = (await api.get(f"sync?filter={FILTER}", token=token))["rooms"]["join"][room]
            assert again == initial[token]
        await api.client.close()
