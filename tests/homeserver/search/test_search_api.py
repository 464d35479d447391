"""POST /search on both engines: ranking and recent order, pagination across
next_batch (whole and per group), context with profiles, groupings, highlights,
include_state, redaction leaving the index, history visibility (non-members, late
joiners under "joined" and "invited"), hostile search terms and the spec's errors."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    leave,
    send,
    set_visibility,
    uid,
    user,
)


def body(term: str, **criteria: Any) -> dict[str, Any]:
    return {"search_categories": {"room_events": {"search_term": term, **criteria}}}


async def search(api: Api, token: str, term: str, next_batch: str | None = None, **criteria: Any) -> dict[str, Any]:
    path = "search" + (f"?next_batch={quote(next_batch)}" if next_batch else "")
    out = await api.post(path, body(term, **criteria), token=token)
    return out["search_categories"]["room_events"]  # type: ignore[no-any-return]


def bodies(res: dict[str, Any]) -> list[str]:
    return [r["result"]["content"].get("body") for r in res["results"]]


async def walk(api: Api, token: str, term: str, **criteria: Any) -> tuple[list[str], int]:
    """Every result over next_batch, and the pages it took."""
    out: list[str] = []
    token_ = None
    pages = 0
    while True:
        res = await search(api, token, term, token_, **criteria)
        pages += 1
        out.extend(bodies(res))
        token_ = res.get("next_batch")
        if token_ is None:
            return out, pages
        assert pages < 100


@pytest.fixture
async def db_api(db_overrides: dict[str, Any], make_api: Any) -> Api:
    return await make_api(**db_overrides)  # type: ignore[no-any-return]


async def test_rank_and_recent_order(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    await send(api, room, alice, "a long message that mentions the comet only once among many other words here")
    await send(api, room, alice, "comet comet comet")
    await send(api, room, alice, "nothing relevant")
    await send(api, room, alice, "the comet again, briefly")
    ranked = await search(api, alice, "comet")
    assert ranked["count"] == 3
    assert bodies(ranked)[0] == "comet comet comet"
    ranks = [r["rank"] for r in ranked["results"]]
    assert ranks == sorted(ranks, reverse=True)
    recent = await search(api, alice, "comet", order_by="recent")
    assert bodies(recent) == [
        "the comet again, briefly", "comet comet comet",
        "a long message that mentions the comet only once among many other words here",
    ]
    # Every word must match; stemming finds other forms; keys narrow by event type.
    assert bodies(await search(api, alice, "comet briefly")) == ["the comet again, briefly"]
    assert bodies(await search(api, alice, "comets")) != []
    assert (await search(api, alice, "comet", keys=["content.name"]))["results"] == []


async def test_pagination_over_next_batch(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    for i in range(25):
        await send(api, room, alice, f"pebble number {i}" + " filler" * (i % 4))
    for order in ("rank", "recent"):
        found, pages = await walk(api, alice, "pebble", order_by=order, filter={"limit": 10})
        assert pages == 3
        assert sorted(found) == sorted(f"pebble number {i}" + " filler" * (i % 4) for i in range(25))
    recent, _ = await walk(api, alice, "pebble", order_by="recent", filter={"limit": 7})
    assert recent == [f"pebble number {i}" + " filler" * (i % 4) for i in reversed(range(25))]
    # A token is for the order it came from.
    first = await search(api, alice, "pebble", order_by="recent", filter={"limit": 5})
    status, err = await api.request(
        "POST", f"search?next_batch={quote(first['next_batch'])}", body("pebble", order_by="rank"),
        token=alice, expect=400,
    )
    assert err["errcode"] == "M_INVALID_PARAM"
    forged = [{"o": "rank", "k": [1.0, 10**30]}, {"o": "rank", "k": ["nan", 1]}, {"o": "rank", "k": [1e300, 1]},
              {"o": "rank", "k": "x"}, {"o": "rank"}, [], "rank", {"o": "rank", "k": [1, 2], "r": 5}]
    for data in forged:
        token = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        status, err = await api.request("POST", f"search?next_batch={quote(token)}", body("pebble"), token=alice, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"
    for token in ("%00garbage", "!!!", "e30"):
        status, err = await api.request("POST", f"search?next_batch={token}", body("pebble"), token=alice, expect=400)


async def test_context_profiles_state_and_highlights(db_api: Api) -> None:
    api = db_api
    alice, bob = await user(api, "alice"), await user(api, "bob")
    await api.put(f"profile/{uid('bob')}/displayname", {"displayname": "Bobby"}, token=bob)
    room = await create(api, alice, preset="public_chat", name="Orbit")
    await join(api, room, bob)
    for i in range(4):
        await send(api, room, alice, f"before {i}")
    await send(api, room, bob, "Martians landed near the lighthouse")
    for i in range(4):
        await send(api, room, alice, f"after {i}")
    res = await search(
        api, alice, "martian", include_state=True,
        event_context={"before_limit": 2, "after_limit": 3, "include_profile": True},
    )
    assert bodies(res) == ["Martians landed near the lighthouse"]
    ctx = res["results"][0]["context"]
    assert [e["content"]["body"] for e in ctx["events_before"]] == ["before 3", "before 2"]
    assert [e["content"]["body"] for e in ctx["events_after"]] == ["after 0", "after 1", "after 2"]
    assert ctx["profile_info"][uid("bob")]["displayname"] == "Bobby"
    assert uid("alice") in ctx["profile_info"]
    assert ctx["start"].startswith("t") and ctx["end"].startswith("t")
    # The context tokens paginate /messages on from where the context stopped.
    older = await api.get(f"rooms/{room}/messages?dir=b&limit=1&from={ctx['start']}", token=alice)
    assert older["chunk"][0]["content"]["body"] == "before 1"
    assert "Martians" in res["highlights"] and "martian" in res["highlights"]
    state = res["state"][room]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "Orbit" for e in state)
    # Without event_context there is no context.
    assert "context" not in (await search(api, alice, "martian"))["results"][0]


async def test_groupings_and_group_pagination(db_api: Api) -> None:
    api = db_api
    alice, bob = await user(api, "alice"), await user(api, "bob")
    r1 = await create(api, alice, preset="public_chat")
    r2 = await create(api, alice, preset="public_chat")
    await join(api, r1, bob)
    for i in range(3):
        await send(api, r1, alice, f"kiwi one {i}")
        await send(api, r1, bob, f"kiwi bob {i}")
        await send(api, r2, alice, f"kiwi two {i}")
    res = await search(
        api, alice, "kiwi", order_by="recent", filter={"limit": 4},
        groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
    )
    groups = res["groups"]
    ids = [r["result"]["event_id"] for r in res["results"]]
    by_room = groups["room_id"]
    assert set(by_room) == {r1, r2}
    assert sorted(sum((g["results"] for g in by_room.values()), [])) == sorted(ids)
    assert sorted(g["order"] for g in by_room.values()) == [1, 2]
    assert set(groups["sender"]) <= {uid("alice"), uid("bob")}
    # A group's token goes on within that group only.
    token = by_room[r2]["next_batch"]
    rest, _ = [], None
    while token:
        page = await search(api, alice, "kiwi", token, order_by="recent", filter={"limit": 4},
                            groupings={"group_by": [{"key": "room_id"}]})
        assert all(r["result"]["room_id"] == r2 for r in page["results"])
        rest.extend(bodies(page))
        token = page.get("next_batch")
    first_r2 = [r["result"]["content"]["body"] for r in res["results"] if r["result"]["room_id"] == r2]
    assert sorted(first_r2 + rest) == ["kiwi two 0", "kiwi two 1", "kiwi two 2"]
    # filter.rooms narrows; not_senders excludes.
    only_r2 = await search(api, alice, "kiwi", filter={"rooms": [r2]})
    assert sorted(bodies(only_r2)) == ["kiwi two 0", "kiwi two 1", "kiwi two 2"]
    no_bob = await search(api, alice, "kiwi", filter={"not_senders": [uid("bob")], "limit": 50})
    assert len(no_bob["results"]) == 6 and all("bob" not in b for b in bodies(no_bob))


async def test_redaction_removes_from_index(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    secret = await send(api, room, alice, "the launch code is walrus")
    await send(api, room, alice, "walrus is also an animal")
    assert len((await search(api, alice, "walrus"))["results"]) == 2
    await api.put(f"rooms/{room}/redact/{secret}/r1", {}, token=alice)
    res = await search(api, alice, "walrus launch")
    assert res["results"] == [] and res["count"] == 0
    assert bodies(await search(api, alice, "walrus")) == ["walrus is also an animal"]


async def test_topic_and_name_are_searched(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice, name="Quasar lounge", topic="talk about nebulae")
    res = await search(api, alice, "quasar")
    assert [r["result"]["type"] for r in res["results"]] == ["m.room.name"]
    res = await search(api, alice, "nebulae", keys=["content.topic"])
    assert [r["result"]["type"] for r in res["results"]] == ["m.room.topic"]
    assert room == res["results"][0]["result"]["room_id"]


async def test_visibility_non_member_and_late_joiners(db_api: Api) -> None:
    api = db_api
    alice, bob, carol, mallory = [await user(api, n) for n in ("alice", "bob", "carol", "mallory")]
    rooms = {}
    for vis in ("joined", "invited"):
        room = await create(api, alice, preset="public_chat")
        await set_visibility(api, room, alice, vis)
        await send(api, room, alice, f"hidden {vis} narwhal")
        rooms[vis] = room
    # bob is invited to the "invited" room before the next message, then joins both.
    await invite(api, rooms["invited"], alice, "bob")
    await send(api, rooms["invited"], alice, "invited-era narwhal")
    await send(api, rooms["joined"], alice, "pre-join narwhal")
    for room in rooms.values():
        await join(api, room, bob)
        await send(api, room, alice, "visible narwhal")
    # carol joins the "joined" room, reads, and leaves: what came after is not hers.
    await join(api, rooms["joined"], carol)
    await send(api, rooms["joined"], alice, "carol-era narwhal")
    await leave(api, rooms["joined"], carol)
    await send(api, rooms["joined"], alice, "after-carol narwhal")

    everything, _ = await walk(api, alice, "narwhal", order_by="recent")
    assert len(everything) == 8
    seen, _ = await walk(api, bob, "narwhal", order_by="recent")
    assert sorted(seen) == sorted([
        "after-carol narwhal", "carol-era narwhal", "visible narwhal", "visible narwhal", "invited-era narwhal",
    ])
    res = await search(api, bob, "hidden narwhal")
    assert res == {"count": 0, "highlights": ["hidden", "narwhal"], "results": []}  # only its own words
    carol_seen, _ = await walk(api, carol, "narwhal", order_by="recent")
    assert carol_seen == ["carol-era narwhal"]
    res = await search(api, mallory, "narwhal")
    assert res == {"count": 0, "highlights": ["narwhal"], "results": []}
    # filter.rooms cannot reach a room the user is not in.
    res = await search(api, mallory, "narwhal", filter={"rooms": list(rooms.values())})
    assert res["results"] == []


HOSTILE = [
    '"', '""', "'", "*", "NEAR(a b)", "a OR b", "a AND NOT b", "-a", "^a", "a:b", "body:x", "(a", "a)",
    "{a b}", "a\x00b", "\x00", "\\", "%", "_", "a & b | !c", "a <-> b", "' OR 1=1 --", "\u202e\u0000x",
    "x" * 10_000, "word " * 2000, "\U0001f600", "a" + "\u0301" * 500,
]


async def test_hostile_terms_never_fail(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    await send(api, room, alice, "ordinary words, a OR b, body:x and NEAR(a b) \u202e")
    for term in HOSTILE:
        status, out = await api.request("POST", "search", body(term), token=alice, expect=None)
        assert status in (200, 400), (term[:40], status, out)
        if status == 400:
            assert out["errcode"] in ("M_INVALID_PARAM", "M_BAD_JSON")
    # Syntax only is nothing to search for.
    for term in ("", "   ", '"', "*", "\x00", "()"):
        status, out = await api.request("POST", "search", body(term), token=alice, expect=400)
    # Operators are words like any other.
    assert bodies(await search(api, alice, "a OR b")) != []
    assert (await search(api, alice, "ordinary -absentword"))["results"] == []  # "-" negates nothing
    # Hostile text in messages is indexed like any other.
    await send(api, room, alice, 'quote " NUL \x00 star * caret ^ zebra')
    assert len((await search(api, alice, "zebra"))["results"]) == 1


async def test_request_errors(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")

    async def code(payload: Any, status: int = 400) -> str:
        return (await api.request("POST", "search", payload, token=alice, expect=status))[1]["errcode"]  # type: ignore[no-any-return]

    assert await code({}) == "M_MISSING_PARAM"
    assert await code({"search_categories": []}) == "M_BAD_JSON"
    assert await code({"search_categories": {"rooms": {}}}) == "M_UNKNOWN"
    assert await code({"search_categories": {"room_events": {}}}) == "M_MISSING_PARAM"
    assert await code(body("x", keys=["content.secret"])) == "M_BAD_JSON"
    assert await code(body("x", keys="content.body")) == "M_BAD_JSON"
    assert await code(body("x", order_by="oldest")) == "M_BAD_JSON"
    assert await code(body("x", event_context={"before_limit": -1})) == "M_BAD_JSON"
    assert await code(body("x", groupings={"group_by": [{"key": "type"}]})) == "M_BAD_JSON"
    assert await code(body("x", filter={"limit": "ten"})) == "M_BAD_JSON"
    assert await code({"search_categories": {"room_events": {"search_term": 5}}}) == "M_BAD_JSON"
    status, _ = await api.request("POST", "search", body("x"), expect=401)
    # No category asked: nothing answered.
    assert await api.post("search", {"search_categories": {}}, token=alice) == {"search_categories": {}}


async def test_migration_indexes_events_stored_before_it(db_api: Api) -> None:
    """The migration that creates the index fills it from the events already stored."""
    from homeserver.storage.migrations import v019_event_search

    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice, name="Heron pond", topic="herons and egrets")
    await send(api, room, alice, "a heron flew by")
    gone = await send(api, room, alice, "heron secret")
    await send(api, room, alice, "nul \x00 heron")
    await api.put(f"rooms/{room}/redact/{gone}/r1", {}, token=alice)
    before = await search(api, alice, "heron", order_by="recent")
    assert len(before["results"]) == 4
    db = api.hs.db

    async def rebuild(txn: Any) -> None:
        await txn.execute("DELETE FROM event_search")
        for stmt in v019_event_search.populate(db.dialect):
            await txn.execute(stmt)

    await db.write(rebuild)
    after = await search(api, alice, "heron", order_by="recent")
    expected = [r["result"]["event_id"] for r in before["results"]]
    # An event whose JSON escapes NUL is left out (it is indexed when written live).
    expected = [e for r, e in zip(before["results"], expected, strict=True) if "\x00" not in r["result"]["content"].get("body", "")]
    assert [r["result"]["event_id"] for r in after["results"]] == expected


async def test_long_filter_lists(db_api: Api) -> None:
    """Filters naming more rooms or senders than a query binds still apply, to each match."""
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    other = await create(api, alice)
    await send(api, room, alice, "tapir here")
    await send(api, other, alice, "tapir there")
    many = [f"!r{i}:test.local" for i in range(40_000)]
    res = await search(api, alice, "tapir", filter={"rooms": [*many, room]})
    assert bodies(res) == ["tapir here"]
    res = await search(api, alice, "tapir", filter={"not_rooms": [*many, room]})
    assert bodies(res) == ["tapir there"]
    res = await search(api, alice, "tapir", filter={"senders": [f"@u{i}:x" for i in range(40_000)]})
    assert res["results"] == []
    # IDs no room or user can have are matched like any other.
    assert (await search(api, alice, "tapir", filter={"rooms": ["!a\x00:x"]}))["results"] == []
    assert len((await search(api, alice, "tapir", filter={"not_rooms": ["!a\x00:x"]}))["results"]) == 2
    assert (await search(api, alice, "tapir", filter={"senders": ["@\x00:x"]}))["results"] == []
    assert len((await search(api, alice, "tapir", filter={"not_senders": ["@\x00:x"]}))["results"]) == 2
    token = base64.urlsafe_b64encode(json.dumps({"o": "rank", "k": None, "r": "!\x00:x", "s": "@\x00"}).encode()).decode()
    assert (await search(api, alice, "tapir", token))["results"] == []
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode()
    await api.request("POST", f"search?next_batch={deep}", body("tapir"), token=alice, expect=400)


async def test_purged_room_leaves_the_index(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice, name="Doomed room")
    kept = await create(api, alice)
    await send(api, room, alice, "purged pangolin")
    await send(api, kept, alice, "kept pangolin")
    assert len((await search(api, alice, "pangolin"))["results"]) == 2
    await api.hs.room_admin.purge(room, force=True)
    count = await api.hs.db.fetchone("SELECT COUNT(*) FROM event_search")
    assert count is not None and count[0] == 1
    assert bodies(await search(api, alice, "pangolin")) == ["kept pangolin"]


async def test_encrypted_rooms_are_not_searched(db_api: Api) -> None:
    api = db_api
    alice = await user(api, "alice")
    plain = await create(api, alice)
    secret = await create(api, alice, initial_state=[
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
    ])
    await send(api, plain, alice, "open okapi")
    await send(api, secret, alice, "plaintext okapi in an encrypted room")
    assert bodies(await search(api, alice, "okapi")) == ["open okapi"]


async def test_results_carry_bundled_aggregations(db_api: Api) -> None:
    """Search results are served events like any other: a thread root found by search
    carries its m.thread aggregation, an edited message its m.replace."""
    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    root = await send(api, room, alice, "the quarterly budget thread")
    await api.put(f"rooms/{room}/send/m.room.message/t1", {
        "msgtype": "m.text", "body": "a reply",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }, token=alice)
    edited = await send(api, room, alice, "budget draft one")
    await api.put(f"rooms/{room}/send/m.room.message/e1", {
        "msgtype": "m.text", "body": "* budget draft two",
        "m.new_content": {"msgtype": "m.text", "body": "budget draft two"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": edited},
    }, token=alice)
    res = await search(api, alice, "budget", order_by="recent", event_context={"before_limit": 1, "after_limit": 1})
    by_id = {r["result"]["event_id"]: r["result"] for r in res["results"]}
    thread = by_id[root]["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 1 and thread["current_user_participated"] is True
    assert by_id[edited]["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]["body"] == "budget draft two"


async def test_an_event_indexed_again_replaces_its_text(db_api: Api) -> None:
    """Indexing an nid the index already holds (an event indexed again, a purged
    event's nid reused) replaces its text, in the same transaction as other writes:
    the old words no longer find it and the transaction's other rows stand."""
    from homeserver.storage.search import SearchStore

    api = db_api
    alice = await user(api, "alice")
    room = await create(api, alice)
    first = await send(api, room, alice, "walrus on the ice")
    await send(api, room, alice, "narwhal below")
    stored = await api.hs.room_service.get_event(first)
    assert stored is not None
    store = SearchStore(api.hs.db)

    async def reindex(txn: Any) -> None:
        await store.index_event(txn, stored.nid, "penguin on the ice")
        await txn.execute("INSERT INTO event_search_probe (x) VALUES (1)")

    await api.hs.db.write(lambda txn: txn.execute("CREATE TABLE event_search_probe (x INTEGER)"))
    await api.hs.db.write(reindex)
    assert bodies(await search(api, alice, "walrus")) == []
    assert [r["result"]["event_id"] for r in (await search(api, alice, "penguin"))["results"]] == [first]
    assert bodies(await search(api, alice, "narwhal")) == ["narwhal below"]
    assert await api.hs.db.fetchall("SELECT x FROM event_search_probe") == [(1,)]
