"""Random JSON at every endpoint that takes a body, client and federation alike.

The routes come from the server's own router, so an endpoint added later is fuzzed without
touching this file. Each gets bodies from hypothesis: arbitrary JSON (deep nesting up to ~300
levels, integers far outside 64 bits, floats, any unicode including NUL, long strings), the
route's own well-formed body with parts replaced by such values, and a few non-JSON bytes.
Federation bodies are signed with a real second server's key, so they get past request
authentication. Every answer must be a success or a 4xx carrying a Matrix ``errcode``; never
a 5xx. Afterwards ``/sync`` and ``/messages`` still answer and a fresh message still reaches
the peer server (its sender was not wedged by anything the fuzzing stored).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
import json
import os
import re
import secrets
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from federation.events import build_event, pdu_json, select_auth_event_ids
from federation.request_auth import sign_request
from homeserver.config import RESOURCES
from homeserver.server import HomeServer
from tests.homeserver.federation.servers import ServerSpec, running_server
from tests.tls_ca import TestCA

EXAMPLES_PER_ROUTE = int(os.environ.get("ACCORD_FUZZ_EXAMPLES", "80"))
PASSWORD = "random-json-password-8d2f"

# ---------------------------------------------------------------------------------------------
# JSON values

# Field names the handlers read, so random objects often carry a field a handler looks at.
FIELD_NAMES = [
    "body", "msgtype", "format", "formatted_body", "user_id", "reason", "room_id", "membership",
    "displayname", "avatar_url", "presence", "status_msg", "typing", "timeout", "actions",
    "conditions", "pattern", "kind", "key", "is", "enabled", "event_id", "content", "type",
    "state_key", "sender", "pdus", "edus", "edu_type", "origin", "origin_server_ts", "name",
    "topic", "preset", "visibility", "invite", "initial_state", "power_level_content_override",
    "creation_content", "room_version", "room_alias_name", "is_direct", "limit", "since",
    "filter", "generic_search_term", "room_types", "server", "room", "account_data",
    "event_fields", "event_format", "not_types", "types", "rooms", "not_rooms", "senders",
    "not_senders", "lazy_load_members", "include_leave", "timeline", "state", "ephemeral",
    "auth", "session", "password", "new_password", "logout_devices", "identifier",
    "device_id", "devices", "initial_device_display_name", "display_name", "refresh_token",
    "username", "token", "score", "new_version", "alias", "servers", "m.fully_read", "m.read",
    "m.read.private", "thread_id", "ts", "data", "event_ids", "users", "users_default",
    "events", "events_default", "state_default", "ban", "kick", "redact", "notifications",
    "join_rule", "allow", "deny", "allow_ip_literals", "history_visibility", "earliest_events",
    "latest_events", "min_depth", "event", "invite_room_state", "prev_events", "auth_events",
    "depth", "hashes", "signatures", "unsigned", "redacts", "push", "last_active_ago",
    "currently_active", "server_keys", "minimum_valid_until_ts", "admin", "deactivated",
    "erase", "uses_allowed", "expiry_time", "length", "message", "server_name", "block",
    "purge", "new_room_user_id", "room_name", "messages_per_second", "burst_count",
    "m.relates_to", "rel_type", "m.new_content", "url", "info", "text", "specialties",
    "location", "verified_only", "organization", "expires_ts", "request_id", "accept",
]


def _unicode_text(max_size: int) -> st.SearchStrategy[str]:
    # Any code point but lone surrogates (not encodable as UTF-8, so not JSON on the wire).
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)


LONG_TEXT = st.tuples(
    st.characters(exclude_categories=("Cs",)), st.integers(1_000, 70_000)
).map(lambda t: t[0] * t[1])

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    # Edges: JSON-safe integers (2^53), signed and unsigned 64 bits, past 64 bits.
    st.sampled_from([2**53 - 1, 2**53, 2**53 + 1, -(2**53), 2**63 - 1, 2**63, 2**64 - 1, 2**64,
                     -(2**63), -(2**63) - 1, 0, -1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
)


def json_values(plausible: list[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), NUMBERS, _unicode_text(40), st.sampled_from(plausible + FIELD_NAMES),
    )
    keys = st.one_of(st.sampled_from(FIELD_NAMES), _unicode_text(20))
    shallow = st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
        ),
        max_leaves=20,
    )
    deep = st.builds(
        _nest, st.integers(2, 300), shallow, st.lists(st.booleans(), min_size=1, max_size=3), keys
    )
    return st.one_of(shallow, shallow, deep, LONG_TEXT)


def _nest(depth: int, leaf: Any, pattern: list[bool], key: str) -> Any:
    """``leaf`` inside ``depth`` levels of objects and arrays (built iteratively)."""
    value = leaf
    for i in range(depth):
        value = {key: value} if pattern[i % len(pattern)] else [value]
    return value


def _slots(value: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """Every (container, key-or-index) of a small template, the places a mutation can hit."""
    if depth > 6:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield value, k
            yield from _slots(v, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield value, i
            yield from _slots(v, depth + 1)


@st.composite
def mutated(draw: st.DrawFn, template: Any, values: st.SearchStrategy[Any]) -> Any:
    """The route's well-formed body with one to three parts replaced, added or removed."""
    body = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        slots = list(_slots(body))
        if not slots or draw(st.integers(0, 4)) == 0:
            if isinstance(body, dict):
                body[draw(st.sampled_from(FIELD_NAMES))] = draw(values)
            continue
        container, key = draw(st.sampled_from(slots))
        if draw(st.integers(0, 4)) == 0:
            del container[key]
        else:
            container[key] = draw(st.one_of(values, _near(container[key])))
    return body


