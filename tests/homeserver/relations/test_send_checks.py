"""The spec's checks of new relations sent by clients: no thread off an event with a
relation, no duplicate annotation (unless the first was redacted; a retransmission
of the first still answers with it)."""

from __future__ import annotations

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, room_with_bob, send, user
from tests.homeserver.relations.helpers import react, redact, reply_in_thread


async def test_no_thread_off_a_relation(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    root = await send(api, room, alice, "root")
    reply = await reply_in_thread(api, room, alice, root, "reply")
    like = await react(api, room, alice, root, "👍")
    for parent in (reply, like):
        _, err = await api.request("PUT", f"rooms/{room}/send/m.room.message/t{parent}", {
            "msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": parent},
        }, token=alice, expect=400)
        assert err["errcode"] == "M_UNKNOWN"
    # A rich reply (m.in_reply_to, no rel_type) may start a thread.
    rich = await send(api, room, alice, "rich", **{"m.relates_to": {"m.in_reply_to": {"event_id": root}}})
    await reply_in_thread(api, room, alice, rich, "fine")


async def test_duplicate_annotations(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    target = await send(api, room, alice, "target")
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": "👍"}}
    first = (await api.put(f"rooms/{room}/send/m.reaction/same", content, token=alice))["event_id"]
    # The same request again (a retransmission) answers with the same event.
    assert (await api.put(f"rooms/{room}/send/m.reaction/same", content, token=alice))["event_id"] == first
    _, err = await api.request("PUT", f"rooms/{room}/send/m.reaction/other", content, token=alice, expect=400)
    assert err["errcode"] == "M_DUPLICATE_ANNOTATION"
    # Another key, another user, or after redacting the first: accepted.
    await react(api, room, alice, target, "🎉")
    await react(api, room, bob, target, "👍")
    await redact(api, room, alice, first)
    await react(api, room, alice, target, "👍")
