"""The push rule evaluator against the spec: each condition kind, the glob and its
word boundaries, dotted keys, the predefined rules' outcomes and their order."""

from __future__ import annotations

import time
from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.push.defaults import KINDS, MASTER, build_ruleset, server_default_rules
from homeserver.push.evaluator import (
    CompiledRuleset,
    evaluate,
    highlights,
    lookup,
    notifies,
    split_key,
    tweak,
)
from homeserver.push.glob import glob_matches
from homeserver.push.service import validate_actions, validate_conditions
from homeserver.records.push_rules import DefaultRuleChange, UserRule

ME = "@alice:test.local"
OTHER = "@bob:test.local"
ROOM = "!room:test.local"


def ev(event_type: str = "m.room.message", sender: str = OTHER, **content: Any) -> dict[str, Any]:
    return {"type": event_type, "sender": sender, "room_id": ROOM, "content": content}


def msg(body: str, **content: Any) -> dict[str, Any]:
    return ev(msgtype="m.text", body=body, **content)


def run(event: dict[str, Any], ruleset: Any = None, *, members: int = 5, name: str | None = "Alice",
        level: int = 0, power_levels: dict[str, Any] | None = None) -> list[Any]:
    rules = ruleset if ruleset is not None else build_ruleset(ME, [], {})
    return evaluate(CompiledRuleset(rules), event, members, name, level, power_levels)