INT_EDGES = st.sampled_from([2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) - 1, -1, 0,
                             2**31, 10**15, -(10**15)])


def _near(current: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON type as a template's field, at that type's edges: a field that
    takes an integer gets integers of every size, a string field long or odd strings."""
    if isinstance(current, bool) or current is None:
        return st.one_of(st.booleans(), st.none(), st.integers(-1, 2), st.sampled_from(["true", ""]))
    if isinstance(current, int):
        return st.one_of(INT_EDGES, NUMBERS, st.floats(allow_nan=False, allow_infinity=False))
    if isinstance(current, str):
        return st.one_of(st.just(""), _unicode_text(8), LONG_TEXT, st.just(current + "\x00"))
    if isinstance(current, list):
        return st.one_of(st.just([]), st.lists(st.one_of(INT_EDGES, _unicode_text(8)), max_size=3),
                         st.just(current * 200))
    return st.one_of(st.just({}), st.dictionaries(_unicode_text(8), INT_EDGES, max_size=3))


@dataclass
class Sent:
    """One request's body: JSON or raw bytes."""

    raw: bytes
    value: Any = None
    is_json: bool = True
    event_id: str | None = None  # a signed event's ID, for routes that name it in the path

    def describe(self) -> str:
        if not self.is_json:
            return f"raw bytes {self.raw[:80]!r}"
        return f"JSON of {len(self.raw)} bytes, nesting {_depth(self.value)}: {self.raw[:300]!r}"


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else [])]
    return depth - 1


def bodies(template: Any, plausible: list[str], pin: Callable[[Any], Any],
           signed: st.SearchStrategy[Sent] | None = None) -> st.SearchStrategy[Sent]:
    values = json_values(plausible)
    objects = st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), _unicode_text(20)), values, max_size=6)
    as_json = st.one_of(mutated(template, values), mutated(template, values), objects, values).map(pin)
    if signed is not None:
        # Half the bodies carry events the peer really signed, so they pass the signature
        # and hash checks and their content reaches the event handling behind them.
        return st.one_of(signed, _any_body(as_json, raw_bodies()))
    return _any_body(as_json, raw_bodies())


def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=60),
        st.sampled_from([b"{", b"[1,2", b'{"a": 1,}', b"\xff\xfe{}", b'{"a": NaN}', b'{"a": Infinity}',
                         b'{"a": 1e400}', b'{"a": -0.0}', b'{"a": "\\ud800"}', b"[" * 5000, b"{}" * 2]),
    )


def _any_body(as_json: st.SearchStrategy[Any], raw: st.SearchStrategy[bytes]) -> st.SearchStrategy[Sent]:
    return st.one_of(
        as_json.map(lambda v: Sent(json.dumps(v, ensure_ascii=False).encode(), v)),
        as_json.map(lambda v: Sent(json.dumps(v, ensure_ascii=False).encode(), v)),
        as_json.map(lambda v: Sent(json.dumps(v, ensure_ascii=False).encode(), v)),
        raw.map(lambda b: Sent(b, is_json=False)),
    )


# ---------------------------------------------------------------------------------------------
# The servers and the objects the path parameters name


@dataclass
class World:
    a: HomeServer
    b: HomeServer
    a_spec: ServerSpec
    b_spec: ServerSpec
    alice: str
    alice_token: str
    alice_device: str
    quitter: str  # owns the token that logout, deactivate and password changes are sent with
    quitter_token: str
    quitter_device: str
    victim: str  # the user the admin API's user routes act on
    doomed: str  # the user the admin API's deactivation and user-edit routes act on
    bob: str
    bob_token: str
    room: str  # alice's and bob's: what /sync, /messages and the sender are checked on after
    spare_room: str  # membership changes, upgrades and risky state land here, not in `room`
    admin_room: str  # the admin API's room routes (block, delete) act on this one
    event_id: str
    alias: str
    templates_fed: dict[str, Any]
    carol: str  # a user of the peer who is not in the room (joins, leaves, knocks)
    room_version: str
    state_ids: dict[tuple[str, str], str]  # the room's state when the fuzzing starts
    prev_events: list[str]
    depth: int
    create_pdu: dict[str, Any]
    media_id: str  # reserved with /_matrix/media/v1/create, not yet uploaded

    def plausible(self) -> list[str]:
        # Real identifiers random bodies can name (bob is left out: banning or ignoring him
        # would take the peer out of the room the sender is checked on).
        return [self.alice, self.victim, self.room, self.spare_room, self.event_id, self.alias,
                self.a_spec.name, "m.room.message", "m.text", "join", "leave", "invite", "public",
                "private", "m.login.password", "m.login.dummy", "m.id.user", "notify", "12", "10",
                "online", "unavailable", "m.typing", "m.receipt", "m.presence", "main"]


SEND_TYPES = ["m.room.message", "m.reaction", "org.accord.fuzz", "m.room.redaction", "m.sticker",
              "m.room.encrypted"]
