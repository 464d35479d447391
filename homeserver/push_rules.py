"""Push rules: the server-default rules, a user's merged ruleset, and the evaluator.

A user's ruleset is the spec's predefined rules merged with the rules the user
defined and the user's enabled/actions changes to the predefined ones, in the
spec's evaluation order: kinds override, content, room, sender, underride; within
a kind the user's rules come before the server's, except `.m.rule.master`, which
outranks everything so that enabling it silences every notification.

`evaluate()` decides what a rule set says about one event for one user. It is a
pure function of its arguments so /sync's unread counts (notify/highlight) and a
future pusher can share it; `PushRulesService` stores and serves rulesets.
"""

from __future__ import annotations

import asyncio
import functools
import re
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.storage.push_rules import (
    AnchorNotFoundError,
    DefaultRuleChange,
    PushRuleStore,
    UserRule,
)

if TYPE_CHECKING:
    from homeserver.server import HomeServer

Action = str | dict[str, Any]
Rule = dict[str, Any]
Ruleset = dict[str, list[Rule]]  # kind -> rules, most important first

# The kinds in the order the spec checks them.
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")
PUSH_RULES_TYPE = "m.push_rules"  # the global account data event that carries the ruleset
MASTER = ".m.rule.master"
# Actions older specs defined; the spec says to ignore them, which we do by stripping.
HISTORICAL_ACTIONS = frozenset({"dont_notify", "coalesce"})
# Server-default rules that look for mentions in the body. Spec v1.17 dropped them
# from the predefined list, but clients and bots that do not send `m.mentions` still
# rely on them, and the spec lets a server define extra dot-prefixed defaults. As
# intentional mentions (v1.7) specified, they are skipped for any event whose
# content has an `m.mentions` property, so they never double up with the new rules.
LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif"}
)
MAX_SAFE_INT = 2**53 - 1  # canonical JSON's integer range
DEFAULT_NOTIFICATION_LEVEL = 50  # m.room.power_levels' default for notifications.*

_SOUND_DEFAULT: dict[str, Any] = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: dict[str, Any] = {"set_tweak": "highlight"}


# --- server-default rules -------------------------------------------------------


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, actions: list[Action], conditions: list[dict[str, Any]] | None = None,
          *, pattern: str | None = None, enabled: bool = True) -> Rule:
    rule: Rule = {"rule_id": rule_id, "default": True, "enabled": enabled}
    if conditions is not None:
        rule["conditions"] = conditions
    if pattern is not None:
        rule["pattern"] = pattern
    rule["actions"] = actions
    return rule


def server_default_rules(user_id: str) -> Ruleset:
    """The predefined rules for one user, per kind in the spec's order (fresh copies)."""
    localpart = user_id[1:].split(":", 1)[0]
    return {
        "override": [
            _rule(MASTER, [], [], enabled=False),
            _rule(".m.rule.suppress_notices", [], [_match("content.msgtype", "m.notice")]),
            _rule(".m.rule.invite_for_me", ["notify", dict(_SOUND_DEFAULT)], [
                _match("type", "m.room.member"),
                _match("content.membership", "invite"),
                _match("state_key", user_id),
            ]),
            _rule(".m.rule.member_event", [], [_match("type", "m.room.member")]),
            _rule(".m.rule.is_user_mention", ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)], [
                {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id},
            ]),
            _rule(".m.rule.contains_display_name", ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
                  [{"kind": "contains_display_name"}]),
            _rule(".m.rule.is_room_mention", ["notify", dict(_HIGHLIGHT)], [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ]),
            _rule(".m.rule.roomnotif", ["notify", dict(_HIGHLIGHT)], [
                _match("content.body", "@room"),
                {"kind": "sender_notification_permission", "key": "room"},
            ]),
            _rule(".m.rule.tombstone", ["notify", dict(_HIGHLIGHT)], [
                _match("type", "m.room.tombstone"),
                _match("state_key", ""),
            ]),
            _rule(".m.rule.reaction", [], [_match("type", "m.reaction")]),
            _rule(".m.rule.room.server_acl", [], [
                _match("type", "m.room.server_acl"),
                _match("state_key", ""),
            ]),
            _rule(".m.rule.suppress_edits", [], [
                {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"},
            ]),
        ],
        "content": [
            _rule(".m.rule.contains_user_name", ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
                  pattern=localpart),
        ],
        "room": [],
        "sender": [],
        "underride": [
            _rule(".m.rule.call", ["notify", {"set_tweak": "sound", "value": "ring"}],
                  [_match("type", "m.call.invite")]),
            _rule(".m.rule.encrypted_room_one_to_one", ["notify", dict(_SOUND_DEFAULT)], [
                {"kind": "room_member_count", "is": "2"},
                _match("type", "m.room.encrypted"),
            ]),
            _rule(".m.rule.room_one_to_one", ["notify", dict(_SOUND_DEFAULT)], [
                {"kind": "room_member_count", "is": "2"},
                _match("type", "m.room.message"),
            ]),
            _rule(".m.rule.message", ["notify"], [_match("type", "m.room.message")]),
            _rule(".m.rule.encrypted", ["notify"], [_match("type", "m.room.encrypted")]),
        ],
    }


