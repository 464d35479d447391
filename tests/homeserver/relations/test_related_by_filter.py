"""Synapse's related_by_senders / related_by_rel_types filter fields (MSC3440) on
/messages and the sync timeline: only events with such relations."""

from __future__ import annotations

import json
from urllib.parse import quote

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import ids, messages, room_with_bob, send, uid
from tests.homeserver.relations.helpers import react, reply_in_thread


async def test_related_by_filters(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    bob_thread = await send(api, room, alice, "bob replies here")
    alice_thread = await send(api, room, alice, "alice replies here")
    liked = await send(api, room, alice, "bob likes this")
    await send(api, room, alice, "nothing")
    await reply_in_thread(api, room, bob, bob_thread, "b")
    await reply_in_thread(api, room, alice, alice_thread, "a")
    await react(api, room, bob, liked, "👍")

    async def only(filter_: dict[str, object]) -> list[str]:
        page = await messages(api, room, alice, dir="b", limit=50, filter=filter_)
        return ids(page["chunk"])

    assert await only({"related_by_rel_types": ["m.thread"]}) == [alice_thread, bob_thread]
    assert await only({"related_by_senders": [uid("bob")]}) == [liked, bob_thread]
    assert await only({"related_by_senders": [uid("bob")], "related_by_rel_types": ["m.thread"]}) == [bob_thread]
    await messages(api, room, alice, filter={"related_by_senders": "bob"}, expect=400)

    f = quote(json.dumps({"room": {"timeline": {"related_by_rel_types": ["m.annotation"]}}}))
    sync = await api.get(f"sync?filter={f}", token=alice)
    assert ids(sync["rooms"]["join"][room]["timeline"]["events"]) == [liked]
