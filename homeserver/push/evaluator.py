"""Push rule evaluation: what a user's ruleset says about one event.

A ruleset is compiled once (`CompiledRuleset`: each rule made a test of an event,
the rules every user has in common sharing one) and then evaluated for many events
(`evaluate`, a pure function of its arguments). There is no other evaluator: the
event writer's push actions (homeserver/push/actions.py), which everything else
reads (unread counts, /notifications, pushers), evaluate the compiled form.
"""

from __future__ import annotations

import functools
import operator
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from homeserver.push.defaults import KINDS, LEGACY_MENTION_RULES, Action
from homeserver.push.glob import contains_word, glob_matcher

# Actions older specs defined; the spec says to ignore them, which we do by stripping.
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})
MAX_SAFE_INT = 2**53 - 1  # canonical JSON's integer range
DEFAULT_NOTIFICATION_LEVEL = 50  # m.room.power_levels' default for notifications.*


@functools.lru_cache(maxsize=4096)
def split_key(key: str) -> tuple[str, ...]:
    """A dot-separated property path: `\\.` is a literal dot, `\\\\` a literal
    backslash, and any other backslash stays a literal backslash (the appendix's rule)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


_ABSENT = object()


def is_scalar(value: Any) -> bool:
    """A non-compound canonical JSON value: string, bool, null or an integer in range."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _same_scalar(a: Any, b: Any) -> bool:
    """Exact equality without Python's `True == 1`: types must agree too."""
    if not (is_scalar(a) and is_scalar(b)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return type(a) is type(b) and a == b


MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


def _member_count_test(spec: Any) -> tuple[Callable[[int, int], bool], int] | None:
    """A `room_member_count` condition's `is` as (comparison, count), or None when it is
    malformed (the condition then never matches); parsed once by a compiled ruleset."""
    m = MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        return None
    return _COMPARISONS[m.group(1) or "=="], int(m.group(2))


def _as_level(value: Any) -> int | None:
    """A power level as an integer; older room versions allowed decimal strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value.strip())
    return None


def notification_level(power_levels_content: Mapping[str, Any] | None, key: str) -> int:
    """The power level `notifications.<key>` requires (50 when unset, as for `room`)."""
    notifications = (power_levels_content or {}).get("notifications")
    if isinstance(notifications, Mapping):
        level = _as_level(notifications.get(key))
        if level is not None:
            return level
    return DEFAULT_NOTIFICATION_LEVEL


class _Context:
    __slots__ = ("event", "member_count", "display_name", "sender_level", "power_levels")

    def __init__(self, event: Mapping[str, Any], member_count: int, display_name: str | None,
                 sender_level: int, power_levels: Mapping[str, Any] | None) -> None:
        self.event = event
        self.member_count = member_count
        self.display_name = display_name
        self.sender_level = sender_level
        self.power_levels = power_levels


def _body(event: Mapping[str, Any]) -> str | None:
    content = event.get("content")
    body = content.get("body") if isinstance(content, Mapping) else None
    return body if isinstance(body, str) else None


def strip_historical(actions: Iterable[Action]) -> list[Action]:
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


def notifies(actions: Iterable[Action]) -> bool:
    return "notify" in actions


def tweak(actions: Iterable[Action], name: str) -> Any:
    """The value a set_tweak action gives `name` (the last one wins), or None if unset.
    A highlight tweak without a value means true (the spec's rule)."""
    found: Any = None
    for a in actions:
        if isinstance(a, Mapping) and a.get("set_tweak") == name:
            found = a.get("value", True if name == "highlight" else None)
    return found


def highlights(actions: Iterable[Action]) -> bool:
    return tweak(actions, "highlight") is True


# --- the ruleset compiled: the one evaluator -----------------------------------------

Matcher = Callable[[_Context], bool]


def _never(ctx: _Context) -> bool:
    return False


def _always(ctx: _Context) -> bool:
    return True


def _lookup_parts(event: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """The property a split key names, or `_ABSENT` if any step is missing; plain dicts
    (all events are) without the abstract-class check."""
    value: Any = event
    for part in parts:
        if type(value) is not dict and not isinstance(value, Mapping):
            return _ABSENT
        if part not in value:
            return _ABSENT
        value = value[part]
    return value


def lookup(event: Mapping[str, Any], key: str) -> Any:
    """The event property a dotted key names, or `_ABSENT` if any step is missing."""
    return _lookup_parts(event, split_key(key))


def _contains_display_name(ctx: _Context) -> bool:
    name = ctx.display_name
    if not name:
        return False
    body = _body(ctx.event)
    return body is not None and contains_word(body, name)


def _compile_condition(cond: Any) -> Matcher:
    """One condition as a test of an event, its checks of the condition itself done
    once; unknown or malformed conditions never match (the spec's rule)."""
    if not isinstance(cond, Mapping):
        return _never
    kind = cond.get("kind")
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return _never
        parts, matches = split_key(key), glob_matcher(pattern, word_boundaries=key == "content.body")

        def event_match(ctx: _Context) -> bool:
            value = _lookup_parts(ctx.event, parts)
            return isinstance(value, str) and matches(value)

        return event_match
    if kind in ("event_property_is", "event_property_contains"):
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return _never
        parts, wanted = split_key(key), cond["value"]
        if kind == "event_property_is":

            def property_is(ctx: _Context) -> bool:
                value = _lookup_parts(ctx.event, parts)
                return value is not _ABSENT and _same_scalar(value, wanted)

            return property_is

        def property_contains(ctx: _Context) -> bool:
            value = _lookup_parts(ctx.event, parts)
            return isinstance(value, list) and any(_same_scalar(item, wanted) for item in value)

        return property_contains
    if kind == "contains_display_name":
        return _contains_display_name
    if kind == "room_member_count":
        test = _member_count_test(cond.get("is"))
        if test is None:
            return _never
        compare, n = test
        return lambda ctx: compare(ctx.member_count, n)
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return _never
        return lambda ctx: ctx.sender_level >= notification_level(ctx.power_levels, key)
    return _never


def _compile_conditions(conditions: Any) -> Matcher:
    """An override or underride rule: all of its conditions hold (none: always)."""
    if not isinstance(conditions, list):
        return _never
    matchers = tuple(_compile_condition(c) for c in conditions)
    if _never in matchers:
        return _never
    if not matchers:
        return _always
    if len(matchers) == 1:
        return matchers[0]
    if len(matchers) == 2:
        first, second = matchers
        return lambda ctx: first(ctx) and second(ctx)
    return lambda ctx: all(m(ctx) for m in matchers)


def _compile_pattern(pattern: Any) -> Matcher:
    """A content rule: its glob found in the body at word boundaries."""
    if not isinstance(pattern, str):
        return _never
    matches = glob_matcher(pattern, word_boundaries=True)

    def content(ctx: _Context) -> bool:
        body = _body(ctx.event)
        return body is not None and matches(body)

    return content


def _compile_equal(field: str, rule_id: Any) -> Matcher:
    """A room or sender rule: the event's `room_id` or `sender` is the rule's ID."""
    if not isinstance(rule_id, str):
        return _never
    return lambda ctx: ctx.event.get(field) == rule_id


# What a rule tests, by kind: (the rule's property it reads, its compiler).
_COMPILERS: dict[str, tuple[str, Callable[[Any], Matcher]]] = {
    "override": ("conditions", _compile_conditions),
    "underride": ("conditions", _compile_conditions),
    "content": ("pattern", _compile_pattern),
    "room": ("rule_id", functools.partial(_compile_equal, "room_id")),
    "sender": ("rule_id", functools.partial(_compile_equal, "sender")),
}
_SHARED_RULES = 4096
_Compiled = tuple[bool, Matcher, tuple[Action, ...]]  # (legacy mention rule, matcher, actions)
# (kind, repr of what the rule tests, legacy, repr of its actions) -> the rule compiled,
# least recently used first: every user's copies of the same rule (most of the
# server's defaults) share one. repr, unlike JSON, tells a tuple from a list and
# True from 1, so equal keys stand for rules that answer alike.
_shared: OrderedDict[tuple[str, str, bool, str], _Compiled] = OrderedDict()


def _compile_rule(kind: str, rule: Mapping[str, Any]) -> _Compiled:
    legacy = bool(rule.get("default") and rule.get("rule_id") in LEGACY_MENTION_RULES)
    actions = rule.get("actions", [])
    stripped = tuple(strip_historical(actions)) if isinstance(actions, list) else ()
    prop, compile_part = _COMPILERS[kind]
    part = rule.get(prop, []) if prop == "conditions" else rule.get(prop)
    key = (kind, repr(part), legacy, repr(stripped))
    compiled = _shared.get(key)
    if compiled is not None:
        _shared.move_to_end(key)
        return compiled
    compiled = _shared[key] = (legacy, compile_part(part), stripped)
    if len(_shared) > _SHARED_RULES:
        _shared.popitem(last=False)
    return compiled


class CompiledRuleset:
    """A ruleset (kind -> rules, most important first, as `PushRulesService.ruleset()`
    returns it) made ready for evaluating many events: the disabled rules left out,
    each rule's conditions checked for their shape and their keys split once, the
    rules in the spec's order (override, content, room, sender, underride). Built from
    a ruleset that does not change while it is used: the push rules service keeps
    one per user and drops it on any change of their rules. Compiled rules are shared
    between users (`_shared`): one of a user who keeps the defaults is a tuple of
    references, of which only the three rules naming the user are theirs alone."""

    __slots__ = ("rules",)

    def __init__(self, rules: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self.rules: tuple[_Compiled, ...] = tuple(
            _compile_rule(kind, rule)
            for kind in KINDS if kind in _COMPILERS
            for rule in rules.get(kind, ()) if rule.get("enabled", True)
        )


def evaluate(
    rules: CompiledRuleset,
    event: Mapping[str, Any],
    room_member_count: int,
    user_display_name: str | None,
    sender_power_level: int,
    power_levels_content: Mapping[str, Any] | None,
) -> list[Action]:
    """The actions of the first enabled rule that matches `event`, or [] if none does.

    - rules: the user's ruleset compiled (`CompiledRuleset`; the push rules service's
      `compiled_in` keeps them).
    - event: the event as a dict (client or federation format): `type`, `content`,
      `sender`, `room_id`, `state_key` are what the predefined rules read.
    - room_member_count: joined members of the room now.
    - user_display_name: the user's display name in that room (contains_display_name).
    - sender_power_level: the sender's power level in the room.
    - power_levels_content: the room's m.room.power_levels content (None if absent).

    Historical actions (dont_notify, coalesce) are stripped, so a match that should
    not notify returns []. The legacy mention rules are skipped for content with
    `m.mentions`. The caller skips events the user sent themselves (the spec forbids
    notifying for them). Use `notifies()` / `highlights()` on the result.
    """
    ctx = _Context(event, room_member_count, user_display_name, sender_power_level, power_levels_content)
    content = event.get("content")
    has_mentions = isinstance(content, Mapping) and "m.mentions" in content
    for legacy, matches, actions in rules.rules:
        if has_mentions and legacy:
            continue
        if matches(ctx):
            return list(actions)
    return []
