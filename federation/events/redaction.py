"""The redaction algorithm (room versions, "Redactions").

Redaction is not only a moderation feature: signatures and reference hashes
are computed over the *redacted* form of an event, so that a server holding
only a redacted copy can still verify it and compute its ID. That makes the
per-version lists of surviving keys part of the wire protocol; one wrong key
and event IDs stop matching other servers'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .canonical import json_copy
from .identifiers import domain_of
from .power_levels import StateMap, get_named_level, get_user_power_level
from .room_versions import RoomVersion, get_room_version

__all__ = ["redact_content", "redact_event", "redaction_should_apply", "redaction_target"]

_KEPT_TOP_LEVEL = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
_KEPT_TOP_LEVEL_PRE_V11 = _KEPT_TOP_LEVEL | {"origin", "membership", "prev_state"}

_POWER_LEVEL_KEYS = frozenset(
    {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
)


def redact_content(
    event_type: str, content: Mapping[str, Any], room_version: str | RoomVersion
) -> dict[str, Any]:
    """The part of ``content`` that survives redaction for this event type."""
    rv = get_room_version(room_version)

    def keep(*keys: str) -> dict[str, Any]:
        kept: dict[str, Any] = json_copy({k: content[k] for k in keys if k in content})
        return kept

    if event_type == "m.room.member":
        if rv.redaction_keeps_join_authorised_via:
            kept = keep("membership", "join_authorised_via_users_server")
        else:
            kept = keep("membership")
        if rv.redaction_keeps_third_party_invite_signed:
            invite = content.get("third_party_invite")
            if isinstance(invite, Mapping):
                kept["third_party_invite"] = (
                    {"signed": json_copy(invite["signed"])} if "signed" in invite else {}
                )
        return kept
    if event_type == "m.room.create":
        if rv.redaction_keeps_all_create_content:
            copied: dict[str, Any] = json_copy(dict(content))
            return copied
        return keep("creator")
    if event_type == "m.room.join_rules":
        if rv.redaction_keeps_join_rules_allow:
            return keep("join_rule", "allow")
        return keep("join_rule")
    if event_type == "m.room.power_levels":
        keys = set(_POWER_LEVEL_KEYS)
        if rv.redaction_keeps_power_levels_invite:
            keys.add("invite")
        return keep(*sorted(keys))
    if event_type == "m.room.history_visibility":
        return keep("history_visibility")
    if event_type == "m.room.redaction" and rv.redaction_keeps_redaction_redacts:
        return keep("redacts")
    if event_type == "m.room.aliases" and rv.redaction_keeps_aliases:
        return keep("aliases")
    return {}


def redact_event(event: Mapping[str, Any], room_version: str | RoomVersion) -> dict[str, Any]:
    """Return a redacted deep copy of ``event``; the input is not modified.

    ``unsigned`` is dropped like any other unlisted key: a server serving the
    redacted event to clients adds ``redacted_because`` back itself.
    """
    rv = get_room_version(room_version)
    kept_keys = (
        _KEPT_TOP_LEVEL_PRE_V11 if rv.redaction_keeps_origin_membership_prev_state else _KEPT_TOP_LEVEL
    )
    redacted: dict[str, Any] = json_copy(
        {k: v for k, v in event.items() if k in kept_keys and k != "content"}
    )
    content = event.get("content")
    event_type = event.get("type")
    if isinstance(content, Mapping) and isinstance(event_type, str):
        redacted["content"] = redact_content(event_type, content, rv)
    else:
        redacted["content"] = {}
    return redacted


def redaction_target(event: Mapping[str, Any], room_version: str | RoomVersion) -> str | None:
    """The event ID an ``m.room.redaction`` event redacts, wherever the version keeps it.

    v11 moved ``redacts`` into ``content``; reading it through here keeps
    callers from having to know which room version they are in.
    """
    rv = get_room_version(room_version)
    if event.get("type") != "m.room.redaction":
        return None
    if rv.redacts_in_content:
        content = event.get("content")
        target = content.get("redacts") if isinstance(content, Mapping) else None
    else:
        target = event.get("redacts")
    return target if isinstance(target, str) else None


def redaction_should_apply(
    redaction: Mapping[str, Any],
    target: Mapping[str, Any],
    state: StateMap,
    room_version: str | RoomVersion,
) -> bool:
    """"Handling redactions": whether an accepted redaction may be applied to ``target``.

    The auth rules let almost any member send ``m.room.redaction``; this is
    the separate check, made once both events are known, that the redacter
    either holds the redact level (in ``state``, normally the state before
    the redaction) or is on the same server as the original sender.
    """
    rv = get_room_version(room_version)
    sender = redaction.get("sender")
    if not isinstance(sender, str):
        return False
    if get_user_power_level(sender, state, rv) >= get_named_level(state, "redact"):
        return True
    if rv.redaction_auth_rule:
        # v1/v2: the auth rules' condition, on the servers that made the two event IDs.
        try:
            return domain_of(str(redaction.get("event_id"))) == domain_of(str(target.get("event_id")))
        except ValueError:
            return False
    target_sender = target.get("sender")
    try:
        return isinstance(target_sender, str) and domain_of(sender) == domain_of(target_sender)
    except ValueError:
        return False
