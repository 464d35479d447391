"""Authorisation rules for room versions 1 to 12.

The rules are split the way the spec's receipt checks use them:

* :func:`check_auth_events` is the "considering the event's auth_events"
  block: structural checks on the list of auth events an event cites.
* :func:`check_auth` is every other rule, evaluated against a state map.
  The same function serves all three checks on receipt (auth events, state
  before the event, current state for soft failure) and the iterative auth
  checks of state resolution; only the state passed in differs.
* :func:`check_event_auth` combines both for the common "against its own
  auth events" case.

Events are plain PDU dicts that carry their ``event_id`` (see
``hashing.pdu_json``). A failed rule raises :class:`AuthError`; its message
is meant to be shown to users as ``M_FORBIDDEN`` and names the spec rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import nacl.exceptions
import nacl.signing

from .canonical import CanonicalJSONError, decode_base64, encode_canonical_json
from .hashing import compute_event_id, create_event_id_from_room_id
from .identifiers import domain_of, is_valid_user_id
from .power_levels import (
    CREATE_KEY,
    CREATOR_POWER_LEVEL,
    POWER_LEVELS_KEY,
    Event,
    StateKey,
    StateMap,
    get_named_level,
    get_required_power_level,
    get_user_power_level,
    parse_power_level,
    room_creators,
)
from .references import prev_event_ids
from .room_versions import KNOWN_ROOM_VERSION_IDS, RoomVersion, get_room_version

__all__ = [
    "AuthError",
    "auth_types_for_event",
    "check_auth",
    "check_auth_events",
    "check_event_auth",
    "event_id_of",
    "select_auth_event_ids",
    "third_party_invite_signature_valid",
]

JOIN_RULES_KEY: StateKey = ("m.room.join_rules", "")

_NAMED_INT_LEVELS = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)

#: ``verify_signature(event, server_name) -> bool``: whether the event carries
#: a valid signature from that server, with keys the caller trusts.
SignatureVerifier = Callable[[Event, str], bool]


class AuthError(Exception):
    """An event failed an authorisation rule.

    ``rule`` is the rule's number in the room version's spec text (numbering
    shifts in v12, which inserted rules), ``reason`` the human explanation.
    """

    def __init__(self, rule: str, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(f"{reason} (auth rule {rule})")


def _rule(rv: RoomVersion, v10_number: str) -> str:
    """Translate a v10/v11 rule number to the room version's own numbering.

    v1-v5 have the ``m.room.aliases`` rule as rule 4, so every later rule is
    one further on (sub-rules that only later versions have keep the v10
    number). v12 inserted rule 2 (room ID is the create event ID) and rule
    10.4 (creators not in ``users``), shifting everything after them.
    """
    if rv.special_case_aliases_auth:
        head, dot, rest = v10_number.partition(".")
        return str(int(head) + 1) + dot + rest if head.isdigit() and int(head) >= 4 else v10_number
    if not rv.room_id_is_create_event_id:
        return v10_number
    parts = v10_number.split(".")
    top = int(parts[0])
    if top >= 2:
        parts[0] = str(top + 1)
    if top == 9 and len(parts) > 1 and int(parts[1]) >= 4:
        parts[1] = str(int(parts[1]) + 1)
    return ".".join(parts)


def _content(event: Event | None) -> Mapping[str, Any]:
    if event is None:
        return {}
    content = event.get("content")
    return _mapping_or_empty(content)


def _mapping_or_empty(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _membership(state: StateMap, user_id: str) -> str | None:
    membership = _content(state.get(("m.room.member", user_id))).get("membership")
    return membership if isinstance(membership, str) else None


def _join_rule(state: StateMap) -> str:
    # The spec gives no join rule when there is no m.room.join_rules event
    # (state resolution v2 can produce such a state). Synapse treats it as
    # "invite", Ruma as "nothing matches"; we follow Synapse so that invited
    # users can join such rooms on both, keeping servers converged.
    join_rule = _content(state.get(JOIN_RULES_KEY)).get("join_rule", "invite")
    return join_rule if isinstance(join_rule, str) else "invite"


def event_id_of(event: Event, room_version: str | RoomVersion) -> str:
    """The event's ID: its ``event_id`` key if present, else computed from the PDU."""
    event_id = event.get("event_id")
    if isinstance(event_id, str):
        return event_id
    return compute_event_id(event, room_version)