def only(*conditions: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A ruleset with one override rule: notify if all conditions hold."""
    return {"override": [{"rule_id": "t", "default": False, "enabled": True,
                          "conditions": list(conditions), "actions": ["notify"]}]}


def matches(event: dict[str, Any], *conditions: dict[str, Any], **kw: Any) -> bool:
    return run(event, only(*conditions), **kw) == ["notify"]


# --- glob -------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("lunc?*", "Lunch plans", True),
    ("lunc?*", "LUNCH", True),
    ("lunc?*", " lunch", False),  # anchored at both ends
    ("lunc?*", "lunc", False),  # ? needs a character
    ("*", "", True),
    ("*", "anything at all\nwith newlines", True),
    ("", "", True),
    ("", "x", False),
    ("a*b*c", "abc", True),
    ("a*b*c", "aXXbYYc", True),
    ("a*b*c", "acb", False),
    ("a**c", "ac", True),
    ("*.example", "x.example", True),
    ("*.example", "xexample", False),  # '.' is literal
    ("[ab]", "[ab]", True),  # no character classes in the spec's glob
    ("[ab]", "a", False),
    ("a?c", "a\nc", True),
    ("m.room.*", "m.room.message", True),
    ("m.room.*", "m.roomy", False),
    ("*ab", "abab", True),
    ("ab*ab", "abab", True),
    ("ab*ab", "aba", False),  # segments may not overlap
    ("ÄBC", "äbc", True),  # case-insensitive beyond ASCII
])
def test_glob_whole_value(pattern: str, value: str, expected: bool) -> None:
    assert glob_matches(pattern, value) is expected


@pytest.mark.parametrize(("pattern", "body", "expected"), [
    ("ex*ple", "An example event.", True),
    ("ex*ple", "exple", True),
    ("ex*ple", "An exciting triple-whammy", True),  # spans words; '-' is a boundary
    ("ex*ple", "An examples event", False),  # must end at a boundary
    ("ex*ple", "index ample", False),  # must start at a boundary
    ("cake", "I like cake.", True),
    ("cake", "I like CAKE", True),
    ("cake", "cupcake", False),
    ("cake", "cakes", False),
    ("cake", "cake_lover", False),  # '_' is a word character
    ("cake", "cake9", False),  # digits too
    ("cake", "(cake)", True),
    ("cake", "café cake", True),
    ("caf", "café", True),  # only ASCII letters are word characters: 'é' is a boundary
    ("c?ke", "a coke", True),
    ("cake*lie", "the cake is a lie!", True),
    ("cake*lie", "the cake is a lie", True),
    ("cake*lie", "the cake is a lier", False),
    ("cake*lie", "the cake is a lie and a lier", True),  # the last segment may be anywhere later
    ("*", "", True),
    ("*", "anything", True),
    ("@room", "hey @room look", True),
    ("@room", "hey@room", False),  # the substring must start at a boundary
    ("a*", "xa b", False),  # 'a' never starts at a boundary here
    ("a*", "x ab", True),
    ("*b", "ab x", True),
])
def test_glob_body_word_boundaries(pattern: str, body: str, expected: bool) -> None:
    assert glob_matches(pattern, body, word_boundaries=True) is expected
    # event_match on content.body uses the same rule
    assert matches(msg(body), {"kind": "event_match", "key": "content.body", "pattern": pattern}) is expected


def test_glob_has_no_catastrophic_backtracking() -> None:
    body = "a" * 50_000
    started = time.perf_counter()
    assert not glob_matches("*a*a*a*a*a*a*a*a*a*a*b", body)
    assert not glob_matches("a*a*a*a*a*a*a*a*a*a*b", body, word_boundaries=True)
    assert time.perf_counter() - started < 2


# --- event_match ----------------------------------------------------------------


def test_event_match_needs_a_string_value() -> None:
    topic = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
    assert matches(ev("m.room.topic", topic="Lunch"), topic)
    assert matches(ev("m.room.topic", topic=""), topic)
    assert not matches(ev("m.room.topic"), topic)  # absent, even for '*'
    for value in (None, 1, True, ["x"], {"a": "b"}):
        assert not matches(ev("m.room.topic", topic=value), topic), value


def test_event_match_other_keys_are_whole_value() -> None:
    cond = {"kind": "event_match", "key": "content.topic", "pattern": "lunch"}
    assert matches(ev("m.room.topic", topic="LUNCH"), cond)
    assert not matches(ev("m.room.topic", topic="lunch plans"), cond)
    assert matches(ev("m.room.member"), {"kind": "event_match", "key": "type", "pattern": "m.room.*"})


def test_malformed_and_unknown_conditions_never_match() -> None:
    event = msg("hello")
    for cond in (
        {"kind": "event_match", "key": "content.body"},
        {"kind": "event_match", "pattern": "*"},
        {"kind": "event_match", "key": 3, "pattern": "*"},
        {"kind": "event_property_is", "key": "content.body"},
        {"kind": "org.example.future", "key": "content.body"},
        {"kind": "room_member_count", "is": "abc"},
        {"kind": "room_member_count", "is": "=5"},
        {"kind": "room_member_count"},
        {"kind": "sender_notification_permission"},
        {},
    ):
        assert not matches(event, cond, members=5), cond
    # A rule with no conditions always matches.
    assert run(event, only()) == ["notify"]


# --- dotted keys ----------------------------------------------------------------


@pytest.mark.parametrize(("key", "parts"), [
    ("content.body", ("content", "body")),
    ("content.m\\.relates_to.rel_type", ("content", "m.relates_to", "rel_type")),
    ("content.m\\\\foo", ("content", "m\\foo")),
    ("content.m\\xfoo", ("content", "m\\xfoo")),  # other escapes are a literal backslash
    ("content.trailing\\", ("content", "trailing\\")),
    ("type", ("type",)),
    ("a..b", ("a", "", "b")),
])
def test_split_key(key: str, parts: tuple[str, ...]) -> None:
    assert split_key(key) == parts


def test_dotted_key_escaping_reaches_dotted_properties() -> None:
    event = ev(**{"m.relates_to": {"rel_type": "m.replace"}, "m": {"relates_to": {"rel_type": "other"}}})
    assert lookup(event, "content.m\\.relates_to.rel_type") == "m.replace"
    assert lookup(event, "content.m.relates_to.rel_type") == "other"
    event2 = ev(**{"m\\foo": "bs"})
    assert matches(event2, {"kind": "event_match", "key": "content.m\\\\foo", "pattern": "bs"})
    assert not matches(event2, {"kind": "event_match", "key": "content.m\\foo.x", "pattern": "*"})


# --- event_property_is / contains ------------------------------------------------


def test_event_property_is_is_exact_and_typed() -> None:
    key = "content.m\\.federate"

    def is_(value: Any, wanted: Any) -> bool:
        return matches(ev("m.room.create", **{"m.federate": value}), {"kind": "event_property_is", "key": key, "value": wanted})

    assert is_(True, True)
    assert not is_("true", True)
    assert not is_(1, True)  # no casting: True is not 1
    assert not is_(True, 1)
    assert is_(1, 1)
    assert not is_(1.0, 1)
    assert is_(None, None)  # a present null matches null
    assert not matches(ev("m.room.create"), {"kind": "event_property_is", "key": key, "value": None})  # absent does not
    assert is_("x", "x")
    assert not is_("X", "x")  # exact, unlike event_match
    assert not is_(["x"], ["x"])  # compound values are not supported
    assert not is_({"a": 1}, {"a": 1})
    assert not is_(2**53, 2**53)  # out of canonical JSON's range


def test_event_property_contains() -> None:
    key = "content.alt_aliases"

    def contains(value: Any, wanted: Any) -> bool:
        return matches(ev("m.room.canonical_alias", alt_aliases=value),
                       {"kind": "event_property_contains", "key": key, "value": wanted})

    assert contains(["#somewhere:example.org", "#myroom:example.com"], "#myroom:example.com")
    assert not contains(["#somewhere:example.org", "#myroom:example.com"], ":example.com")
    assert not contains("#myroom:example.com", "#myroom:example.com")  # not an array
    assert contains([1, True, None], True)
    assert not contains([1], True)
    assert not contains([True], 1)
    assert contains([["nested"], {"a": 1}, None], None)  # compound items are ignored
    assert not contains([["x"]], "x")
    assert not matches(ev("m.room.canonical_alias"), {"kind": "event_property_contains", "key": key, "value": "x"})


# --- contains_display_name ---------------------------------------------------------


@pytest.mark.parametrize(("body", "name", "expected"), [
    ("hi Alice!", "Alice", True),
    ("hi alice", "Alice", True),
    ("Alicexyz", "Alice", False),
    ("malice", "Alice", False),
    ("Alice", "Alice", True),
    ("ping Dr. A*b", "Dr. A*b", True),  # the name is literal, not a glob
    ("ping Dr. Axxb", "Dr. A*b", False),
    ("hi Alice", None, False),
    ("hi Alice", "", False),
])
def test_contains_display_name(body: str, name: str | None, expected: bool) -> None:
    assert matches(msg(body), {"kind": "contains_display_name"}, name=name) is expected


def test_contains_display_name_needs_a_string_body() -> None:
    assert not matches(ev(body=5), {"kind": "contains_display_name"}, name="Alice")
    assert not matches(ev(), {"kind": "contains_display_name"}, name="Alice")


# --- room_member_count ---------------------------------------------------------------


@pytest.mark.parametrize(("spec", "count", "expected"), [
    ("2", 2, True), ("2", 3, False), ("==2", 2, True), ("==2", 1, False),
    ("<3", 2, True), ("<3", 3, False), (">3", 4, True), (">3", 3, False),
    ("<=3", 3, True), ("<=3", 4, False), (">=3", 3, True), (">=3", 2, False),
    (" 2", 2, False), ("2.0", 2, False), ("-1", 0, False), ("=<3", 3, False),
])
def test_room_member_count(spec: str, count: int, expected: bool) -> None:
    assert matches(msg("x"), {"kind": "room_member_count", "is": spec}, members=count) is expected


# --- sender_notification_permission ----------------------------------------------------


def test_sender_notification_permission() -> None:
    cond = {"kind": "sender_notification_permission", "key": "room"}
    event = msg("x")
    # Default requirement is 50.
    assert matches(event, cond, level=50, power_levels={})
    assert not matches(event, cond, level=49, power_levels={})
    assert not matches(event, cond, level=0, power_levels=None)
    assert matches(event, cond, level=10, power_levels={"notifications": {"room": 10}})
    assert not matches(event, cond, level=9, power_levels={"notifications": {"room": 10}})
    assert matches(event, cond, level=20, power_levels={"notifications": {"room": "20"}})  # old string levels
    assert matches(event, cond, level=0, power_levels={"notifications": {"room": 0}})
    other = {"kind": "sender_notification_permission", "key": "org.example.key"}
    assert not matches(event, other, level=49, power_levels={"notifications": {"room": 0}})
    assert matches(event, other, level=5, power_levels={"notifications": {"org.example.key": 5}})


# --- the predefined rules -----------------------------------------------------------------


def test_default_rules_in_spec_order() -> None:
    rules = server_default_rules(ME)
    assert list(rules) == list(KINDS)
    assert [r["rule_id"] for r in rules["override"]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention",
        ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ]
    assert [r["rule_id"] for r in rules["content"]] == [".m.rule.contains_user_name"]
    assert rules["content"][0]["pattern"] == "alice"
    assert [r["rule_id"] for r in rules["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
        ".m.rule.message", ".m.rule.encrypted",
    ]
    for kind_rules in rules.values():
        for r in kind_rules:
            assert r["default"] is True and r["rule_id"].startswith(".")
            assert r["enabled"] is (r["rule_id"] != MASTER)
    invite = rules["override"][2]["conditions"]
    assert {"key": "state_key", "kind": "event_match", "pattern": ME} in invite
    assert rules["override"][4]["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ME}
    ]


def test_default_outcomes() -> None:
    hl = ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    assert run(msg("hello")) == ["notify"]
    assert run(msg("hello"), members=2) == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert run(ev("m.room.encrypted", ciphertext="x")) == ["notify"]
    assert run(ev("m.room.encrypted", ciphertext="x"), members=2) == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert run(ev(msgtype="m.notice", body="bot says")) == []
    assert run(ev("m.call.invite")) == ["notify", {"set_tweak": "sound", "value": "ring"}]
    assert run(ev("m.reaction", **{"m.relates_to": {"rel_type": "m.annotation"}})) == []
    assert run(ev("org.example.custom")) == []  # nothing matches: no notification
    # mentions
    assert run(msg("hi", **{"m.mentions": {"user_ids": [ME]}})) == hl
    assert run(msg("hi", **{"m.mentions": {"user_ids": [OTHER]}})) == ["notify"]
    assert highlights(run(msg("@room", **{"m.mentions": {"room": True}}), level=50))
    assert not highlights(run(msg("hey", **{"m.mentions": {"room": True}}), level=0))
    # edits never notify, even when they mention
    edit = msg("* hi", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert run(edit) == []
    # membership
    member = {"type": "m.room.member", "sender": OTHER, "room_id": ROOM, "state_key": ME, "content": {"membership": "invite"}}
    assert run(member) == ["notify", {"set_tweak": "sound", "value": "default"}]
    member["state_key"] = "@carol:test.local"
    assert run(member) == []
    # tombstone needs a state key of ""
    tomb = {"type": "m.room.tombstone", "sender": OTHER, "room_id": ROOM, "content": {"body": "gone"}}
    assert run(tomb) == []
    tomb["state_key"] = ""
    assert highlights(run(tomb))
    acl = {"type": "m.room.server_acl", "sender": OTHER, "room_id": ROOM, "state_key": "", "content": {}}
    assert run(acl) == []


def test_legacy_mention_rules_only_without_m_mentions() -> None:
    # Body mentions highlight for events from clients without intentional mentions...
    assert highlights(run(msg("hey Alice")))
    assert highlights(run(msg("hey alice, look")))  # contains_user_name: the localpart
    assert highlights(run(msg("@room wake up"), level=50))
    assert not highlights(run(msg("@room wake up"), level=49))
    # ...but not once the event says whom it mentions.
    assert not highlights(run(msg("hey Alice", **{"m.mentions": {}})))
    assert not highlights(run(msg("hey alice", **{"m.mentions": {"user_ids": []}})))
    assert not highlights(run(msg("@room", **{"m.mentions": {}}), level=100))


def test_master_rule_disables_everything() -> None:
    mine = [UserRule("override", "mine", [], None, ["notify", {"set_tweak": "highlight"}], True)]
    ruleset = build_ruleset(ME, mine, {MASTER: DefaultRuleChange(MASTER, True, None)})
    assert ruleset["override"][0]["rule_id"] == MASTER
    assert ruleset["override"][1]["rule_id"] == "mine"
    for event in (msg("hi", **{"m.mentions": {"user_ids": [ME]}}), msg("hi"), ev("m.call.invite")):
        assert run(event, ruleset, members=2) == []
    # Without master, the user's override wins over everything else.
    ruleset = build_ruleset(ME, mine, {})
    assert run(ev("org.example.x"), ruleset) == ["notify", {"set_tweak": "highlight"}]


def test_user_rules_come_before_defaults_and_kinds_in_order() -> None:
    rules = [
        UserRule("content", "cake", None, "cake", ["notify", {"set_tweak": "sound", "value": "cake"}], True),
        UserRule("room", ROOM, None, None, [], True),
        UserRule("sender", OTHER, None, None, ["notify", {"set_tweak": "sound", "value": "bob"}], True),
        UserRule("underride", "u", [{"kind": "event_match", "key": "type", "pattern": "m.room.message"}], None,
                 ["notify", {"set_tweak": "sound", "value": "under"}], True),
    ]
    ruleset = build_ruleset(ME, rules, {})
    assert [r["rule_id"] for r in ruleset["content"]] == ["cake", ".m.rule.contains_user_name"]
    assert ruleset["underride"][0]["rule_id"] == "u"
    # content beats room beats sender beats underride
    assert tweak(run(msg("cake time"), ruleset), "sound") == "cake"
    assert run(msg("plain"), ruleset) == []  # room rule mutes the room
    elsewhere = dict(msg("plain"), room_id="!other:test.local")
    assert tweak(run(elsewhere, ruleset), "sound") == "bob"
    elsewhere["sender"] = "@carol:test.local"
    assert tweak(run(elsewhere, ruleset), "sound") == "under"


def test_disabled_rules_and_changed_default_actions() -> None:
    changes = {".m.rule.message": DefaultRuleChange(".m.rule.message", None, ["notify", {"set_tweak": "sound", "value": "x"}]),
               ".m.rule.suppress_notices": DefaultRuleChange(".m.rule.suppress_notices", False, None)}
    ruleset = build_ruleset(ME, [UserRule("override", "off", [], None, ["notify"], False)], changes)
    assert run(msg("hi"), ruleset) == ["notify", {"set_tweak": "sound", "value": "x"}]
    # suppress_notices is disabled, so a notice falls through to .m.rule.message
    assert notifies(run(ev(msgtype="m.notice", body="n"), ruleset))


def test_historical_actions_are_ignored() -> None:
    ruleset = {"override": [{"rule_id": "r", "default": False, "enabled": True, "conditions": [],
                             "actions": ["dont_notify", "coalesce"]}]}
    assert run(msg("hi"), ruleset) == []
    # Accepted and kept as given (the spec: ignored, not rejected); evaluation drops them.
    given = ["notify", "dont_notify", {"set_tweak": "sound", "value": "a"}, "coalesce"]
    assert validate_actions(given) == given
    ruleset["override"][0]["actions"] = given
    assert run(msg("hi"), ruleset) == ["notify", {"set_tweak": "sound", "value": "a"}]


def test_highlight_tweak_values() -> None:
    assert highlights([{"set_tweak": "highlight"}])
    assert highlights([{"set_tweak": "highlight", "value": True}])
    assert not highlights([{"set_tweak": "highlight", "value": False}])
    assert not highlights(["notify"])
    assert tweak(["notify"], "sound") is None


@pytest.mark.parametrize("actions", ["notify", [1], ["bogus"], [{"value": "x"}], [{"set_tweak": 1}], None])
def test_validate_actions_refuses(actions: Any) -> None:
    with pytest.raises(MatrixError) as e:
        validate_actions(actions)
    assert e.value.errcode == "M_BAD_JSON"


@pytest.mark.parametrize("conditions", [
    {}, [1], [{}], [{"kind": 1}],
    [{"kind": "event_match", "key": "type"}],
    [{"kind": "event_match", "pattern": "x"}],
    [{"kind": "event_property_is", "key": "x"}],
    [{"kind": "event_property_is", "key": "x", "value": [1]}],
    [{"kind": "event_property_contains", "key": "x", "value": 1.5}],
    [{"kind": "room_member_count", "is": "lots"}],
    [{"kind": "sender_notification_permission"}],
])
def test_validate_conditions_refuses(conditions: Any) -> None:
    with pytest.raises(MatrixError) as e:
        validate_conditions(conditions)
    assert e.value.errcode == "M_BAD_JSON"


def test_validate_conditions_keeps_unknown_kinds() -> None:
    conds = [{"kind": "org.example.new", "x": 1}, {"kind": "contains_display_name"},
             {"kind": "event_property_is", "key": "a", "value": None}]
    assert validate_conditions(conds) == conds


def test_common_rules_narrowed_by_type_answer_as_the_whole_set() -> None:
    """The writer evaluates the common rules narrowed to the event's type (push/actions.py):
    for every kind of event the defaults treat apart, in rooms of one, two and many
    members and from senders of any level, the answer is the whole set's."""
    from homeserver.push.actions import _COMMON_RULES, _common_rules_for, _compiled_common_for

    events = [
        ev(msgtype="m.text", body="hello"), ev(msgtype="m.notice", body="bot"),
        ev("M.Room.Message", msgtype="m.text", body="case"), ev("m.room.encrypted", algorithm="x"),
        ev("m.room.member", membership="invite") | {"state_key": "@x:test"},
        ev("m.room.member", membership="join") | {"state_key": OTHER},
        ev("m.room.tombstone", body="gone") | {"state_key": ""},
        ev("m.room.server_acl", allow=["*"]) | {"state_key": ""},
        ev("m.reaction", **{"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "x"}}),
        ev("m.call.invite", call_id="c"), ev("org.matrix.msc3381.poll.start", body="poll"),
        ev("m.poll.start"), ev("org.example.custom", body="@room hi"),
        ev(msgtype="m.text", body="@room everyone"),
        ev(msgtype="m.text", body="x", **{"m.mentions": {"room": True}}),
    ]
    levels = {"users": {OTHER: 100}, "notifications": {"room": 50}}
    for event in events:
        event = {**event, "room_id": "!r:test"}
        narrowed = _common_rules_for(event["type"])
        assert sum(map(len, narrowed.values())) <= sum(map(len, _COMMON_RULES.values()))
        for members in (1, 2, 30):
            for level in (0, 100):
                want = evaluate(CompiledRuleset(_COMMON_RULES), event, members, None, level, levels)
                got = evaluate(CompiledRuleset(narrowed), event, members, None, level, levels)
                assert got == want, (event, members, level)
                compiled = _compiled_common_for(event["type"])
                assert evaluate(compiled, event, members, None, level, levels) == want, (event, members, level)
    assert sum(map(len, _common_rules_for("m.room.message").values())) < sum(map(len, _COMMON_RULES.values()))


def test_compiled_rulesets_share_the_rules_users_have_in_common() -> None:
    """Each user's compiled ruleset (kept per user by the push rules service) shares
    the matchers of the rules every user has alike: only the rules naming the user
    are compiled per user, so a compiled ruleset costs little beyond its rule list."""
    mine, theirs = CompiledRuleset(build_ruleset(ME, [], {})), CompiledRuleset(build_ruleset(OTHER, [], {}))
    assert len(mine.rules) == len(theirs.rules)
    distinct = [i for i, (a, b) in enumerate(zip(mine.rules, theirs.rules, strict=True)) if a[1] is not b[1]]
    # .m.rule.invite_for_me, .m.rule.is_user_mention and .m.rule.contains_user_name
    assert len(distinct) == 3
    hi = msg("hi alice")
    assert highlights(run(hi, build_ruleset(ME, [], {}), name=None))
    assert not highlights(run(hi, build_ruleset(OTHER, [], {}), name=None))
