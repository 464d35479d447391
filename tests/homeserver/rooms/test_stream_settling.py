"""An event that commits while a lower stream position (another room's write) is still
in flight cannot be seen yet: readers woken by it look, find the stream short of it,
and wait again. They must be woken once more when the lower position settles, or the
event reaches them only at their long poll's timeout (real server, real database)."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.stream import StreamTracker
from tests.conftest import ClientFactory


def test_callbacks_run_once_the_position_is_visible() -> None:
    stream = StreamTracker(10)
    low, high = stream.allocate(), stream.allocate()
    ran: list[str] = []
    assert stream.waits_below(high) and not stream.waits_below(low)
    stream.when_settled(high, lambda: ran.append("high"))
    stream.finish(high)
    assert ran == [] and stream.current == 10
    stream.finish(low)
    assert ran == ["high"] and stream.current == high
    stream.when_settled(high, lambda: ran.append("now"))  # already visible: at once
    assert ran == ["high", "now"]


async def test_reader_woken_again_when_a_lower_write_settles(db_overrides: dict[str, Any], make_api: ClientFactory) -> None:
    api = await make_api(**db_overrides)
    hs = api.hs
    alice = (await api.register("alice"))["access_token"]
    bob = await api.register("bob")
    room = (await api.post("createRoom", {"preset": "public_chat"}, token=alice))["room_id"]
    await api.post(f"rooms/{room}/join", {}, token=bob["access_token"])
    stream = hs.event_persister.stream
    in_flight = stream.allocate()  # another room's write, not committed yet

    first = hs.notifier.register(bob["user_id"])
    await api.put(f"rooms/{room}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"}, token=alice)
    assert first.woken
    assert stream.current < in_flight  # the message is not visible to readers yet
    hs.notifier.unregister(first)
    second = hs.notifier.register(bob["user_id"])  # bob looked, found nothing, waits again
    assert not second.woken
    stream.finish(in_flight)
    assert second.woken
    hs.notifier.unregister(second)