def _domain(user_id: Any) -> str | None:
    if not isinstance(user_id, str):
        return None
    try:
        return domain_of(user_id)
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Auth events selection
# ---------------------------------------------------------------------------


def _auth_types_in_order(event: Event, rv: RoomVersion) -> list[StateKey]:
    if event.get("type") == "m.room.create":
        return []
    keys: list[StateKey] = []
    if rv.create_event_in_auth_events:
        keys.append(CREATE_KEY)
    keys.append(POWER_LEVELS_KEY)
    sender = event.get("sender")
    if isinstance(sender, str):
        keys.append(("m.room.member", sender))
    if event.get("type") == "m.room.member":
        content = _content(event)
        membership = content.get("membership")
        target = event.get("state_key")
        if isinstance(target, str):
            keys.append(("m.room.member", target))
        if membership in ("join", "invite", "knock"):
            keys.append(JOIN_RULES_KEY)
        if membership == "invite":
            invite = content.get("third_party_invite")
            signed = invite.get("signed") if isinstance(invite, Mapping) else None
            token = signed.get("token") if isinstance(signed, Mapping) else None
            if isinstance(token, str):
                keys.append(("m.room.third_party_invite", token))
        if membership == "join" and rv.restricted_join_rule:
            authoriser = content.get("join_authorised_via_users_server")
            if isinstance(authoriser, str):
                keys.append(("m.room.member", authoriser))
    return list(dict.fromkeys(keys))  # without repeats, in order


def auth_types_for_event(event: Event, room_version: str | RoomVersion) -> set[StateKey]:
    """The ``(type, state_key)`` pairs the "auth events selection" algorithm picks from.

    Works on partially built events (only ``type``, ``sender``,
    ``state_key`` and ``content`` are read), so the homeserver can select
    auth events before the PDU exists.
    """
    return set(_auth_types_in_order(event, get_room_version(room_version)))


def select_auth_event_ids(
    event: Event, current_state_ids: Mapping[StateKey, str], room_version: str | RoomVersion
) -> list[str]:
    """Pick ``auth_events`` for a new event from the current state's event IDs."""
    rv = get_room_version(room_version)
    return [
        current_state_ids[key]
        for key in _auth_types_in_order(event, rv)
        if key in current_state_ids
    ]


# ---------------------------------------------------------------------------
# Rule 2 (v12: 3): the event's auth_events
# ---------------------------------------------------------------------------


def check_auth_events(
    event: Event,
    auth_events: Sequence[Event],
    room_version: str | RoomVersion,
    *,
    is_rejected: Callable[[str], bool] | None = None,
) -> None:
    """Structural checks on the events cited in ``auth_events``.

    ``auth_events`` are the fetched events, in any order. ``is_rejected``
    reports whether an event was rejected on receipt; without it none are.
    """
    rv = get_room_version(room_version)
    if event.get("type") == "m.room.create":
        return
    room_id = event.get("room_id")
    expected = set(_auth_types_in_order(event, rv))
    seen: dict[StateKey, str] = {}
    for auth_event in auth_events:
        auth_id = event_id_of(auth_event, rv)
        key = (auth_event.get("type"), auth_event.get("state_key"))
        if key in seen:
            raise AuthError(_rule(rv, "2.1"), f"Duplicate auth events for {key}")
        if key not in expected:
            raise AuthError(_rule(rv, "2.2"), f"Auth event {auth_id} of type {key} is not needed")
        if is_rejected is not None and is_rejected(auth_id):
            raise AuthError(_rule(rv, "2.3"), f"Auth event {auth_id} was rejected")
        if auth_event.get("room_id") != room_id:
            raise AuthError(_rule(rv, "2.5"), f"Auth event {auth_id} is from another room")
        seen[key] = auth_id
    if rv.create_event_in_auth_events and CREATE_KEY not in seen:
        raise AuthError("2.4", "No m.room.create event in auth events")