SAFE_STATE_TYPES = ["m.room.topic", "m.room.name", "org.accord.fuzz", "m.room.avatar",
                    "m.room.pinned_events"]
# State that could take the room away from alice or the peer: fuzzed in the spare room.
RISKY_STATE_TYPES = ["m.room.power_levels", "m.room.join_rules", "m.room.server_acl",
                     "m.room.member", "m.room.history_visibility", "m.room.create",
                     "m.room.canonical_alias", "m.room.tombstone", "m.room.encryption",
                     "m.room.guest_access"]
# Client routes that end a session or an account: sent with the quitter's token.
SESSION_ENDING = re.compile(r"/(logout(/all)?|account/deactivate|account/password|delete_devices)$")
MEMBERSHIP_CHANGING = re.compile(r"/rooms/\{room_id\}/(leave|forget|kick|ban|unban|invite|upgrade)$")

_txn = itertools.count()
# Answers per route, printed after the run: shows which routes the bodies got past validation.
STATUSES: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)


def path_values(route: str, method: str, w: World) -> st.SearchStrategy[dict[str, str]]:
    """Values for the route's path parameters: real objects of the test, so the handler gets
    past "not found" to the body."""
    names = re.findall(r"\{(\w+)[^}]*\}", route)
    admin = route.startswith(("/_synapse/admin", "/_accord/admin"))
    fixed: dict[str, st.SearchStrategy[str]] = {
        "room_id_or_alias": st.sampled_from([w.room, w.alias]),
        "event_id": st.just(w.event_id),
        "receipt_type": st.sampled_from(["m.read", "m.read.private", "m.fully_read"]),
        "kind": st.sampled_from(["override", "content", "room", "sender", "underride"]),
        "rule_id": st.sampled_from([".m.rule.master", "fuzz.rule", ".m.rule.contains_user_name"]),
        "key": st.sampled_from(["displayname", "avatar_url", "m.tz", "org.accord.fuzz"]),
        "type": st.sampled_from(["org.accord.fuzz", "m.direct", "m.ignored_user_list",
                                 "m.push_rules", "m.fully_read", "m.tag"]),
        "state_key": st.sampled_from(["", w.alice, "fuzz"]),
        "tag": st.sampled_from(["m.favourite", "u.fuzz", "x" * 256]),
        # The media repository's own uploads name this server; partnership routes the peer.
        "server_name": st.just(w.a_spec.name if route.startswith("/_matrix/media/") else w.b_spec.name),
        "media_id": st.just(w.media_id),
        "action": st.sampled_from(["accept", "decline", "cancel", "revoke"]),
        "destination": st.sampled_from([w.b_spec.name, "unknown.example"]),  # federation destinations
        "request_id": st.just(secrets.token_hex(8)),
        "report_id": st.just("1"),
        "version": st.sampled_from(["1", "2", "abc"]),  # room key backup versions
        "session_id": st.sampled_from(["fuzzsession", "s" * 300]),
        "token": st.just("fuzztoken"),
        "room_alias": st.just(w.alias if method == "PUT" else f"#spare:{w.a_spec.name}"),
        "device_id": st.just(w.quitter_device if method == "DELETE" else w.alice_device),
        "user_id": st.just(
            (w.doomed if re.search(r"/deactivate/|/v2/users/", route) else w.victim) if admin else w.alice
        ),
    }
    if admin:
        room = st.just(w.admin_room)
    elif MEMBERSHIP_CHANGING.search(route):
        room = st.just(w.spare_room)
    else:
        room = st.just(w.room)
    fixed["room_id"] = room
    fixed["event_type"] = st.sampled_from(SEND_TYPES)
    out = {}
    for name in names:
        if name == "txn_id":
            out[name] = st.builds(lambda: f"fuzz{next(_txn)}")
        else:
            assert name in fixed, f"no value for path parameter {name!r} of {route}: add one here"
            out[name] = fixed[name]
    if "/state/" in route:
        # Harmless state in the checked room; state that could shut alice or the peer out of
        # it (power levels, join rules, server ACLs, membership) in the spare room.
        safe = st.fixed_dictionaries({**out, "room_id": st.just(w.room),
                                      "event_type": st.sampled_from(SAFE_STATE_TYPES)})
        risky = st.fixed_dictionaries({**out, "room_id": st.just(w.spare_room),
                                       "event_type": st.sampled_from(RISKY_STATE_TYPES)})
        return st.one_of(safe, risky)
    return st.fixed_dictionaries(out)


