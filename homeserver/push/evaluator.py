"""Push rule evaluation: what a user's ruleset says about one event.

`evaluate()` is a pure function of its arguments so /sync's unread counts
(notify/highlight) and a future pusher can share it.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from homeserver.push.defaults import KINDS, LEGACY_MENTION_RULES, Action
from homeserver.push.glob import contains_word, glob_matcher, glob_matches

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


def lookup(event: Mapping[str, Any], key: str) -> Any:
    """The event property a dotted key names, or `_ABSENT` if any step is missing."""
    value: Any = event
    for part in split_key(key):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


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


def _member_count_matches(spec: Any, count: int) -> bool:
    test = _member_count_test(spec)
    return test is not None and test[0](count, test[1])


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


def condition_matches(cond: Mapping[str, Any], ctx: _Context) -> bool:
    """One condition; unknown or malformed conditions never match (the spec's rule)."""
    kind = cond.get("kind")
    if kind == "event_match":
        key, pattern = cond.get("key"), cond.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = lookup(ctx.event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundaries=key == "content.body")
    if kind == "event_property_is":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        value = lookup(ctx.event, key)
        return value is not _ABSENT and _same_scalar(value, cond["value"])
    if kind == "event_property_contains":
        key = cond.get("key")
        if not isinstance(key, str) or "value" not in cond:
            return False
        value = lookup(ctx.event, key)
        if not isinstance(value, list):
            return False
        wanted = cond["value"]
        return any(_same_scalar(item, wanted) for item in value)
    if kind == "contains_display_name":
        name, body = ctx.display_name, _body(ctx.event)
        if not name or body is None:
            return False
        return contains_word(body, name)
    if kind == "room_member_count":
        return _member_count_matches(cond.get("is"), ctx.member_count)
    if kind == "sender_notification_permission":
        key = cond.get("key")
        if not isinstance(key, str):
            return False
        return ctx.sender_level >= notification_level(ctx.power_levels, key)
    return False


def _rule_matches(kind: str, rule: Mapping[str, Any], ctx: _Context) -> bool:
    if kind in ("override", "underride"):
        conditions = rule.get("conditions", [])
        if not isinstance(conditions, list):
            return False
        return all(isinstance(c, Mapping) and condition_matches(c, ctx) for c in conditions)
    if kind == "content":
        pattern, body = rule.get("pattern"), _body(ctx.event)
        return isinstance(pattern, str) and body is not None and glob_matches(pattern, body, word_boundaries=True)
    if kind == "room":
        return ctx.event.get("room_id") == rule.get("rule_id")
    if kind == "sender":
        return ctx.event.get("sender") == rule.get("rule_id")
    return False


def strip_historical(actions: Iterable[Action]) -> list[Action]:
    return [a for a in actions if not (isinstance(a, str) and a in HISTORICAL_ACTIONS)]


def evaluate(
    rules: Mapping[str, Sequence[Mapping[str, Any]]] | CompiledRuleset,
    event: Mapping[str, Any],
    room_member_count: int,
    user_display_name: str | None,
    sender_power_level: int,
    power_levels_content: Mapping[str, Any] | None,
) -> list[Action]:
    """The actions of the first enabled rule that matches `event`, or [] if none does.

    - rules: a ruleset as `PushRulesService.ruleset()` returns it (kind -> rules,
      most important first); kinds are checked in the spec's order. Or the same
      compiled (`CompiledRuleset`), for a ruleset evaluated for many events: the same
      answer.
    - event: the event as a dict (client or federation format): `type`, `content`,
      `sender`, `room_id`, `state_key` are what the predefined rules read.
    - room_member_count: joined members of the room now.
    - user_display_name: the user's display name in that room (contains_display_name).
    - sender_power_level: the sender's power level in the room.
    - power_levels_content: the room's m.room.power_levels content (None if absent).

    Historical actions (dont_notify, coalesce) are stripped, so a match that should
    not notify returns []. The caller skips events the user sent themselves (the
    spec forbids notifying for them). Use `notifies()` / `highlights()` on the result.
    """
    ctx = _Context(event, room_member_count, user_display_name, sender_power_level, power_levels_content)
    content = event.get("content")
    has_mentions = isinstance(content, Mapping) and "m.mentions" in content
    if isinstance(rules, CompiledRuleset):
        for legacy, matches, actions in rules.rules:
            if has_mentions and legacy:
                continue
            if matches(ctx):
                return list(actions)
        return []
    for kind in KINDS:
        for rule in rules.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            if has_mentions and rule.get("default") and rule.get("rule_id") in LEGACY_MENTION_RULES:
                continue
            if _rule_matches(kind, rule, ctx):
                actions = rule.get("actions", [])
                return strip_historical(actions) if isinstance(actions, list) else []
    return []


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


# --- a ruleset compiled once, for a ruleset evaluated for every event ---

Matcher = Callable[[_Context], bool]


def _never(ctx: _Context) -> bool:
    return False


def _lookup_parts(event: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """`lookup` with the key already split; plain dicts (all events are) without the
    abstract-class check."""
    value: Any = event
    for part in parts:
        if type(value) is not dict and not isinstance(value, Mapping):
            return _ABSENT
        if part not in value:
            return _ABSENT
        value = value[part]
    return value


def _compile_condition(cond: Any) -> Matcher:
    """`condition_matches` for one condition, its checks of the rule itself done once."""
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
        return lambda ctx: condition_matches(cond, ctx)
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


def _compile_rule(kind: str, rule: Mapping[str, Any]) -> Matcher:
    if kind in ("override", "underride"):
        conditions = rule.get("conditions", [])
        if not isinstance(conditions, list):
            return _never
        matchers = tuple(_compile_condition(c) for c in conditions)
        if _never in matchers:
            return _never
        if len(matchers) == 1:
            return matchers[0]
        if len(matchers) == 2:
            first, second = matchers
            return lambda ctx: first(ctx) and second(ctx)
        return lambda ctx: all(m(ctx) for m in matchers)
    return lambda ctx: _rule_matches(kind, rule, ctx)


class CompiledRuleset:
    """A ruleset made ready for evaluating many events (`evaluate`): the
    disabled rules left out, each rule's conditions checked for their shape and their
    keys split once. For a ruleset that does not change while it is used (the server's
    defaults, which every send evaluates once)."""

    def __init__(self, rules: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        # (skipped when the content has m.mentions, matcher, actions), in evaluation order
        self.rules: list[tuple[bool, Matcher, list[Action]]] = []
        for kind in KINDS:
            for rule in rules.get(kind, ()):
                if not rule.get("enabled", True):
                    continue
                legacy = bool(rule.get("default") and rule.get("rule_id") in LEGACY_MENTION_RULES)
                actions = rule.get("actions", [])
                stripped = strip_historical(actions) if isinstance(actions, list) else []
                self.rules.append((legacy, _compile_rule(kind, rule), stripped))

