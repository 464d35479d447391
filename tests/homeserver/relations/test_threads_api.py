"""GET /rooms/{roomId}/threads: thread roots by latest activity, include=participated,
pagination, and history visibility."""

from __future__ import annotations

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    ids,
    invite,
    join,
    room_with_bob,
    send,
    set_visibility,
    user,
)
from tests.homeserver.relations.helpers import bundled, redact, reply_in_thread, threads


async def test_threads_by_latest_activity_with_summaries(api: Api) -> None:
    alice, bob, room = await room_with_bob(api)
    t1 = await send(api, room, alice, "t1")
    t2 = await send(api, room, bob, "t2")
    t3 = await send(api, room, alice, "t3")
    await send(api, room, alice, "no thread")
    await reply_in_thread(api, room, bob, t1, "a")
    await reply_in_thread(api, room, alice, t2, "b")
    await reply_in_thread(api, room, alice, t3, "c")
    await reply_in_thread(api, room, alice, t1, "d")  # t1 is now the most recent
    page = await threads(api, room, alice)
    assert ids(page["chunk"]) == [t1, t3, t2]
    assert bundled(page["chunk"][0])["m.thread"]["count"] == 2
    assert "next_batch" not in page
    # bob replied in t1 and started t2.
    assert ids((await threads(api, room, bob, include="participated"))["chunk"]) == [t1, t2]
    await threads(api, room, bob, include="mine", expect=400)


async def test_threads_pagination(api: Api) -> None:
    alice = await user(api, "alice")
    room = await create(api, alice)
    roots = [await send(api, room, alice, f"root {i}") for i in range(5)]
    for root in roots:
        await reply_in_thread(api, room, alice, root, "r")
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    for _ in range(10):
        page = await threads(api, room, alice, **params)
        seen += ids(page["chunk"])
        if "next_batch" not in page:
            break
        params["from"] = page["next_batch"]
    assert seen == roots[::-1]


async def test_threads_respect_visibility_and_redaction(api: Api) -> None:
    alice, bob, eve = await user(api, "alice"), await user(api, "bob"), await user(api, "eve")
    room = await create(api, alice)
    await set_visibility(api, room, alice, "joined")
    hidden = await send(api, room, alice, "before bob")
    await reply_in_thread(api, room, alice, hidden, "r")
    await invite(api, room, alice, "bob")
    await join(api, room, bob)
    shown = await send(api, room, alice, "after bob")
    reply = await reply_in_thread(api, room, alice, shown, "r")
    await threads(api, room, eve, expect=403)
    assert ids((await threads(api, room, bob))["chunk"]) == [shown]
    assert ids((await threads(api, room, alice))["chunk"]) == [shown, hidden]
    await redact(api, room, alice, reply)
    assert ids((await threads(api, room, alice))["chunk"]) == [hidden]