# ---------------------------------------------------------------------------
# The state-dependent rules
# ---------------------------------------------------------------------------


def check_auth(
    event: Event,
    state: StateMap,
    room_version: str | RoomVersion,
    *,
    verify_signature: SignatureVerifier | None = None,
    is_rejected: Callable[[str], bool] | None = None,
) -> None:
    """Apply the authorisation rules to ``event`` given the room ``state``.

    ``state`` maps ``(type, state_key)`` to event dicts; only the keys from
    :func:`auth_types_for_event` plus the create event are consulted. For v12
    the create event must be in ``state`` even though it is never an auth
    event. ``verify_signature`` is used for the ``join_authorised_via_users_server``
    signature rule; when omitted that rule is taken as already enforced by
    signature checks on receipt (see ``signing.servers_required_to_sign``).
    """
    rv = get_room_version(room_version)
    if not isinstance(event.get("sender"), str) or not isinstance(event.get("type"), str):
        raise AuthError("format", "Event has no sender or type")

    if event["type"] == "m.room.create":
        _check_create(event, rv)
        return

    create_event = state.get(CREATE_KEY)
    if create_event is None:
        raise AuthError(
            "2" if rv.room_id_is_create_event_id else "2.4",
            "No m.room.create event in the room state",
        )
    if rv.room_id_is_create_event_id:
        room_id = event.get("room_id")
        if (
            not isinstance(room_id, str)
            or not room_id.startswith("!")
            or create_event_id_from_room_id(room_id) != event_id_of(create_event, rv)
            or (is_rejected is not None and is_rejected(event_id_of(create_event, rv)))
        ):
            raise AuthError("2", "Room ID is not the ID of an accepted m.room.create event")

    # Rule 3: m.federate
    if _content(create_event).get("m.federate", True) is False and _domain(
        event["sender"]
    ) != _domain(create_event.get("sender")):
        raise AuthError(_rule(rv, "3"), "This room does not allow users from other servers")

    if event["type"] == "m.room.aliases" and rv.special_case_aliases_auth:
        # v1-v5 rule 4: a server may set the aliases keyed by its own name, member or not.
        state_key = event.get("state_key")
        if not isinstance(state_key, str) or not state_key:
            raise AuthError("4.1", "m.room.aliases must have a state_key")
        if state_key != _domain(event["sender"]):
            raise AuthError("4.2", "m.room.aliases state_key must be the sender's server")
        return

    if event["type"] == "m.room.member":
        _check_membership(event, state, rv, create_event, verify_signature)
        return

    sender = event["sender"]
    if _membership(state, sender) != "join":
        raise AuthError(_rule(rv, "5"), f"{sender} is not joined to the room")

    sender_level = get_user_power_level(sender, state, rv)

    if event["type"] == "m.room.third_party_invite":
        if sender_level >= get_named_level(state, "invite"):
            return
        raise AuthError(_rule(rv, "6.1"), "Insufficient power level to invite users")

    state_key = event.get("state_key")
    if state_key is not None and not isinstance(state_key, str):
        raise AuthError("format", "state_key must be a string")
    required = get_required_power_level(state, event["type"], state_key)
    if required > sender_level:
        raise AuthError(
            _rule(rv, "7"),
            f"Insufficient power level to send {event['type']} "
            f"(need {required}, have {_show_level(sender_level)})",
        )

    if isinstance(state_key, str) and state_key.startswith("@") and state_key != sender:
        raise AuthError(_rule(rv, "8"), "Cannot set state keyed by another user's ID")

    if event["type"] == "m.room.power_levels":
        _check_power_levels(event, state, rv, create_event, sender_level)

    if event["type"] == "m.room.redaction" and rv.redaction_auth_rule:
        _check_redaction(event, state, rv, sender_level)


