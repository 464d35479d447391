"""The spec's predefined push rules, and a user's ruleset: those rules merged with
the rules the user defined and the user's enabled/actions changes to the predefined
ones, in the spec's evaluation order.

Kinds are checked override, content, room, sender, underride; within a kind the
user's rules come before the server's, except `.m.rule.master`, which outranks
everything so that enabling it silences every notification.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from homeserver.records.push_rules import DefaultRuleChange, UserRule

Action = str | dict[str, Any]
Rule = dict[str, Any]
Ruleset = dict[str, list[Rule]]  # kind -> rules, most important first

# The kinds in the order the spec checks them.
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")
MASTER = ".m.rule.master"
# Server-default rules that look for mentions in the body. Spec v1.17 dropped them
# from the predefined list, but clients and bots that do not send `m.mentions` still
# rely on them, and the spec lets a server define extra dot-prefixed defaults. As
# intentional mentions (v1.7) specified, they are skipped for any event whose
# content has an `m.mentions` property, so they never double up with the new rules.
LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif"}
)

_SOUND_DEFAULT: dict[str, Any] = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: dict[str, Any] = {"set_tweak": "highlight"}


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
    for user_rule in user_rules:
        if user_rule.kind in mine:
            mine[user_rule.kind].append(_user_rule_json(user_rule))
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