# Which kind each server-default rule belongs to (the same for every user).
DEFAULT_RULE_KINDS: dict[str, str] = {
    rule["rule_id"]: kind
    for kind, rules in server_default_rules("@_:_").items()
    for rule in rules
}


def _user_rule_json(rule: UserRule) -> Rule:
    out: Rule = {"rule_id": rule.rule_id, "default": False, "enabled": rule.enabled}
    if rule.kind in ("override", "underride"):
        out["conditions"] = rule.conditions if rule.conditions is not None else []
    elif rule.kind == "content":
        out["pattern"] = rule.pattern if rule.pattern is not None else ""
    out["actions"] = rule.actions
    return out


def build_ruleset(
    user_id: str, user_rules: Iterable[UserRule], changes: Mapping[str, DefaultRuleChange]
) -> Ruleset:
    """The user's complete ruleset in evaluation order, as clients see it."""
    defaults = server_default_rules(user_id)
    for rules in defaults.values():
        for rule in rules:
            change = changes.get(rule["rule_id"])
            if change is None:
                continue
            if change.enabled is not None:
                rule["enabled"] = change.enabled
            if change.actions is not None:
                rule["actions"] = change.actions
    mine: dict[str, list[Rule]] = {kind: [] for kind in KINDS}
    for rule in user_rules:
        if rule.kind in mine:
            mine[rule.kind].append(_user_rule_json(rule))
    out: Ruleset = {}
    for kind in KINDS:
        server = defaults[kind]
        if kind == "override":
            # The master rule outranks even the user's own overrides.
            head = [r for r in server if r["rule_id"] == MASTER]
            out[kind] = head + mine[kind] + [r for r in server if r["rule_id"] != MASTER]
        else:
            out[kind] = mine[kind] + server
    return out


# --- evaluation -------------------------------------------------------------------

_WORD_CHARS = "A-Za-z0-9_"  # the spec's word characters; everything else is a boundary
_NOT_AFTER_WORD = f"(?<![{_WORD_CHARS}])"
_NOT_BEFORE_WORD = f"(?![{_WORD_CHARS}])"
_FLAGS = re.IGNORECASE | re.DOTALL


def _segment_regex(segment: str) -> str:
    return "".join("." if c == "?" else re.escape(c) for c in segment)