def _check_redaction(event: Event, state: StateMap, rv: RoomVersion, sender_level: int | float) -> None:
    """v1/v2 rule 11: the redact level, or both event IDs made by the same server.

    (From v3 a redaction always passes the auth rules, and whether it applies
    is decided once its target is known: ``redaction.redaction_should_apply``.)
    """
    if sender_level >= get_named_level(state, "redact"):
        return
    redacts = event.get("redacts")
    own_id = event.get("event_id")
    if (
        isinstance(redacts, str)
        and isinstance(own_id, str)
        and _domain(redacts) is not None
        and _domain(redacts) == _domain(own_id)
    ):
        return
    raise AuthError("11.3", "Insufficient power level to redact events of another server")


def check_event_auth(
    event: Event,
    auth_events: Sequence[Event],
    room_version: str | RoomVersion,
    *,
    create_event: Event | None = None,
    is_rejected: Callable[[str], bool] | None = None,
    verify_signature: SignatureVerifier | None = None,
) -> None:
    """Receipt check 4: the event passes the rules against its own auth events.

    For v12 pass ``create_event`` (the event whose ID the room ID encodes),
    since it is deliberately absent from ``auth_events``.
    """
    rv = get_room_version(room_version)
    if event.get("type") == "m.room.create":
        check_auth(event, {}, rv)
        return
    check_auth_events(event, auth_events, rv, is_rejected=is_rejected)
    state: dict[StateKey, Event] = {
        (e["type"], e["state_key"]): e for e in auth_events
    }
    if rv.room_id_is_create_event_id:
        if create_event is None:
            raise AuthError("2", "The room's m.room.create event is unknown")
        state[CREATE_KEY] = create_event
    check_auth(event, state, rv, verify_signature=verify_signature, is_rejected=is_rejected)


def _check_create(event: Event, rv: RoomVersion) -> None:
    if event.get("prev_events"):
        raise AuthError("1.1", "m.room.create must not have prev_events")
    if rv.room_id_is_create_event_id:
        if "room_id" in event:
            raise AuthError("1.2", "m.room.create must not have a room_id in this room version")
    else:
        room_domain = _domain(event.get("room_id"))
        if room_domain is None or room_domain != _domain(event.get("sender")):
            raise AuthError("1.2", "Room ID domain does not match the creator's server")
    content = _content(event)
    if "room_version" in content and content["room_version"] not in KNOWN_ROOM_VERSION_IDS:
        raise AuthError("1.3", f"Unknown room version {content['room_version']!r}")
    if rv.create_requires_creator_field and "creator" not in content:
        raise AuthError("1.4", "m.room.create has no creator")
    if rv.creators_have_infinite_power and "additional_creators" in content:
        extra = content["additional_creators"]
        if not isinstance(extra, list) or not all(is_valid_user_id(u) for u in extra):
            raise AuthError("1.4", "additional_creators must be a list of valid user IDs")


# ---------------------------------------------------------------------------
# Rule 4 (v12: 5): m.room.member
# ---------------------------------------------------------------------------


