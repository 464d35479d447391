"""Push rules over the client API: listing, creating and ordering rules, enabling and
re-acting server defaults, the spec's errors, m.push_rules in /sync, and persistence."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.push.defaults import KINDS
from homeserver.server import HomeServer
from tests.conftest import Api
from tests.homeserver.api.reading_helpers import (
    create,
    invite,
    join,
    room_with_bob,
    send,
    uid,
    user,
)

ALICE = uid("alice")


def rule_path(kind: str, rule_id: str, suffix: str = "", query: str = "") -> str:
    return f"pushrules/global/{kind}/{quote(rule_id, safe='')}{suffix}{query}"


async def ids(api: Api, token: str, kind: str, *, user_only: bool = False) -> list[str]:
    rules = (await api.get("pushrules/global/", token=token))[kind]
    return [r["rule_id"] for r in rules if not (user_only and r["default"])]


async def put_rule(api: Api, token: str, kind: str, rule_id: str, body: dict[str, Any] | None = None,
                   query: str = "", expect: int = 200) -> Any:
    body = body if body is not None else {"actions": ["notify"]}
    return (await api.request("PUT", rule_path(kind, rule_id, query=query), body, token=token, expect=expect))[1]


async def test_get_all_rules_defaults(api: Api) -> None:
    alice = await user(api, "alice")
    body = await api.get("pushrules/", token=alice)
    assert list(body) == ["global"]
    ruleset = body["global"]
    assert set(ruleset) == set(KINDS)
    assert await api.get("pushrules/global/", token=alice) == ruleset
    override = [r["rule_id"] for r in ruleset["override"]]
    assert override[0] == ".m.rule.master"
    for rid in (".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
                ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone",
                ".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits"):
        assert rid in override
    assert ruleset["override"][0] == {"rule_id": ".m.rule.master", "default": True, "enabled": False,
                                      "conditions": [], "actions": []}
    assert ruleset["content"] == [{
        "rule_id": ".m.rule.contains_user_name", "default": True, "enabled": True, "pattern": "alice",
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}],
    }]
    assert ruleset["room"] == [] and ruleset["sender"] == []
    assert [r["rule_id"] for r in ruleset["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted",
    ]
    invite = next(r for r in ruleset["override"] if r["rule_id"] == ".m.rule.invite_for_me")
    assert {"key": "state_key", "kind": "event_match", "pattern": ALICE} in invite["conditions"]
    # the legacy r0 prefix serves the same
    assert await api.get("/_matrix/client/r0/pushrules/", token=alice) == body


async def test_requires_auth(api: Api) -> None:
    for method, path in (("GET", "pushrules/"), ("GET", "pushrules/global/"),
                         ("GET", rule_path("override", ".m.rule.master")),
                         ("PUT", rule_path("override", "x")), ("DELETE", rule_path("override", "x")),
                         ("PUT", rule_path("override", "x", "/enabled"))):
        _, err = await api.request(method, path, {"actions": []} if method == "PUT" else None, expect=401)
        assert err["errcode"] == "M_MISSING_TOKEN"


async def test_create_get_and_replace_override_rule(api: Api) -> None:
    alice = await user(api, "alice")
    conditions = [{"kind": "event_match", "key": "content.body", "pattern": "beer"},
                  {"kind": "room_member_count", "is": "<=10"}]
    actions = ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}]
    assert await put_rule(api, alice, "override", "beer", {"conditions": conditions, "actions": actions}) == {}
    rule = await api.get(rule_path("override", "beer"), token=alice)
    assert rule == {"rule_id": "beer", "default": False, "enabled": True, "conditions": conditions, "actions": actions}
    # user overrides come after master but before the other server defaults
    assert (await ids(api, alice, "override"))[:3] == [".m.rule.master", "beer", ".m.rule.suppress_notices"]
    # without conditions, an override rule has none (and always matches)
    await put_rule(api, alice, "underride", "all", {"actions": []})
    assert (await api.get(rule_path("underride", "all"), token=alice))["conditions"] == []
    # replacing keeps its place and its enabled state, takes the new definition
    await put_rule(api, alice, "override", "second")
    await api.put(rule_path("override", "beer", "/enabled"), {"enabled": False}, token=alice)
    await put_rule(api, alice, "override", "beer", {"conditions": [], "actions": ["dont_notify"]})
    assert await ids(api, alice, "override", user_only=True) == ["second", "beer"]
    rule = await api.get(rule_path("override", "beer"), token=alice)
    assert rule == {"rule_id": "beer", "default": False, "enabled": False, "conditions": [], "actions": ["dont_notify"]}


async def test_content_room_and_sender_rules(api: Api) -> None:
    alice = await user(api, "alice")
    await put_rule(api, alice, "content", "cake", {"pattern": "cake*lie", "actions": ["notify"],
                                                   "conditions": [{"kind": "ignored"}]})
    assert await api.get(rule_path("content", "cake"), token=alice) == {
        "rule_id": "cake", "default": False, "enabled": True, "pattern": "cake*lie", "actions": ["notify"]}
    assert await ids(api, alice, "content") == ["cake", ".m.rule.contains_user_name"]
    _, err = await api.request("PUT", rule_path("content", "nopattern"), {"actions": []}, token=alice, expect=400)
    assert err["errcode"] == "M_MISSING_PARAM"
    _, err = await api.request("PUT", rule_path("content", "bad"), {"actions": [], "pattern": 3}, token=alice, expect=400)
    assert err["errcode"] == "M_BAD_JSON"
    room = "!dj234r78wl45Gh4D:matrix.org"
    await put_rule(api, alice, "room", room, {"actions": []})
    assert await api.get(rule_path("room", room), token=alice) == {
        "rule_id": room, "default": False, "enabled": True, "actions": []}
    await put_rule(api, alice, "sender", "@spambot:matrix.org", {"actions": []})
    assert await ids(api, alice, "sender") == ["@spambot:matrix.org"]
    for kind, rid in (("room", "not-a-room"), ("sender", "spambot")):
        _, err = await api.request("PUT", rule_path(kind, rid), {"actions": []}, token=alice, expect=400)
        assert err["errcode"] == "M_INVALID_PARAM"


async def test_before_and_after(api: Api) -> None:
    alice = await user(api, "alice")
    for rid in ("c", "b", "a"):  # each new rule goes to the top
        await put_rule(api, alice, "override", rid)
    assert await ids(api, alice, "override", user_only=True) == ["a", "b", "c"]
    await put_rule(api, alice, "override", "x", query="?before=b")
    assert await ids(api, alice, "override", user_only=True) == ["a", "x", "b", "c"]
    await put_rule(api, alice, "override", "y", query="?after=c")
    assert await ids(api, alice, "override", user_only=True) == ["a", "x", "b", "c", "y"]
    await put_rule(api, alice, "override", "z", query="?after=a")
    assert await ids(api, alice, "override", user_only=True) == ["a", "z", "x", "b", "c", "y"]
    # both given: 'before' decides
    await put_rule(api, alice, "override", "w", query="?before=a&after=y")
    assert await ids(api, alice, "override", user_only=True) == ["w", "a", "z", "x", "b", "c", "y"]
    # an existing rule moves
    await put_rule(api, alice, "override", "y", query="?before=w")
    assert await ids(api, alice, "override", user_only=True) == ["y", "w", "a", "z", "x", "b", "c"]
    await put_rule(api, alice, "override", "y", query="?after=c")
    assert await ids(api, alice, "override", user_only=True) == ["w", "a", "z", "x", "b", "c", "y"]
    # kinds are separate: no anchor across kinds
    err = await put_rule(api, alice, "underride", "u", query="?before=a", expect=400)
    assert err["errcode"] == "M_UNKNOWN" and "a" in err["error"]
    err = await put_rule(api, alice, "override", "n", query="?after=nope", expect=400)
    assert err["errcode"] == "M_UNKNOWN"
    # not relative to server-default rules, nor to itself
    err = await put_rule(api, alice, "override", "n", query="?after=.m.rule.master", expect=400)
    assert err["errcode"] == "M_UNKNOWN"
    err = await put_rule(api, alice, "override", "a", query="?before=a", expect=400)
    assert err["errcode"] == "M_UNKNOWN"
    # failed placements changed nothing
    assert await ids(api, alice, "override", user_only=True) == ["w", "a", "z", "x", "b", "c", "y"]
    assert await ids(api, alice, "underride", user_only=True) == []
    # deleting keeps the order of the rest
    await api.request("DELETE", rule_path("override", "z"), token=alice)
    await put_rule(api, alice, "override", "v", query="?after=a")
    assert await ids(api, alice, "override", user_only=True) == ["w", "a", "v", "x", "b", "c", "y"]


async def test_put_errors(api: Api) -> None:
    alice = await user(api, "alice")
    cases: list[tuple[str, str, Any, int, str]] = [
        ("override", ".m.rule.master", {"actions": []}, 400, "M_INVALID_PARAM"),  # server-default: not replaceable
        ("override", ".mine", {"actions": []}, 400, "M_INVALID_PARAM"),  # '.' is reserved
        ("override", "back\\slash", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("override", "a/b", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("nonsense", "x", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("override", "x", {}, 400, "M_MISSING_PARAM"),
        ("override", "x", {"actions": "notify"}, 400, "M_BAD_JSON"),
        ("override", "x", {"actions": ["bogus"]}, 400, "M_BAD_JSON"),
        ("override", "x", {"actions": [{"value": 1}]}, 400, "M_BAD_JSON"),
        ("override", "x", {"actions": [], "conditions": {}}, 400, "M_BAD_JSON"),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]}, 400, "M_BAD_JSON"),
        ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count", "is": "many"}]}, 400, "M_BAD_JSON"),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "a", "value": {}}]}, 400, "M_BAD_JSON"),
    ]
    for kind, rid, body, status, errcode in cases:
        _, err = await api.request("PUT", rule_path(kind, rid), body, token=alice, expect=status)
        assert err["errcode"] == errcode, (kind, rid, body, err)
    _, err = await api.request("PUT", rule_path("override", "x"), data="not json", token=alice, expect=400)
    assert err["errcode"] == "M_NOT_JSON"
    assert await ids(api, alice, "override", user_only=True) == []
    # Unknown condition kinds are accepted (they never match).
    await put_rule(api, alice, "override", "future", {"actions": ["notify"], "conditions": [{"kind": "org.example.new"}]})


async def test_get_and_delete_errors(api: Api) -> None:
    alice = await user(api, "alice")
    for path in (rule_path("override", "nope"), rule_path("underride", ".m.rule.master"),
                 rule_path("override", "nope", "/enabled"), rule_path("override", "nope", "/actions")):
        _, err = await api.request("GET", path, token=alice, expect=404)
        assert err["errcode"] == "M_NOT_FOUND", path
    _, err = await api.request("GET", rule_path("nonsense", "x"), token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"
    _, err = await api.request("DELETE", rule_path("override", "nope"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("DELETE", rule_path("override", ".m.rule.nothing"), token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"
    for kind, rid in (("override", ".m.rule.master"), ("underride", ".m.rule.message"),
                      ("content", ".m.rule.contains_user_name")):
        _, err = await api.request("DELETE", rule_path(kind, rid), token=alice, expect=403)
        assert err["errcode"] == "M_FORBIDDEN"
    assert ".m.rule.master" in await ids(api, alice, "override")
    # A user rule: delete once, then it is gone.
    await put_rule(api, alice, "sender", "@x:test.local")
    assert await api.request("DELETE", rule_path("sender", "@x:test.local"), token=alice) == (200, {})
    await api.request("GET", rule_path("sender", "@x:test.local"), token=alice, expect=404)
    await api.request("DELETE", rule_path("sender", "@x:test.local"), token=alice, expect=404)


async def test_enable_and_disable(api: Api) -> None:
    alice = await user(api, "alice")
    assert await api.get(rule_path("override", ".m.rule.master", "/enabled"), token=alice) == {"enabled": False}
    assert await api.put(rule_path("override", ".m.rule.master", "/enabled"), {"enabled": True}, token=alice) == {}
    assert await api.get(rule_path("override", ".m.rule.master", "/enabled"), token=alice) == {"enabled": True}
    await api.put(rule_path("underride", ".m.rule.message", "/enabled"), {"enabled": False}, token=alice)
    rule = await api.get(rule_path("underride", ".m.rule.message"), token=alice)
    assert rule["enabled"] is False and rule["default"] is True and rule["actions"] == ["notify"]
    await api.put(rule_path("underride", ".m.rule.message", "/enabled"), {"enabled": True}, token=alice)
    assert (await api.get(rule_path("underride", ".m.rule.message"), token=alice))["enabled"] is True
    # user rules
    await put_rule(api, alice, "room", "!r:test.local")
    await api.put(rule_path("room", "!r:test.local", "/enabled"), {"enabled": False}, token=alice)
    assert await api.get(rule_path("room", "!r:test.local", "/enabled"), token=alice) == {"enabled": False}
    # errors
    for body, errcode in (({}, "M_MISSING_PARAM"), ({"enabled": "yes"}, "M_BAD_JSON")):
        _, err = await api.request("PUT", rule_path("override", ".m.rule.master", "/enabled"), body, token=alice, expect=400)
        assert err["errcode"] == errcode
    for kind, rid in (("override", "nope"), ("underride", ".m.rule.master"), ("override", ".m.rule.nothing")):
        _, err = await api.request("PUT", rule_path(kind, rid, "/enabled"), {"enabled": True}, token=alice, expect=404)
        assert err["errcode"] == "M_NOT_FOUND"
    _, err = await api.request("PUT", rule_path("nonsense", "x", "/enabled"), {"enabled": True}, token=alice, expect=400)
    assert err["errcode"] == "M_INVALID_PARAM"


async def test_actions(api: Api) -> None:
    alice = await user(api, "alice")
    assert await api.get(rule_path("underride", ".m.rule.message", "/actions"), token=alice) == {"actions": ["notify"]}
    new = ["notify", {"set_tweak": "sound", "value": "bing"}, {"set_tweak": "highlight", "value": False}]
    assert await api.put(rule_path("underride", ".m.rule.message", "/actions"), {"actions": new}, token=alice) == {}
    assert await api.get(rule_path("underride", ".m.rule.message", "/actions"), token=alice) == {"actions": new}
    rule = await api.get(rule_path("underride", ".m.rule.message"), token=alice)
    assert rule["default"] is True and rule["enabled"] is True and rule["actions"] == new
    # changing actions leaves enabled alone, and vice versa
    await api.put(rule_path("underride", ".m.rule.message", "/enabled"), {"enabled": False}, token=alice)
    assert (await api.get(rule_path("underride", ".m.rule.message"), token=alice))["actions"] == new
    await put_rule(api, alice, "content", "tea", {"pattern": "tea", "actions": ["notify"]})
    await api.put(rule_path("content", "tea", "/actions"), {"actions": ["dont_notify"]}, token=alice)
    assert await api.get(rule_path("content", "tea", "/actions"), token=alice) == {"actions": ["dont_notify"]}
    for body, errcode in (({}, "M_MISSING_PARAM"), ({"actions": "notify"}, "M_BAD_JSON"), ({"actions": [5]}, "M_BAD_JSON")):
        _, err = await api.request("PUT", rule_path("content", "tea", "/actions"), body, token=alice, expect=400)
        assert err["errcode"] == errcode
    _, err = await api.request("PUT", rule_path("content", "nope", "/actions"), {"actions": []}, token=alice, expect=404)
    assert err["errcode"] == "M_NOT_FOUND"


async def test_rules_are_per_user(api: Api) -> None:
    alice = await user(api, "alice")
    bob = await user(api, "bob")
    await put_rule(api, alice, "override", "mine")
    await api.put(rule_path("override", ".m.rule.master", "/enabled"), {"enabled": True}, token=alice)
    assert await ids(api, bob, "override", user_only=True) == []
    assert await api.get(rule_path("override", ".m.rule.master", "/enabled"), token=bob) == {"enabled": False}
    await api.request("GET", rule_path("override", "mine"), token=bob, expect=404)
    await api.request("DELETE", rule_path("override", "mine"), token=bob, expect=404)
    bob_rules = await api.get("pushrules/global/", token=bob)
    assert bob_rules["content"][0]["pattern"] == "bob"


async def test_rule_ids_with_special_characters(api: Api) -> None:
    alice = await user(api, "alice")
    for rid in ("with space", "ünïcødé", "a:b@c!d", "#alias:x"):
        await put_rule(api, alice, "override", rid)
        assert (await api.get(rule_path("override", rid), token=alice))["rule_id"] == rid
    assert await ids(api, alice, "override", user_only=True) == ["#alias:x", "a:b@c!d", "ünïcødé", "with space"]


async def test_every_rule_id_the_spec_allows(api: Api) -> None:
    """Room rules are named by room ID, sender rules by user ID, other kinds by any
    string without '/' or '\\' that does not start with '.': each is created, read,
    enabled, re-acted, placed and deleted at its URL-escaped path."""
    alice = await user(api, "alice")
    room_id, sender = "!dj234r78wl45Gh4D:matrix.org", "@spam.bot_=-x:example.com:8448"
    cases = [("room", room_id), ("sender", "@spam.bot:example.com"), ("sender", "@x:[::1]:8448"),
             ("override", "#alias:example.com"), ("override", "com.example.rule"), ("override", "a.b.c."),
             ("override", "50% off?&x=1"), ("underride", "tab\tand+plus"), ("content", "émoji 🎉"),
             ("override", "!looks-like-a-room:x"), ("override", "enabled"), ("override", "actions")]
    for kind, rid in cases:
        body: dict[str, Any] = {"actions": ["notify"], **({"pattern": "cake"} if kind == "content" else {})}
        assert await put_rule(api, alice, kind, rid, body) == {}, (kind, rid)
        got = await api.get(rule_path(kind, rid), token=alice)
        assert got["rule_id"] == rid and got["default"] is False and got["enabled"] is True, (kind, rid)
        assert await api.put(rule_path(kind, rid, "/enabled"), {"enabled": False}, token=alice) == {}
        assert await api.get(rule_path(kind, rid, "/enabled"), token=alice) == {"enabled": False}
        actions = ["notify", {"set_tweak": "sound", "value": rid}]
        assert await api.put(rule_path(kind, rid, "/actions"), {"actions": actions}, token=alice) == {}
        assert await api.get(rule_path(kind, rid, "/actions"), token=alice) == {"actions": actions}
    assert await ids(api, alice, "override", user_only=True) == [
        rid for kind, rid in reversed(cases) if kind == "override"]
    # A user ID in a path needs no escaping of '@', '!' or ':' (clients send them raw).
    raw = f"pushrules/global/room/{room_id}"
    assert (await api.get(raw, token=alice))["rule_id"] == room_id
    assert await api.get(raw + "/enabled", token=alice) == {"enabled": False}
    # before/after name any of those IDs (URL-escaped in the query).
    await put_rule(api, alice, "override", "first", query=f"?before={quote('#alias:example.com', safe='')}")
    await put_rule(api, alice, "override", "last", query=f"?after={quote('50% off?&x=1', safe='')}")
    await put_rule(api, alice, "sender", sender, query=f"?after={quote('@x:[::1]:8448', safe='')}")
    order = await ids(api, alice, "override", user_only=True)
    assert order.index("first") == order.index("#alias:example.com") - 1
    assert order.index("last") == order.index("50% off?&x=1") + 1
    assert await ids(api, alice, "sender") == ["@x:[::1]:8448", sender, "@spam.bot:example.com"]
    for kind, rid in [*cases, ("sender", sender)]:
        assert await api.request("DELETE", rule_path(kind, rid), token=alice) == (200, {}), (kind, rid)
        await api.request("GET", rule_path(kind, rid), token=alice, expect=404)


async def test_actions_come_back_as_stored(api: Api) -> None:
    """Whatever actions a client stores (tweaks with any value, the historical
    dont_notify and coalesce, which the spec says to ignore rather than reject) are
    what it reads back, from the rule, /actions, the ruleset and m.push_rules."""
    alice = await user(api, "alice")
    stored = [
        ["notify", {"set_tweak": "sound", "value": "default"}],
        ["dont_notify"],
        ["coalesce", "notify", {"set_tweak": "highlight", "value": False}],
        [{"set_tweak": "org.example.flash", "value": {"colour": "red", "ms": [100, 200]}}, "notify"],
        [],
    ]
    for i, actions in enumerate(stored):
        await put_rule(api, alice, "override", f"r{i}", {"actions": actions, "conditions": []})
        assert (await api.get(rule_path("override", f"r{i}"), token=alice))["actions"] == actions
        assert await api.get(rule_path("override", f"r{i}", "/actions"), token=alice) == {"actions": actions}
    ruleset = await api.get("pushrules/global/", token=alice)
    assert {r["rule_id"]: r["actions"] for r in ruleset["override"] if not r["default"]} == {
        f"r{i}": a for i, a in enumerate(stored)}
    content = await api.hs.account_data.get_global(ALICE, "m.push_rules")
    assert content == {"global": ruleset}
    # A server-default rule keeps a historical action as given too.
    await api.put(rule_path("underride", ".m.rule.message", "/actions"), {"actions": ["dont_notify"]}, token=alice)
    assert await api.get(rule_path("underride", ".m.rule.message", "/actions"), token=alice) == {"actions": ["dont_notify"]}


async def test_rules_named_by_room_and_sender_decide_notifications(api: Api) -> None:
    """Evaluation reads room and sender rules by their IDs: a room rule with a
    highlight notifies with it; a sender rule of only the historical dont_notify
    silences that sender (the spec: equivalent to an empty actions array)."""
    alice, bob, room = await room_with_bob(api)
    other = await create(api, alice)
    await invite(api, other, alice, "bob")
    await join(api, other, bob)
    highlight = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    await put_rule(api, alice, "room", room, {"actions": highlight})
    await send(api, room, bob, "in the room with a rule")
    await send(api, other, bob, "in the other room")
    notes = (await api.get("notifications", token=alice))["notifications"]
    by_room = {n["room_id"]: n for n in notes}
    assert by_room[room]["actions"] == highlight and by_room[room]["event"]["content"]["body"] == "in the room with a rule"
    assert by_room[other]["actions"] == ["notify", {"set_tweak": "sound", "value": "default"}]  # .m.rule.room_one_to_one
    await put_rule(api, alice, "sender", uid("bob"), {"actions": ["dont_notify"]})
    await send(api, other, bob, "silenced")
    await send(api, room, bob, "room rules come before sender rules")
    bodies = [n["event"]["content"]["body"] for n in (await api.get("notifications", token=alice))["notifications"]]
    assert "silenced" not in bodies and "room rules come before sender rules" in bodies


def _push_rules_event(body: dict[str, Any]) -> dict[str, Any] | None:
    events = body.get("account_data", {}).get("events", [])
    found = [e for e in events if e["type"] == "m.push_rules"]
    assert len(found) <= 1
    return found[0] if found else None


async def test_sync_delivers_push_rules(api: Api) -> None:
    alice = await user(api, "alice")
    initial = await api.get("sync", token=alice)
    event = _push_rules_event(initial)
    assert event is not None
    assert event["content"] == {"global": await api.get("pushrules/global/", token=alice)}
    since = initial["next_batch"]
    idle = await api.get(f"sync?since={since}", token=alice)
    assert _push_rules_event(idle) is None and idle["next_batch"] == since
    # A change wakes a waiting sync, which carries the whole new ruleset.
    waiting = asyncio.ensure_future(api.get(f"sync?since={since}&timeout=20000", token=alice))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await put_rule(api, alice, "override", "new")
    body = await asyncio.wait_for(waiting, 5)
    event = _push_rules_event(body)
    assert event is not None
    assert [r["rule_id"] for r in event["content"]["global"]["override"]][:2] == [".m.rule.master", "new"]
    since = body["next_batch"]
    for change in (
        lambda: api.put(rule_path("override", "new", "/enabled"), {"enabled": False}, token=alice),
        lambda: api.put(rule_path("underride", ".m.rule.message", "/actions"), {"actions": []}, token=alice),
        lambda: api.request("DELETE", rule_path("override", "new"), token=alice),
    ):
        await change()
        body = await api.get(f"sync?since={since}", token=alice)
        event = _push_rules_event(body)
        assert event is not None and event["content"] == {"global": await api.get("pushrules/global/", token=alice)}
        since = body["next_batch"]
    # Failed changes publish nothing.
    await api.request("DELETE", rule_path("override", "new"), token=alice, expect=404)
    idle = await api.get(f"sync?since={since}", token=alice)
    assert _push_rules_event(idle) is None
    # Another user's change is not ours to see.
    bob = await user(api, "bob")
    await put_rule(api, bob, "override", "bobs")
    assert _push_rules_event(await api.get(f"sync?since={since}", token=alice)) is None
    # Every initial sync carries the current rules.
    again = _push_rules_event(await api.get("sync", token=alice))
    assert again is not None and again["content"] == {"global": await api.get("pushrules/global/", token=alice)}


async def test_persists_across_restart(db_overrides: dict[str, Any], make_hs: Any) -> None:
    hs: HomeServer = await make_hs(**db_overrides)
    service = hs.push_rules
    await service.put_rule(ALICE, "override", "one", {"actions": ["notify"], "conditions": []})
    await service.put_rule(ALICE, "override", "two", {"actions": []}, after="one")
    await service.put_rule(ALICE, "content", "c", {"actions": ["notify"], "pattern": "tea"})
    await service.set_enabled(ALICE, "override", ".m.rule.master", True)
    await service.set_actions(ALICE, "underride", ".m.rule.call", ["notify"])
    await service.set_enabled(ALICE, "override", "two", False)
    before = await service.ruleset(ALICE)
    await hs.stop()
    again: HomeServer = await make_hs(**db_overrides)
    assert await again.push_rules.ruleset(ALICE) == before
    after = await again.push_rules.ruleset(ALICE)
    assert [r["rule_id"] for r in after["override"][:3]] == [".m.rule.master", "one", "two"]
    assert after["override"][0]["enabled"] is True and after["override"][2]["enabled"] is False
    assert after["underride"][0]["actions"] == ["notify"]
    # Moving and deleting work on this engine too.
    await again.push_rules.put_rule(ALICE, "override", "two", {"actions": []}, before="one")
    await again.push_rules.delete_rule(ALICE, "override", "one")
    assert [r["rule_id"] for r in (await again.push_rules.ruleset(ALICE))["override"][:3]] == [
        ".m.rule.master", "two", ".m.rule.suppress_notices"]


async def test_concurrent_changes_end_consistent(api: Api) -> None:
    alice = await user(api, "alice")
    await asyncio.gather(*(put_rule(api, alice, "override", f"r{i}") for i in range(10)))
    order = await ids(api, alice, "override", user_only=True)
    assert sorted(order) == [f"r{i}" for i in range(10)]
    # The last m.push_rules written matches what the API serves.
    stored = await api.hs.account_data.get_global(ALICE, "m.push_rules")
    assert stored == {"global": await api.get("pushrules/global/", token=alice)}


@pytest.mark.parametrize("path", ["pushrules/device/override/x", "pushrules/global/override/"])
async def test_unknown_paths(api: Api, path: str) -> None:
    alice = await user(api, "alice")
    _, err = await api.request("GET", path, token=alice, expect=404)
    assert err["errcode"] == "M_UNRECOGNIZED"