def _client_template(route: str, w: World) -> Any:
    """A well-formed body for the route (what the mutations start from)."""
    candidates: list[tuple[str, Any]] = [
        (r"/createRoom$", {"preset": "private_chat", "name": "n", "topic": "t", "invite": [w.victim],
                           "initial_state": [{"type": "m.room.topic", "state_key": "",
                                              "content": {"topic": "t"}}],
                           "power_level_content_override": {"users_default": 0},
                           "creation_content": {"m.federate": True}, "room_version": "12",
                           "is_direct": False, "visibility": "private"}),
        (r"/send/", {"msgtype": "m.text", "body": "hello", "m.relates_to": {
            "rel_type": "m.annotation", "event_id": w.event_id, "key": "x"}}),
        (r"/state/", {"topic": "t", "name": "n", "users": {w.alice: 100}, "join_rule": "public"}),
        (r"/filter$", {"room": {"timeline": {"limit": 10, "types": ["m.room.message"]},
                                "state": {"lazy_load_members": True}, "rooms": [w.room]},
                       "event_fields": ["content.body"], "presence": {"not_types": ["*"]},
                       "event_format": "client"}),
        (r"/pushrules/.*/actions$", {"actions": ["notify", {"set_tweak": "sound", "value": "x"}]}),
        (r"/pushrules/.*/enabled$", {"enabled": True}),
        (r"/pushrules/", {"actions": ["notify"], "pattern": "p", "conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": "x"}]}),
        (r"/receipt/", {"thread_id": "main", "ts": 1}),
        (r"/read_markers$", {"m.fully_read": w.event_id, "m.read": w.event_id}),
        (r"/typing/", {"typing": True, "timeout": 1000}),
        # Keys of the peer's user too: the remote paths (its server asked, within the timeout).
        (r"/keys/query$", {"device_keys": {w.alice: [], w.bob: []}, "timeout": 1000}),
        (r"/keys/claim$", {"one_time_keys": {w.alice: {w.alice_device: "signed_curve25519"},
                                             w.bob: {"BOBDEVICE": "signed_curve25519"}}, "timeout": 1000}),
        (r"/sendToDevice/", {"messages": {w.alice: {"*": {"a": 1}}, w.bob: {"*": {"b": 1}}}}),
        (r"/presence/", {"presence": "online", "status_msg": "here", "last_active_ago": 1}),
        (r"/profile/", {"displayname": "Alice", "avatar_url": "mxc://a/b"}),
        (r"/(invite|kick|ban|unban)$", {"user_id": w.victim, "reason": "r"}),
        (r"/(join|knock|leave|forget)", {"reason": "r"}),
        (r"/publicRooms$", {"limit": 10, "since": "1", "filter": {"generic_search_term": "x"},
                            "include_all_networks": False}),
        (r"/v3/search$", {"search_categories": {"room_events": {
            "search_term": "hello world", "keys": ["content.body", "content.name"], "order_by": "recent",
            "filter": {"limit": 5, "rooms": [w.room], "senders": [w.victim]},
            "event_context": {"before_limit": 2, "after_limit": 2, "include_profile": True},
            "include_state": True, "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
        }}}),
        (r"/directory/room/", {"room_id": w.room}),
        (r"/directory/list/", {"visibility": "public"}),
        (r"/account_data/", {"k": "v"}),
        (r"/report", {"reason": "r", "score": -50}),
        (r"/redact/", {"reason": "r"}),
        (r"/devices/", {"display_name": "d", "auth": {"type": "m.login.dummy"}}),
        (r"/delete_devices$", {"devices": [w.quitter_device], "auth": {"type": "m.login.dummy"}}),
        (r"/login$", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                      "password": "wrong", "device_id": "D", "initial_device_display_name": "d"}),
        (r"/register$", {"username": "u", "password": "p-p-p-p-p", "auth": {"type": "m.login.dummy"}}),
        (r"/refresh$", {"refresh_token": "x"}),
        (r"/upgrade$", {"new_version": "12"}),
        (r"/account/password$", {"new_password": "x", "logout_devices": True,
                                 "auth": {"type": "m.login.password", "password": "wrong"}}),
        (r"/account/deactivate$", {"erase": False, "auth": {"type": "m.login.password",
                                                            "password": "wrong"}}),
        (r"/request_partnership$", {"server_name": w.b_spec.name, "message": "m"}),
        (r"/partnerships", {"server_name": w.b_spec.name, "message": "m"}),
        (r"/partner_directory/", {"server_name": w.b_spec.name}),
        (r"/registration_tokens", {"uses_allowed": 1, "length": 16, "expiry_time": 1}),
        (r"/users/.*/override_ratelimit$", {"messages_per_second": 1, "burst_count": 1}),
        (r"/users/.*/admin$", {"admin": False}),
        (r"/users/.*/login$", {"valid_until_ms": 1}),
        (r"/users/", {"displayname": "v", "admin": False, "deactivated": False,
                      "password": "p-p-p-p", "user_type": None}),
        (r"/reset_password/", {"new_password": "p-p-p-p", "logout_devices": False}),
        (r"/deactivate/", {"erase": False}),
        (r"/rooms/[^/]+/block$", {"block": False}),
        (r"/admin/v\d/rooms/", {"block": False, "purge": False, "message": "m",
                                "new_room_user_id": None}),
        (r"/admin/v1/register$", {"nonce": "n", "username": "u", "password": "p", "mac": "m"}),
    ]
    for pattern, template in candidates:
        if re.search(pattern, route):
            return template
    return {}