class _Glob:
    """The spec's glob (`*` any run, `?` one character; nothing else is special),
    matched case-insensitively without backtracking regexes.

    The pattern is split at each `*` into fixed-length segments; matching places
    the first segment as early as possible, every middle one at its leftmost
    occurrence after that, and then asks whether the last fits. Earliest placement
    is always optimal, so this is exact, and it stays linear in the value for every
    pattern: a user's rule like `*a*a*a*a*b` cannot stall the server on a long body.
    """

    def __init__(self, pattern: str) -> None:
        parts = pattern.split("*")
        self.star = len(parts) > 1
        self.lengths = [len(p) for p in parts]
        self.parts = [re.compile(_segment_regex(p), _FLAGS) for p in parts]
        first, last = _segment_regex(parts[0]), _segment_regex(parts[-1])
        if self.star:
            self.first_at_word = re.compile(_NOT_AFTER_WORD + first, _FLAGS)
            self.last_at_word = re.compile(last + _NOT_BEFORE_WORD, _FLAGS)
        else:
            self.first_at_word = re.compile(_NOT_AFTER_WORD + first + _NOT_BEFORE_WORD, _FLAGS)
            self.last_at_word = self.first_at_word

    def _middles(self, value: str, pos: int) -> int | None:
        for rx in self.parts[1:-1]:
            m = rx.search(value, pos)
            if m is None:
                return None
            pos = m.end()
        return pos

    def fullmatch(self, value: str) -> bool:
        """Whether the pattern matches the whole value."""
        if not self.star:
            return self.parts[0].fullmatch(value) is not None
        if self.parts[0].match(value) is None:
            return False
        pos = self._middles(value, self.lengths[0])
        if pos is None:
            return False
        start = len(value) - self.lengths[-1]
        return start >= pos and self.parts[-1].fullmatch(value, start) is not None

    def search_words(self, value: str) -> bool:
        """Whether the pattern matches a substring that starts and ends at word boundaries."""
        m = self.first_at_word.search(value)
        if m is None:
            return False
        if not self.star:
            return True
        pos = self._middles(value, m.end())
        return pos is not None and self.last_at_word.search(value, pos) is not None


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str) -> _Glob:
    return _Glob(pattern)


def glob_matches(pattern: str, value: str, *, word_boundaries: bool = False) -> bool:
    """The spec's glob match: whole value, or (for content.body) any substring at word boundaries."""
    g = _glob(pattern)
    return g.search_words(value) if word_boundaries else g.fullmatch(value)


@functools.lru_cache(maxsize=1024)
def _display_name_regex(name: str) -> re.Pattern[str]:
    return re.compile(_NOT_AFTER_WORD + re.escape(name) + _NOT_BEFORE_WORD, _FLAGS)


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


def _is_scalar(value: Any) -> bool:
    """A non-compound canonical JSON value: string, bool, null or an integer in range."""
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -MAX_SAFE_INT <= value <= MAX_SAFE_INT


def _same_scalar(a: Any, b: Any) -> bool:
    """Exact equality without Python's `True == 1`: types must agree too."""
    if not (_is_scalar(a) and _is_scalar(b)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return type(a) is type(b) and a == b


_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


def _member_count_matches(spec: Any, count: int) -> bool:
    if not isinstance(spec, str):
        return False
    m = _MEMBER_COUNT.fullmatch(spec)
    if m is None:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    if op == "==":
        return count == n
    if op == "<":
        return count < n
    if op == ">":
        return count > n
    if op == "<=":
        return count <= n
    return count >= n


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
        return _display_name_regex(name).search(body) is not None
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
    rules: Mapping[str, Sequence[Mapping[str, Any]]],
    event: Mapping[str, Any],
    room_member_count: int,
    user_display_name: str | None,
    sender_power_level: int,
    power_levels_content: Mapping[str, Any] | None,
) -> list[Action]:
    """The actions of the first enabled rule that matches `event`, or [] if none does.

    - rules: a ruleset as `PushRulesService.ruleset()` returns it (kind -> rules,
      most important first); kinds are checked in the spec's order.
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


# --- validation of client input ---------------------------------------------------


def validate_actions(actions: Any) -> list[Action]:
    """A client's actions array, with historical actions stripped; M_BAD_JSON otherwise."""
    if not isinstance(actions, list):
        raise bad_json("'actions' must be an array")
    out: list[Action] = []
    for a in actions:
        if isinstance(a, str):
            if a in HISTORICAL_ACTIONS:
                continue
            if a != "notify":
                raise bad_json(f"Unrecognised action {a!r}")
            out.append(a)
        elif isinstance(a, dict):
            if not isinstance(a.get("set_tweak"), str):
                raise bad_json("An object action must have a string 'set_tweak'")
            out.append(a)
        else:
            raise bad_json("Each action must be a string or an object")
    return out


