"""/search in a room of 10,000 messages: a rare word is found with its context, and
a common one pages through next_batch. (How fast is the benchmark's question,
scripts/bench_servers.py measures search beside Synapse; never a timed assertion here.)"""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import create, uid, user

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


async def test_search_in_a_room_of_ten_thousand_messages(db_overrides: dict[str, Any], make_api: Any) -> None:
    api: Api = await make_api(**db_overrides)
    alice = await user(api, "alice")
    room_id = await create(api, alice)
    hs = api.hs
    room = await hs.room_service.get_room(room_id)
    for i in range(10_000):
        body = f"message {i} {WORDS[i % 10]} {WORDS[(i * 7) % 10]}"
        if i == 6_543:
            body = "the lighthouse keeper's zeppelin arrives"
        await hs.room_service.create_event(room, uid("alice"), "m.room.message", {"msgtype": "m.text", "body": body})

    out: Any = await api.post("search", {"search_categories": {"room_events": {
        "search_term": "zeppelin", "event_context": {"before_limit": 2, "after_limit": 2, "include_profile": True},
    }}}, token=alice)
    res = out["search_categories"]["room_events"]
    assert [r["result"]["content"]["body"] for r in res["results"]] == ["the lighthouse keeper's zeppelin arrives"]
    ctx = res["results"][0]["context"]
    assert [e["content"]["body"] for e in ctx["events_before"]] == [
        f"message {i} {WORDS[i % 10]} {WORDS[(i * 7) % 10]}" for i in (6_542, 6_541)
    ]
    assert [e["content"]["body"] for e in ctx["events_after"]] == [
        f"message {i} {WORDS[i % 10]} {WORDS[(i * 7) % 10]}" for i in (6_544, 6_545)
    ]
    assert uid("alice") in ctx["profile_info"]

    out = await api.post("search", {"search_categories": {"room_events": {
        "search_term": "golf", "order_by": "recent", "event_context": {},
    }}}, token=alice)
    res = out["search_categories"]["room_events"]
    assert len(res["results"]) == 10 and res["next_batch"] and res["count"] > 10
    golf = [i for i in reversed(range(10_000)) if "golf" in (WORDS[i % 10], WORDS[(i * 7) % 10]) and i != 6_543]
    assert [r["result"]["content"]["body"].split()[1] for r in res["results"]] == [str(i) for i in golf[:10]]
    out = await api.post(f"search?next_batch={res['next_batch']}", {"search_categories": {"room_events": {
        "search_term": "golf", "order_by": "recent", "event_context": {},
    }}}, token=alice)
    page2 = out["search_categories"]["room_events"]["results"]
    assert [r["result"]["content"]["body"].split()[1] for r in page2] == [str(i) for i in golf[10:20]]


async def test_hidden_matches_are_read_a_bounded_number_at_a_time(api: Api) -> None:
    """A late joiner under "joined" visibility, with 1,500 matches hidden from them: each
    request reads a bounded number of matches, and walking next_batch ends with only
    what they may see."""
    from homeserver.search.service import MAX_SCAN
    from tests.homeserver.api.reading_helpers import join, send, set_visibility

    alice, bob = await user(api, "alice"), await user(api, "bob")
    room_id = await create(api, alice, preset="public_chat")
    await set_visibility(api, room_id, alice, "joined")
    room = await api.hs.room_service.get_room(room_id)
    for i in range(1_500):
        await api.hs.room_service.create_event(
            room, uid("alice"), "m.room.message", {"msgtype": "m.text", "body": f"hidden yak {i}"}
        )
    await join(api, room_id, bob)
    await send(api, room_id, alice, "visible yak")
    for order in ("rank", "recent"):
        found: list[str] = []
        token = None
        pages = 0
        while True:
            path = "search" + (f"?next_batch={token}" if token else "")
            out: Any = await api.post(path, {"search_categories": {"room_events": {
                "search_term": "yak", "order_by": order}}}, token=bob)
            res = out["search_categories"]["room_events"]
            pages += 1
            found += [r["result"]["content"]["body"] for r in res["results"]]
            assert res["count"] <= 1
            token = res.get("next_batch")
            if token is None:
                break
        assert found == ["visible yak"]
        assert pages <= 1_501 // MAX_SCAN + 1