def _check_membership(
    event: Event,
    state: StateMap,
    rv: RoomVersion,
    create_event: Event,
    verify_signature: SignatureVerifier | None,
) -> None:
    content = _content(event)
    target = event.get("state_key")
    membership = content.get("membership")
    if not isinstance(target, str) or "membership" not in content:
        raise AuthError(_rule(rv, "4.1"), "Membership event needs a state_key and membership")

    sender: str = event["sender"]

    if verify_signature is not None and "join_authorised_via_users_server" in content:
        authoriser = content["join_authorised_via_users_server"]
        server = _domain(authoriser) if is_valid_user_id(authoriser) else None
        if server is None or not verify_signature(event, server):
            raise AuthError(
                _rule(rv, "4.2.1"), "Event is not signed by the authorising user's server"
            )

    sender_membership = _membership(state, sender)
    target_membership = _membership(state, target)

    if membership == "join":
        _check_join(event, state, rv, create_event, sender, target, sender_membership)
    elif membership == "invite":
        _check_invite(event, state, rv, sender, target, sender_membership, target_membership)
    elif membership == "leave":
        _check_leave(state, rv, sender, target, sender_membership, target_membership)
    elif membership == "ban":
        sender_level = get_user_power_level(sender, state, rv)
        if sender_membership != "join":
            raise AuthError(_rule(rv, "4.6.1"), f"{sender} is not joined to the room")
        if sender_level >= get_named_level(state, "ban") and get_user_power_level(
            target, state, rv
        ) < sender_level:
            return
        raise AuthError(_rule(rv, "4.6.3"), f"Insufficient power level to ban {target}")
    elif membership == "knock" and rv.knock_join_rule:
        join_rule = _join_rule(state)
        allowed = {"knock", "knock_restricted"} if rv.knock_restricted_join_rule else {"knock"}
        if join_rule not in allowed:
            raise AuthError(_rule(rv, "4.7.1"), "This room does not allow knocking")
        if sender != target:
            raise AuthError(_rule(rv, "4.7.2"), "Cannot knock on behalf of another user")
        if sender_membership not in ("ban", "invite", "join"):
            return
        raise AuthError(
            _rule(rv, "4.7.4"), f"Cannot knock while membership is {sender_membership}"
        )
    else:
        raise AuthError(_rule(rv, "4.8"), f"Unknown membership {membership!r}")


def _check_join(
    event: Event,
    state: StateMap,
    rv: RoomVersion,
    create_event: Event,
    sender: str,
    target: str,
    sender_membership: str | None,
) -> None:
    prev_events = prev_event_ids(event)
    if rv.create_requires_creator_field:
        creator = _content(create_event).get("creator")
    else:
        creator = create_event.get("sender")
    if (
        len(prev_events) == 1
        and prev_events[0] == event_id_of(create_event, rv)
        and target == creator
    ):
        return
    if sender != target:
        raise AuthError(_rule(rv, "4.3.2"), "Cannot join on behalf of another user")
    if sender_membership == "ban":
        raise AuthError(_rule(rv, "4.3.3"), "You are banned from this room")

    join_rule = _join_rule(state)
    invite_like = {"invite", "knock"} if rv.knock_join_rule else {"invite"}
    restricted_like: set[str] = set()
    if rv.restricted_join_rule:
        restricted_like.add("restricted")
    if rv.knock_restricted_join_rule:
        restricted_like.add("knock_restricted")

    if join_rule in invite_like:
        if sender_membership in ("invite", "join"):
            return
    elif join_rule in restricted_like:
        if sender_membership in ("join", "invite"):
            return
        authoriser = _content(event).get("join_authorised_via_users_server")
        if (
            not isinstance(authoriser, str)
            or _membership(state, authoriser) != "join"
            or get_user_power_level(authoriser, state, rv) < get_named_level(state, "invite")
        ):
            raise AuthError(
                _rule(rv, "4.3.5.2"),
                "Join is not authorised by a joined user able to invite",
            )
        return
    elif join_rule == "public":
        return
    raise AuthError(_rule(rv, "4.3.7"), "You are not invited to this room")