def validate_conditions(conditions: Any) -> list[dict[str, Any]]:
    """A client's conditions array. Known kinds must carry their parameters; unknown
    kinds are kept (the spec makes them never match, so they cannot be rejected as errors
    without breaking clients that know newer kinds)."""
    if not isinstance(conditions, list):
        raise bad_json("'conditions' must be an array")
    for c in conditions:
        if not isinstance(c, dict) or not isinstance(c.get("kind"), str):
            raise bad_json("Each condition must be an object with a string 'kind'")
        kind = c["kind"]
        if kind in ("event_match", "event_property_is", "event_property_contains", "sender_notification_permission"):
            if not isinstance(c.get("key"), str):
                raise bad_json(f"A {kind} condition needs a string 'key'")
        if kind == "event_match" and not isinstance(c.get("pattern"), str):
            raise bad_json("An event_match condition needs a string 'pattern'")
        if kind in ("event_property_is", "event_property_contains"):
            if "value" not in c or not _is_scalar(c["value"]):
                raise bad_json(f"A {kind} condition needs a 'value' that is a string, integer, boolean or null")
        if kind == "room_member_count":
            spec = c.get("is")
            if not isinstance(spec, str) or _MEMBER_COUNT.fullmatch(spec) is None:
                raise bad_json("A room_member_count condition needs 'is': an integer, optionally prefixed by ==, <, >, <= or >=")
    return conditions


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind {kind!r}; expected one of {', '.join(KINDS)}")


# --- the service --------------------------------------------------------------------

_CACHE_SIZE = 10_000