def _fed_template(route: str, w: World) -> Any:
    t = w.templates_fed
    candidates: list[tuple[str, Any]] = [
        (r"/send/", t["transaction"]),
        (r"/get_missing_events/", {"earliest_events": [], "latest_events": [w.event_id],
                                   "limit": 10, "min_depth": 0}),
        (r"/v2/invite/", {"event": t["invite"], "room_version": "12", "invite_room_state": []}),
        (r"/invite/", t["invite"]),
        (r"/send_join/", t["join"]),
        (r"/send_leave/", t["leave"]),
        (r"/send_knock/", t["knock"]),
        (r"/publicRooms$", {"limit": 10, "filter": {"generic_search_term": "x"}}),
        (r"/key/v2/query$", {"server_keys": {w.b_spec.name: {}}}),
        (r"org.accord.directory/v1/search$", {"text": "x", "specialty": "s", "verified_only": False}),
        (r"org.accord.directory/v1/profile$", {"organization": {"name": "n"}, "expires_ts": 1}),
        (r"org.accord.partners/", {"server_name": w.b_spec.name, "message": "m", "accept": True}),
        (r"/user/keys/query$", {"device_keys": {w.alice: [w.alice_device]}}),
        (r"/user/keys/claim$", {"one_time_keys": {w.alice: {w.alice_device: "signed_curve25519"}}}),
    ]
    for pattern, template in candidates:
        if re.search(pattern, route):
            return template
    return {}


def _event_shapes(w: World) -> dict[str, list[tuple[str, str | None, str, dict[str, Any]]]]:
    """(type, state_key, sender, content) of the events the peer signs, by what carries them.
    Never a membership change of bob's: he is the peer's member of the room the sender is
    checked on."""
    joins = [("m.room.member", w.carol, w.carol, {"membership": "join", "displayname": "c"})]
    leaves = [("m.room.member", w.carol, w.carol, {"membership": "leave", "reason": "r"})]
    knocks = [("m.room.member", w.carol, w.carol, {"membership": "knock", "reason": "r"})]
    invites = [("m.room.member", w.victim, w.bob, {"membership": "invite", "is_direct": False})]
    others = [
        ("m.room.message", None, w.bob, {"msgtype": "m.text", "body": "b", "format": "org.matrix.custom.html",
                                         "formatted_body": "<b>b</b>"}),
        ("m.reaction", None, w.bob, {"m.relates_to": {"rel_type": "m.annotation", "event_id": w.event_id,
                                                      "key": "k"}}),
        ("m.room.redaction", None, w.bob, {"redacts": w.event_id, "reason": "r"}),
        ("m.room.name", "", w.bob, {"name": "n"}),
        ("m.room.power_levels", "", w.bob, {"users": {w.bob: 100}, "users_default": 0, "events": {}}),
        ("m.room.server_acl", "", w.bob, {"allow": ["*"], "deny": [], "allow_ip_literals": True}),
        ("org.accord.fuzz", "k", w.bob, {"k": 1}),
    ]
    return {"send": others + joins + leaves + invites, "join": joins, "leave": leaves,
            "knock": knocks, "invite": invites}


def signed_bodies(route: str, w: World) -> st.SearchStrategy[Sent] | None:
    """For the federation routes that carry PDUs: events the peer built and signed, on the
    room's real state, with random content (and edge values in depth and timestamps)."""
    shapes = _event_shapes(w)
    if re.search(r"/send/\{", route):
        kind, wrap = "send", "transaction"
    elif m := re.search(r"/(send_join|send_leave|send_knock|invite)/", route):
        kind = {"send_join": "join", "send_leave": "leave", "send_knock": "knock", "invite": "invite"}[m.group(1)]
        wrap = "v2invite" if "/v2/invite/" in route else "event"
    else:
        return None
    values = json_values(w.plausible())
    keys = st.one_of(st.sampled_from(FIELD_NAMES), _unicode_text(20))

    @st.composite
    def make(draw: st.DrawFn) -> Sent:
        events = []
        for _ in range(draw(st.integers(1, 3)) if wrap == "transaction" else 1):
            event_type, state_key, sender, template = draw(st.sampled_from(shapes[kind]))
            content = draw(st.one_of(mutated(template, values), st.dictionaries(keys, values, max_size=4)))
            depth = draw(st.one_of(st.just(w.depth), INT_EDGES))
            ts = draw(st.one_of(st.just(w.a.clock.time_ms()), INT_EDGES))
            events.append(_signed(w, event_type, state_key, sender, content, depth, ts, template))
        if wrap == "transaction":
            edus = draw(st.lists(mutated(draw(st.sampled_from(w.templates_fed["transaction"]["edus"])), values),
                                 max_size=2))
            body: Any = {"origin": w.b_spec.name, "origin_server_ts": w.a.clock.time_ms(),
                         "pdus": [pdu_json(e) for e in events], "edus": edus}
        elif wrap == "v2invite":
            body = {"event": pdu_json(events[0]), "room_version": w.room_version,
                    "invite_room_state": draw(st.one_of(st.just([w.create_pdu]), st.lists(values, max_size=2)))}
        else:
            body = pdu_json(events[0])
        return Sent(json.dumps(body, ensure_ascii=False).encode(), body, event_id=events[0]["event_id"])

    return make()


def _signed(w: World, event_type: str, state_key: str | None, sender: str, content: Any,
            depth: int, ts: int, template: dict[str, Any]) -> dict[str, Any]:
    partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": template}
    if state_key is not None:
        partial["state_key"] = state_key

    def build(content: Any, depth: int, ts: int) -> dict[str, Any]:
        return build_event(
            w.room_version, room_id=w.room, sender=sender, event_type=event_type, content=content,
            prev_events=w.prev_events, auth_events=select_auth_event_ids(partial, w.state_ids, w.room_version),
            depth=depth, origin_server_ts=ts, state_key=state_key, signing_key=w.b_spec.signing_key,
            server_name=w.b_spec.name,
        )

    try:
        return build(content, depth, ts)
    except Exception:
        # Content no event can carry (not canonical JSON, too deep, too big): the peer could
        # not have signed it; its well-formed content then.
        return build(template, w.depth, w.a.clock.time_ms())