def _check_invite(
    event: Event,
    state: StateMap,
    rv: RoomVersion,
    sender: str,
    target: str,
    sender_membership: str | None,
    target_membership: str | None,
) -> None:
    content = _content(event)
    if "third_party_invite" in content:
        if target_membership == "ban":
            raise AuthError(_rule(rv, "4.4.1.1"), f"{target} is banned from the room")
        invite = content["third_party_invite"]
        signed = invite.get("signed") if isinstance(invite, Mapping) else None
        if not isinstance(signed, Mapping):
            raise AuthError(_rule(rv, "4.4.1.2"), "third_party_invite has no signed block")
        if "mxid" not in signed or "token" not in signed:
            raise AuthError(_rule(rv, "4.4.1.3"), "signed block needs mxid and token")
        if signed["mxid"] != target:
            raise AuthError(_rule(rv, "4.4.1.4"), "signed mxid does not match the invitee")
        token = signed["token"]
        tp_invite = (
            state.get(("m.room.third_party_invite", token)) if isinstance(token, str) else None
        )
        if tp_invite is None:
            raise AuthError(_rule(rv, "4.4.1.5"), "No matching m.room.third_party_invite")
        if tp_invite.get("sender") != sender:
            raise AuthError(
                _rule(rv, "4.4.1.6"), "Sender did not send the m.room.third_party_invite"
            )
        if third_party_invite_signature_valid(signed, tp_invite):
            return
        raise AuthError(
            _rule(rv, "4.4.1.8"), "Third-party invite is not signed by the identity server"
        )

    if sender_membership != "join":
        raise AuthError(_rule(rv, "4.4.2"), f"{sender} is not joined to the room")
    if target_membership in ("join", "ban"):
        raise AuthError(
            _rule(rv, "4.4.3"),
            f"{target} is already joined" if target_membership == "join" else f"{target} is banned",
        )
    if get_user_power_level(sender, state, rv) >= get_named_level(state, "invite"):
        return
    raise AuthError(_rule(rv, "4.4.5"), "Insufficient power level to invite users")


def _check_leave(
    state: StateMap,
    rv: RoomVersion,
    sender: str,
    target: str,
    sender_membership: str | None,
    target_membership: str | None,
) -> None:
    if sender == target:
        may_leave = ("invite", "join", "knock") if rv.knock_join_rule else ("invite", "join")
        if sender_membership in may_leave:
            return
        raise AuthError(_rule(rv, "4.5.1"), f"Cannot leave with membership {sender_membership}")
    if sender_membership != "join":
        raise AuthError(_rule(rv, "4.5.2"), f"{sender} is not joined to the room")
    sender_level = get_user_power_level(sender, state, rv)
    if target_membership == "ban" and sender_level < get_named_level(state, "ban"):
        raise AuthError(_rule(rv, "4.5.3"), f"Insufficient power level to unban {target}")
    if sender_level >= get_named_level(state, "kick") and get_user_power_level(
        target, state, rv
    ) < sender_level:
        return
    raise AuthError(_rule(rv, "4.5.5"), f"Insufficient power level to kick {target}")