class PushRulesService:
    """Stores each user's rules and serves merged rulesets.

    Rulesets are cached per user (this process is the only writer, so invalidating
    on write keeps the cache exact); /sync will ask for them on every unread count.
    Each user's changes are serialised so the m.push_rules account data written
    after a change is never overtaken by the one written after an earlier change.
    """

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.store = PushRuleStore(hs.db)
        self._cache: OrderedDict[str, Ruleset] = OrderedDict()
        self._writes = 0  # bumped around every write: a load that raced one is not cached
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _user_lock(self, user_id: str) -> asyncio.Lock:
        lock = self._user_locks.get(user_id)
        if lock is None:
            lock = asyncio.Lock()
            self._user_locks[user_id] = lock
        return lock

    async def ruleset(self, user_id: str) -> Ruleset:
        """The user's ruleset in evaluation order. Shared with the cache: do not mutate."""
        cached = self._cache.get(user_id)
        if cached is not None:
            self._cache.move_to_end(user_id)
            return cached
        writes = self._writes
        rules, changes = await self.store.load(user_id)
        ruleset = build_ruleset(user_id, rules, changes)
        if writes == self._writes:
            self._cache[user_id] = ruleset
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return ruleset

    async def account_data_content(self, user_id: str) -> dict[str, Any]:
        """The content of the user's m.push_rules account data event."""
        return {"global": await self.ruleset(user_id)}

    async def sync_account_data(self, user_id: str, since: int, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """/sync's global account data events (changed after stream position `since`)
        with m.push_rules made right.

        Each change is written to the account data stream (see `_publish`), which is
        how incremental syncs learn of it. A user who never changed a rule has no
        stored copy, yet clients expect the ruleset in every initial sync (`since`
        0; the account data stream never hands out 0 as a position, so an incremental
        sync never asks for it). Whatever is sent carries the live ruleset, so a
        server upgrade that changes the default rules is not hidden behind a stored copy.
        """
        out = [e for e in events if e.get("type") != PUSH_RULES_TYPE]
        if since == 0 or len(out) != len(events):
            out.append({"type": PUSH_RULES_TYPE, "content": await self.account_data_content(user_id)})
        return out

    async def get_rule(self, user_id: str, kind: str, rule_id: str) -> Rule:
        check_kind(kind)
        for rule in (await self.ruleset(user_id))[kind]:
            if rule["rule_id"] == rule_id:
                return rule
        raise not_found("The push rule was not found")

    async def _change(self, user_id: str, op: Callable[[], Awaitable[bool | None]]) -> bool:
        """Run one change under the user's lock; unless `op` reports that nothing
        changed (False), tell the user's clients. Returns whether it changed anything."""
        async with self._user_lock(user_id):
            self._writes += 1
            try:
                changed = await op() is not False
            finally:
                self._writes += 1
                self._cache.pop(user_id, None)
            if changed:
                await self._publish(user_id)
        return changed

    async def _publish(self, user_id: str) -> None:
        # Clients learn of changes through m.push_rules in /sync's global account data.
        account_data = getattr(self.hs, "account_data", None)
        if account_data is not None:
            await account_data.set_global(user_id, PUSH_RULES_TYPE, await self.account_data_content(user_id))
        self.hs.notifier.notify_users([user_id])

    async def put_rule(self, user_id: str, kind: str, rule_id: str, body: Mapping[str, Any],
                       before: str | None = None, after: str | None = None) -> None:
        """Create or replace a user-defined rule (PUT /pushrules/global/{kind}/{ruleId})."""
        check_kind(kind)
        if rule_id.startswith("."):
            raise invalid_param("Rule IDs starting with '.' are reserved for server-default rules")
        if not rule_id or "/" in rule_id or "\\" in rule_id:
            raise invalid_param("Rule IDs may not be empty or contain '/' or '\\'")
        if kind == "room" and not rule_id.startswith("!"):
            raise invalid_param("The rule ID of a room rule must be the room's ID")
        if kind == "sender" and not rule_id.startswith("@"):
            raise invalid_param("The rule ID of a sender rule must be the sender's user ID")
        for name, anchor in (("before", before), ("after", after)):
            if anchor is not None and anchor.startswith("."):
                raise MatrixError(400, "M_UNKNOWN", f"Cannot place a rule relative to the server-default rule {anchor!r} ({name})")
        if "actions" not in body:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'actions'")
        actions = validate_actions(body["actions"])
        conditions: list[dict[str, Any]] | None = None
        pattern: str | None = None
        if kind in ("override", "underride"):
            raw = body.get("conditions")
            conditions = validate_conditions(raw) if raw is not None else []
        elif kind == "content":
            pattern = body.get("pattern")
            if pattern is None:
                raise MatrixError(400, "M_MISSING_PARAM", "Content rules need a 'pattern'")
            if not isinstance(pattern, str):
                raise bad_json("'pattern' must be a string")

        async def op() -> None:  # always a change: even an identical PUT is published
            try:
                await self.store.put_rule(user_id, kind, rule_id, conditions=conditions, pattern=pattern,
                                          actions=actions, before=before, after=after)
            except AnchorNotFoundError as e:
                raise MatrixError(400, "M_UNKNOWN", f"before/after rule not found: {e.rule_id}") from None

        await self._change(user_id, op)

    async def delete_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if DEFAULT_RULE_KINDS.get(rule_id) == kind:
            raise forbidden("Server-default push rules cannot be deleted; disable them instead")
        if not await self._change(user_id, lambda: self.store.delete_rule(user_id, kind, rule_id)):
            raise not_found("The push rule was not found")

    async def set_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool) -> None:
        check_kind(kind)
        if DEFAULT_RULE_KINDS.get(rule_id) == kind:
            await self._change(user_id, lambda: self.store.set_default_enabled(user_id, rule_id, enabled))
            return
        if not await self._change(user_id, lambda: self.store.set_rule_enabled(user_id, kind, rule_id, enabled)):
            raise not_found("The push rule was not found")

    async def set_actions(self, user_id: str, kind: str, rule_id: str, actions: Any) -> None:
        check_kind(kind)
        checked = validate_actions(actions)
        if DEFAULT_RULE_KINDS.get(rule_id) == kind:
            await self._change(user_id, lambda: self.store.set_default_actions(user_id, rule_id, checked))
            return
        if not await self._change(user_id, lambda: self.store.set_rule_actions(user_id, kind, rule_id, checked)):
            raise not_found("The push rule was not found")