def body_routes(hs: HomeServer) -> tuple[web.Application, list[tuple[str, str]]]:
    """Every route that can take a body (POST, PUT, DELETE), once per path (v3, not r0)."""
    app = hs.build_app(list(RESOURCES))
    every = {
        (r.method, r.resource.canonical) for r in app.router.routes()
        if r.resource is not None and r.method in ("POST", "PUT", "DELETE", "PATCH")
    }
    # An r0 path served by the same handler as its v3 twin is fuzzed once, as v3.
    routes = sorted({
        (method, path) for method, path in every
        if not ("/r0/" in path and (method, path.replace("/r0/", "/v3/")) in every)
    }, key=lambda mr: (mr[0] == "DELETE", mr[1], mr[0]))  # deletions last: what they delete exists
    return app, routes


async def _remote_event(hs: HomeServer, room: Any, spec: ServerSpec, sender: str,
                        event_type: str, content: dict[str, Any], state_key: str | None = None) -> dict[str, Any]:
    """An event of ``spec``'s server for ``room``, built on ``hs``'s current state."""
    nids = await hs.room_service.current_state_ids(room)
    by_nid = await hs.event_store.get_events_by_nid(nids.values())
    state = {k: by_nid[n].event_id for k, n in nids.items()}
    head = await hs.room_service.head(room)
    prev = list((await hs.event_store.get_events_by_nid(head.extremities)).values())
    partial: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
    if state_key is not None:
        partial["state_key"] = state_key
    return pdu_json(build_event(
        room.room_version, room_id=room.room_id, sender=sender, event_type=event_type,
        content=content, prev_events=[e.event_id for e in prev],
        auth_events=select_auth_event_ids(partial, state, room.room_version),
        depth=max(e.event["depth"] for e in prev) + 1, origin_server_ts=hs.clock.time_ms(),
        state_key=state_key, signing_key=spec.signing_key, server_name=spec.name,
    ))


# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
async def test_random_json_never_gets_a_server_error(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    a_spec, b_spec = ServerSpec(tmp_path, "127.0.0.2"), ServerSpec(tmp_path, "127.0.0.3")
    tls = ssl.create_default_context(cafile=str(ca.ca_path))
    async with (
        # Server A federates with the peer only: bodies naming other servers (invites, joins,
        # profile look-ups) must not send it looking for them.
        running_server(a_spec, ca, policy="partners", allowed_servers=[b_spec.name]) as a,
        running_server(b_spec, ca) as b,
        aiohttp.ClientSession() as s,
    ):
        app, routes = body_routes(a)
        # The same server's full application (client, admin, federation, keys) on a port of its
        # own: what is enumerated is what is served.
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            world = await _setup(a, b, a_spec, b_spec, s, server, tls)
            a_base = str(server.make_url(""))
            before = await _get(s, a_base, "/_matrix/client/v3/sync?timeout=0", world.alice_token)
            failures = await asyncio.to_thread(_fuzz_all, routes, world, s, a_base,
                                               asyncio.get_running_loop())
            for (method, route), counts in sorted(STATUSES.items(), key=lambda kv: kv[0][1]):
                print(f"{method} {route}: {dict(sorted(counts.items()))}")
            after_checks = await _still_working(world, s, a_base, before["next_batch"], tls)
        finally:
            await server.close()
    assert not failures, f"{len(failures)} route(s) answered 5xx or a non-Matrix error:\n" + "\n".join(failures)
    assert not after_checks, "\n".join(after_checks)


async def _setup(a: HomeServer, b: HomeServer, a_spec: ServerSpec, b_spec: ServerSpec,
                 s: aiohttp.ClientSession, server: TestServer, tls: ssl.SSLContext) -> World:
    base = str(server.make_url(""))
    made = await a.registration.create_account(f"@alice:{a_spec.name}", PASSWORD, admin=True)
    quitter = await a.registration.create_account(f"@quitter:{a_spec.name}", PASSWORD)
    victim = f"@victim:{a_spec.name}"
    await a.registration.create_account(victim, PASSWORD, login=False)
    doomed = f"@doomed:{a_spec.name}"
    await a.registration.create_account(doomed, PASSWORD, login=False)
    alice, token = made["user_id"], made["access_token"]

    async def call(method: str, path: str, body: Any = None) -> Any:
        async with s.request(method, base + "/_matrix/client/v3" + path, json=body,
                             headers={"Authorization": f"Bearer {token}"}) as r:
            data = await r.json()
            assert r.status == 200, (path, r.status, data)
            return data

    room = (await call("POST", "/createRoom", {"preset": "public_chat", "room_alias_name": "fuzz"}))["room_id"]
    spare = (await call("POST", "/createRoom", {"preset": "public_chat", "room_alias_name": "spare"}))["room_id"]
    admin_room = (await call("POST", "/createRoom", {"preset": "private_chat"}))["room_id"]
    event_id = (await call("PUT", f"/rooms/{room}/send/m.room.message/setup",
                           {"msgtype": "m.text", "body": "before"}))["event_id"]

    # bob of the peer server joins alice's room over federation, as a user would.
    bob_made = await b.registration.create_account(f"@bob:{b_spec.name}", PASSWORD)
    bob = bob_made["user_id"]
    async with s.post(f"https://{b_spec.name}/_matrix/client/v3/join/{room}?server_name={a_spec.name}",
                      json={}, headers={"Authorization": f"Bearer {bob_made['access_token']}"},
                      ssl=tls) as r:
        assert r.status == 200, await r.text()

    record = await a.room_store.get_room(room)
    assert record is not None
    pdu = await _remote_event(a, record, b_spec, bob, "m.room.message", {"msgtype": "m.text", "body": "b"})
    fed = {
        "transaction": {
            "origin": b_spec.name, "origin_server_ts": a.clock.time_ms(), "pdus": [pdu],
            "edus": [
                {"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob, "typing": True}},
                {"edu_type": "m.receipt", "content": {room: {"m.read": {bob: {
                    "event_ids": [event_id], "data": {"ts": 1}}}}}},
                {"edu_type": "m.presence", "content": {"push": [
                    {"user_id": bob, "presence": "online", "last_active_ago": 1}]}},
                {"edu_type": "m.direct_to_device", "content": {
                    "sender": bob, "type": "m.x", "message_id": "m", "messages": {alice: {"*": {}}}}},
                {"edu_type": "m.device_list_update", "content": {
                    "user_id": bob, "device_id": "D", "stream_id": 1, "prev_id": []}},
            ],
        },
        "join": await _remote_event(a, record, b_spec, f"@carol:{b_spec.name}", "m.room.member",
                                    {"membership": "join"}, f"@carol:{b_spec.name}"),
        "leave": await _remote_event(a, record, b_spec, f"@carol:{b_spec.name}", "m.room.member",
                                     {"membership": "leave"}, f"@carol:{b_spec.name}"),
        "knock": await _remote_event(a, record, b_spec, f"@carol:{b_spec.name}", "m.room.member",
                                     {"membership": "knock"}, f"@carol:{b_spec.name}"),
        "invite": await _remote_event(a, record, b_spec, bob, "m.room.member",
                                      {"membership": "invite"}, victim),
    }
    # A media ID to upload to, where the server has a media repository.
    media_id = "fuzzmedia"
    async with s.post(base + "/_matrix/media/v1/create", headers={"Authorization": f"Bearer {token}"}) as r:
        if r.status == 200:
            media_id = (await r.json())["content_uri"].rsplit("/", 1)[1]
    nids = await a.room_service.current_state_ids(record)
    by_nid = await a.event_store.get_events_by_nid(nids.values())
    head = await a.room_service.head(record)
    prev = list((await a.event_store.get_events_by_nid(head.extremities)).values())
    return World(
        carol=f"@carol:{b_spec.name}", room_version=record.room_version,
        state_ids={k: by_nid[n].event_id for k, n in nids.items()},
        prev_events=[e.event_id for e in prev], depth=max(e.event["depth"] for e in prev) + 1,
        create_pdu=pdu_json(by_nid[nids[("m.room.create", "")]].event), media_id=media_id,
        a=a, b=b, a_spec=a_spec, b_spec=b_spec, alice=alice, alice_token=token,
        alice_device=made["device_id"], quitter=quitter["user_id"],
        quitter_token=quitter["access_token"], quitter_device=quitter["device_id"],
        victim=victim, doomed=doomed, bob=bob, bob_token=bob_made["access_token"], room=room, spare_room=spare, admin_room=admin_room,
        event_id=event_id, alias=f"#fuzz:{a_spec.name}", templates_fed=fed,
    )


def _fuzz_all(routes: list[tuple[str, str]], w: World, s: aiohttp.ClientSession, base: str,
              loop: asyncio.AbstractEventLoop) -> list[str]:
    """Runs in a worker thread: hypothesis drives each route, the requests run on the loop
    that serves the servers. Returns one line per route that misbehaved (its first bad
    answer), so a run shows every broken route rather than the first."""
    failures: list[str] = []
    for method, route in routes:
        failure = _fuzz_route(method, route, w, s, base, loop)
        if failure:
            failures.append(failure)
    return failures


def _fuzz_route(method: str, route: str, w: World, s: aiohttp.ClientSession, base: str,
                loop: asyncio.AbstractEventLoop) -> str | None:
    federation = route.startswith(("/_matrix/federation/", "/_matrix/key/"))
    template = _fed_template(route, w) if federation else _client_template(route, w)
    first: list[str] = []

    signed = signed_bodies(route, w) if federation else None

    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(params=path_values(route, method, w),
           sent=bodies(template, w.plausible(), pin_destinations(route, w), signed))
    def check(params: dict[str, str], sent: Sent) -> None:
        if first:
            return
        if sent.event_id is not None and "event_id" in params:
            params = {**params, "event_id": sent.event_id}
        path = route
        for name, value in params.items():
            path = re.sub(r"\{" + name + r"[^}]*\}", quote(value, safe=""), path)
        request = _request(method, path, sent, w, federation)
        future = asyncio.run_coroutine_threadsafe(_send(s, base, method, path, sent, request), loop)
        try:
            status, body = future.result(timeout=60)
        except TimeoutError:
            first.append(f"{method} {path}: no answer within 60 s to {sent.describe()}")
            return
        STATUSES[(method, route)][status] += 1
        problem = _judge(status, body)
        if problem:
            first.append(f"{method} {path}: {problem} for {sent.describe()}")

    check()
    return first[0] if first else None


def pin_destinations(route: str, w: World) -> Callable[[Any], Any]:
    """Routes whose purpose is to contact the server a body names (partnership requests, the
    key notary) get the peer's name there, whatever else is random: the test makes no
    requests to servers that do not exist. Everything else that could reach out (invites,
    joins, profile look-ups of remote users) is stopped by server A's federation policy."""
    def pin(value: Any) -> Any:
        if isinstance(value, dict):
            if "server_name" in value and re.search(r"partner", route):
                value["server_name"] = w.b_spec.name
            if isinstance(value.get("server_keys"), dict) and route.endswith("/key/v2/query"):
                asked = list(value["server_keys"].values())
                value["server_keys"] = {w.b_spec.name: asked[0]} if asked else {}
        return value
    return pin


def _request(method: str, path: str, sent: Sent, w: World, federation: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if federation:
        content: Any = sent.value if sent.is_json else None
        try:
            auth = sign_request(method=method, uri=path, origin=w.b_spec.name,
                                destination=w.a_spec.name, signing_key=w.b_spec.signing_key,
                                content=content)
        except Exception:
            # Not canonical JSON (fractions, integers past 2^53, nesting orjson refuses):
            # no valid signature exists, so the server must refuse it, with a 4xx.
            auth = sign_request(method=method, uri=path, origin=w.b_spec.name,
                                destination=w.a_spec.name, signing_key=w.b_spec.signing_key,
                                content={"unsignable": True})
        headers["Authorization"] = auth
    elif SESSION_ENDING.search(path):
        headers["Authorization"] = f"Bearer {w.quitter_token}"
    else:
        headers["Authorization"] = f"Bearer {w.alice_token}"
    return headers


async def _send(s: aiohttp.ClientSession, base: str, method: str, path: str, sent: Sent,
                headers: dict[str, str]) -> tuple[int, bytes]:
    async with s.request(method, URL(base + path, encoded=True), data=sent.raw,
                         headers=headers) as r:
        return r.status, await r.read()


def _judge(status: int, body: bytes) -> str | None:
    if status >= 500:
        return f"{status} {body[:300]!r}"
    if 400 <= status < 500:
        try:
            parsed = json.loads(body)
        except ValueError:
            return f"{status} with a body that is not JSON: {body[:200]!r}"
        if not isinstance(parsed, dict):
            return f"{status} with a body that is not an object: {body[:200]!r}"
        if status == 401 and isinstance(parsed.get("flows"), list):
            return None  # user-interactive authentication asking for a stage: the spec's shape
        if not isinstance(parsed.get("errcode"), str):
            return f"{status} without a Matrix errcode: {body[:200]!r}"
    return None


async def _get(s: aiohttp.ClientSession, base: str, path: str, token: str) -> Any:
    async with s.get(base + path, headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.read()
        assert r.status == 200, (path, r.status, body[:500])
        return json.loads(body)


async def _still_working(w: World, s: aiohttp.ClientSession, base: str, since: str,
                         tls: ssl.SSLContext) -> list[str]:
    """What the fuzzing must not have broken: alice's syncs and the room's history on the
    server under test, delivery of a new message to the peer server, and bob's view of the
    room there (the peer received whatever the fuzzing stored in the room)."""
    problems: list[str] = []
    room = quote(w.room)
    peer = f"https://{w.b_spec.name}"

    async def get(url: str, token: str) -> Any:
        async with s.get(url, headers={"Authorization": f"Bearer {token}"}, ssl=tls) as r:
            body = await r.read()
            if r.status != 200:
                problems.append(f"GET {url} -> {r.status} {body[:300]!r}")
                return None
            return json.loads(body)

    for path in ("/_matrix/client/v3/sync?timeout=0", f"/_matrix/client/v3/sync?timeout=0&since={since}",
                 f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=200",
                 f"/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=200"):
        await get(base + path, w.alice_token)
    async with s.put(f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/after",
                     json={"msgtype": "m.text", "body": "after the fuzzing"},
                     headers={"Authorization": f"Bearer {w.alice_token}"}) as r:
        if r.status != 200:
            problems.append(f"sending after the fuzzing -> {r.status} {(await r.read())[:300]!r}")
            return problems
        event_id = (await r.json())["event_id"]
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        if await w.b.event_store.get_event(event_id) is not None:
            break
        if asyncio.get_running_loop().time() > deadline:
            problems.append(f"a message sent after the fuzzing ({event_id}) did not reach "
                            f"{w.b_spec.name} within 60 s: the federation sender is stuck")
            return problems
        await asyncio.sleep(0.1)
    await get(f"{peer}/_matrix/client/v3/sync?timeout=0", w.bob_token)
    page = await get(f"{peer}/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50", w.bob_token)
    if page is not None and event_id not in [e.get("event_id") for e in page.get("chunk", [])]:
        problems.append(f"bob's /messages on {w.b_spec.name} does not show {event_id}")
    return problems