def third_party_invite_signature_valid(
    signed: Mapping[str, Any], third_party_invite: Event
) -> bool:
    """Whether any signature on ``signed`` verifies with any key of the invite event.

    The identity server's name in ``signatures`` is not trusted for anything:
    the keys come from the room's own ``m.room.third_party_invite`` event.
    """
    content = _content(third_party_invite)
    public_keys: list[str] = []
    if isinstance(content.get("public_key"), str):
        public_keys.append(content["public_key"])
    extra = content.get("public_keys")
    if isinstance(extra, list):
        for entry in extra:
            if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str):
                public_keys.append(entry["public_key"])

    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    try:
        message = encode_canonical_json(
            {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
        )
    except CanonicalJSONError:
        return False

    candidate_signatures: list[bytes] = []
    for server_sigs in signatures.values():
        if not isinstance(server_sigs, Mapping):
            continue
        for key_id, sig in server_sigs.items():
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            try:
                candidate_signatures.append(decode_base64(sig))
            except ValueError:
                continue

    for encoded_key in public_keys:
        try:
            verify_key = nacl.signing.VerifyKey(decode_base64(encoded_key))
        except (ValueError, TypeError, nacl.exceptions.CryptoError):
            continue
        for signature in candidate_signatures:
            try:
                verify_key.verify(message, signature)
                return True
            except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                continue
    return False


# ---------------------------------------------------------------------------
# Rule 9 (v12: 10): m.room.power_levels
# ---------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return type(value) is int


def _check_power_levels(
    event: Event,
    state: StateMap,
    rv: RoomVersion,
    create_event: Event,
    sender_level: int | float,
) -> None:
    content = _content(event)
    if rv.integer_power_levels:
        for name in _NAMED_INT_LEVELS:
            if name in content and not _is_int(content[name]):
                raise AuthError(_rule(rv, "9.1"), f"Power level {name!r} must be an integer")
        for name in ("events", "notifications"):
            if name in content:
                value = content[name]
                if not isinstance(value, Mapping) or not all(_is_int(v) for v in value.values()):
                    raise AuthError(
                        _rule(rv, "9.2"), f"{name!r} must map to integer power levels"
                    )
    if "users" in content:
        users = content["users"]
        value_ok = _is_int if rv.integer_power_levels else _is_level
        if not isinstance(users, Mapping) or not all(
            is_valid_user_id(k) and value_ok(v) for k, v in users.items()
        ):
            raise AuthError(_rule(rv, "9.3"), "'users' must map valid user IDs to integers")
    else:
        users = {}
    if rv.creators_have_infinite_power:
        creators = room_creators(create_event, rv)
        if any(user in creators for user in users):
            raise AuthError("10.4", "Room creators cannot be listed in power levels 'users'")

    previous = state.get(POWER_LEVELS_KEY)
    if previous is None:
        return
    old = _content(previous)

    for name in _NAMED_INT_LEVELS:
        old_value, new_value = old.get(name), content.get(name)
        if (name in old) == (name in content) and _level(old_value) == _level(new_value):
            continue
        if name in old and _level(old_value) > sender_level:
            raise AuthError(
                _rule(rv, "9.5.1"), f"Cannot change {name!r} from a level above your own"
            )
        if name in content and _level(new_value) > sender_level:
            raise AuthError(_rule(rv, "9.5.2"), f"Cannot set {name!r} above your own level")

    checked_maps = ("events", "notifications") if rv.limit_notifications_power_levels else ("events",)
    for name in checked_maps:
        old_map = _mapping_or_empty(old.get(name))
        new_map = _mapping_or_empty(content.get(name))
        for key in set(old_map) | set(new_map):
            in_old, in_new = key in old_map, key in new_map
            if in_old and in_new and _level(old_map[key]) == _level(new_map[key]):
                continue
            if in_old and _level(old_map[key]) > sender_level:
                raise AuthError(
                    _rule(rv, "9.6.1"),
                    f"Cannot change {name}[{key!r}] from a level above your own",
                )
            if in_new and _level(new_map[key]) > sender_level:
                raise AuthError(
                    _rule(rv, "9.7.1"), f"Cannot set {name}[{key!r}] above your own level"
                )

    old_users = _mapping_or_empty(old.get("users"))
    sender = event["sender"]
    for user in set(old_users) | set(users):
        in_old, in_new = user in old_users, user in users
        if in_old and in_new and _level(old_users[user]) == _level(users[user]):
            continue
        if in_old and user != sender and _level(old_users[user]) >= sender_level:
            raise AuthError(
                _rule(rv, "9.8.1"),
                f"Cannot change the level of {user}, who is not below your own",
            )
        if in_new and _level(users[user]) > sender_level:
            raise AuthError(_rule(rv, "9.9.1"), f"Cannot raise {user} above your own level")


def _show_level(level: int | float) -> str:
    return "creator" if level == CREATOR_POWER_LEVEL else str(level)


def _is_level(value: Any) -> bool:
    """Before v10: an integer, a string holding one, or a float (truncated)."""
    return parse_power_level(value) is not None


def _level(value: Any) -> int | float:
    """A level for comparison (see ``power_levels.parse_power_level``);
    anything else, only possible in an event that never passed auth,
    counts as 0."""
    parsed = parse_power_level(value)
    return 0 if parsed is None else parsed
