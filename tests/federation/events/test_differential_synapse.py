"""Differential test: our auth rules and state resolution against Synapse's.

Random DAGs (forks, merges, power struggles, bans, join rule flips, knocks,
restricted joins) are generated with our own builder and resolver; Synapse
then judges every event against its auth events and against the state we
computed before it, and resolves every merge. Any disagreement fails.

Synapse is not a project dependency: point ``ACCORD_SYNAPSE_PYTHON`` at an
interpreter that has ``matrix-synapse`` installed (a separate venv), e.g.
``python -m venv /tmp/synvenv && /tmp/synvenv/bin/pip install matrix-synapse``.
Without it the test is skipped. ``ACCORD_DIFF_CASES`` sets the number of
random DAGs per room version, ``ACCORD_DIFF_EVENTS`` their size.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from federation.events import (
    AuthError,
    auth_event_ids,
    build_event,
    check_auth,
    check_event_auth,
    domain_of,
    encode_base64,
    get_verify_key,
    prev_event_ids,
    redact_event,
    reference_hash_b64,
    resolve_state,
    room_id_for_new_room,
    select_auth_event_ids,
    sign_json,
    signing_key_from_seed,
)

from .roomkit import key_for

SYNAPSE_PYTHON = os.environ.get("ACCORD_SYNAPSE_PYTHON", "")
ORACLE = Path(__file__).with_name("synapse_oracle.py")
CASES = int(os.environ.get("ACCORD_DIFF_CASES", "12"))
EVENTS_PER_CASE = int(os.environ.get("ACCORD_DIFF_EVENTS", "45"))

if os.environ.get("CI") and not (SYNAPSE_PYTHON and Path(SYNAPSE_PYTHON).exists()):
    pytest.fail(
        "CI must run the Synapse differential tests; scripts/test installs Synapse and sets "
        "ACCORD_SYNAPSE_PYTHON",
        pytrace=False,
    )

pytestmark = pytest.mark.skipif(
    not SYNAPSE_PYTHON or not Path(SYNAPSE_PYTHON).exists(),
    reason="set ACCORD_SYNAPSE_PYTHON to a Python with matrix-synapse installed",
)

USERS = ["@alice:a.test", "@bob:b.test", "@carol:c.test", "@dave:d.test", "@eve:e.test"]
LEVELS = [0, 10, 25, 50, 75, 100]
JOIN_RULES = ["public", "invite", "knock", "restricted", "knock_restricted"]

State = dict[tuple[str, str], str]
IDENTITY_KEY = signing_key_from_seed(b"\x01" * 32, "0")
WRONG_KEY = signing_key_from_seed(b"\x02" * 32, "0")


class Generator:
    def __init__(self, version: str, seed: int) -> None:
        self.version = version
        self.rng = random.Random(seed)
        self.events: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.rejected: set[str] = set()
        self.state_before: dict[str, State] = {}
        self.state_after: dict[str, State] = {}
        self.merges: list[list[str]] = []
        self.ts = 0
        self.room_id: str | None = None
        self.n = int(version)
        content: dict[str, Any] = {"room_version": version}
        if self.n <= 10:
            content["creator"] = USERS[0]
        if version == "12" and self.rng.random() < 0.5:
            content["additional_creators"] = [USERS[1]]
        if version != "12":
            self.room_id = "!room:a.test"
        create = self._emit(USERS[0], "m.room.create", content, "", prev=[], state={})
        self.room_id = room_id_for_new_room(create, version)
        self.creators = {USERS[0], *content.get("additional_creators", [])}
        alice_join = self._emit(USERS[0], "m.room.member", {"membership": "join"}, USERS[0])
        users = {u: self.rng.choice(LEVELS) for u in USERS[1:4]}
        if version != "12":
            users[USERS[0]] = 100
        else:
            users = {u: v for u, v in users.items() if u not in self.creators}
        self._emit(USERS[0], "m.room.power_levels", {"users": users}, "", prev=[alice_join["event_id"]])
        self._emit(USERS[0], "m.room.join_rules", {"join_rule": "public"}, "")

    # -- event emission ----------------------------------------------------

    def _emit(
        self,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        prev: list[str] | None = None,
        state: State | None = None,
        mangle_auth: bool = False,
    ) -> dict[str, Any]:
        if prev is None:
            prev = [self.order[-1]]
        if state is None:
            if len(prev) == 1:
                state = dict(self.state_after[prev[0]])
            else:
                state = resolve_state(self.version, [self.state_after[p] for p in prev], self.events)
                self.merges.append(prev)
        draft = {"type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            draft["state_key"] = state_key
        auth = select_auth_event_ids(draft, state, self.version)
        if mangle_auth:
            extra = [e for e in state.values() if e not in auth]
            if extra and self.rng.random() < 0.5:
                auth.append(self.rng.choice(extra))
            elif auth:
                auth.pop(self.rng.randrange(len(auth)))
        self.ts += self.rng.choice([1, 1, 2, 5])
        redacts = None
        if event_type == "m.room.redaction":
            redacts = content.pop("_redacts")
        event = build_event(
            self.version,
            room_id=None if (event_type == "m.room.create" and self.version == "12") else self.room_id,
            sender=sender,
            event_type=event_type,
            content=content,
            state_key=state_key,
            prev_events=prev,
            auth_events=auth,
            depth=1 + max((self.events[p]["depth"] for p in prev), default=0),
            origin_server_ts=self.ts,
            signing_key=key_for(domain_of(sender)),
            redacts=redacts,
            # v1/v2: deterministic IDs named by the sender's server, and the
            # cited events' reference hashes.
            event_id=f"${len(self.order)}-{self.rng.randrange(10**6)}:{domain_of(sender)}",
            reference_hashes=lambda i: reference_hash_b64(self.events[i], self.version),
        )
        event_id = event["event_id"]
        self.events[event_id] = event
        self.order.append(event_id)
        self.state_before[event_id] = state
        ok = True
        try:
            create = self.events[self.order[0]]
            check_event_auth(
                event,
                [self.events[a] for a in auth if a in self.events],
                self.version,
                create_event=create,
                is_rejected=self.rejected.__contains__,
            )
            if event_type != "m.room.create":
                check_auth(event, {k: self.events[v] for k, v in state.items()}, self.version)
        except AuthError:
            ok = False
            self.rejected.add(event_id)
        after = dict(state)
        if ok and state_key is not None:
            after[(event_type, state_key)] = event_id
        self.state_after[event_id] = after
        return event

    def random_event(self) -> None:
        rng = self.rng
        recent = [e for e in self.order[-8:] if e not in self.rejected] or self.order[-1:]
        prev = [rng.choice(recent)]
        if rng.random() < 0.3:
            other = rng.choice(self.order[-12:])
            if other not in prev and other not in self.rejected:
                prev.append(other)
        state = (
            dict(self.state_after[prev[0]])
            if len(prev) == 1
            else resolve_state(self.version, [self.state_after[p] for p in prev], self.events)
        )
        if len(prev) > 1:
            self.merges.append(prev)
        joined = [u for u in USERS if self._membership(state, u) == "join"] or USERS[:1]
        sender = rng.choice(joined if rng.random() < 0.85 else USERS)
        target = rng.choice(USERS)
        kind = rng.choices(
            ["member", "power_levels", "join_rules", "topic", "message", "user_state", "3pid",
             "aliases", "redaction"],
            weights=[10, 4, 2, 3, 2, 1, 2, 1, 1],
        )[0]
        mangle = rng.random() < 0.04
        if kind == "member":
            membership = rng.choice(["join", "join", "invite", "leave", "ban", "knock"])
            if membership in ("join", "knock") and rng.random() < 0.8:
                sender = target
            content: dict[str, Any] = {"membership": membership}
            if membership == "join" and rng.random() < 0.4:
                content["join_authorised_via_users_server"] = rng.choice(USERS)
            self._emit(sender, "m.room.member", content, target, prev=prev, state=state, mangle_auth=mangle)
        elif kind == "power_levels":
            current_id = state.get(("m.room.power_levels", ""))
            content = json.loads(json.dumps(self.events[current_id]["content"])) if current_id else {}
            for _ in range(rng.randint(1, 3)):
                what = rng.random()
                if what < 0.5:
                    user = rng.choice(USERS)
                    users = content.setdefault("users", {})
                    if rng.random() < 0.2:
                        users.pop(user, None)
                    else:
                        users[user] = self._level()
                elif what < 0.8:
                    content[rng.choice(["ban", "kick", "invite", "state_default", "events_default", "redact", "users_default"])] = self._level()
                elif what < 0.9:
                    content.setdefault("events", {})[rng.choice(["m.room.topic", "m.room.name", "m.room.power_levels"])] = self._level()
                else:
                    content.setdefault("notifications", {})["room"] = self._level()
            if self.version == "12" and rng.random() < 0.9:
                content["users"] = {u: v for u, v in content.get("users", {}).items() if u not in self.creators}
            self._emit(sender, "m.room.power_levels", content, "", prev=prev, state=state, mangle_auth=mangle)
        elif kind == "join_rules":
            self._emit(sender, "m.room.join_rules", {"join_rule": rng.choice(JOIN_RULES)}, "", prev=prev, state=state, mangle_auth=mangle)
        elif kind == "topic":
            self._emit(sender, "m.room.topic", {"topic": f"t{self.ts}"}, "", prev=prev, state=state, mangle_auth=mangle)
        elif kind == "message":
            self._emit(sender, "m.room.message", {"body": "hi"}, None, prev=prev, state=state, mangle_auth=mangle)
        elif kind == "3pid":
            tokens = sorted(k for t, k in state if t == "m.room.third_party_invite")
            if not tokens or rng.random() < 0.4:
                key = encode_base64(get_verify_key(IDENTITY_KEY).encode(), urlsafe=rng.random() < 0.5)
                content = {"display_name": "x", "key_validity_url": "https://id.test/v"}
                if rng.random() < 0.5:
                    content["public_key"] = key
                else:
                    content["public_keys"] = [{"public_key": key}]
                self._emit(sender, "m.room.third_party_invite", content, f"tok{self.ts}", prev=prev, state=state, mangle_auth=mangle)
            else:
                token = rng.choice(tokens + ["unknown"])
                mxid = target if rng.random() < 0.9 else rng.choice(USERS)
                signing = IDENTITY_KEY if rng.random() < 0.85 else WRONG_KEY
                signed = sign_json({"mxid": mxid, "token": token}, "id.test", signing)
                content = {"membership": "invite", "third_party_invite": {"display_name": "x", "signed": signed}}
                self._emit(sender, "m.room.member", content, target, prev=prev, state=state, mangle_auth=mangle)
        elif kind == "aliases":
            server = domain_of(sender) if rng.random() < 0.7 else domain_of(rng.choice(USERS))
            self._emit(sender, "m.room.aliases", {"aliases": [f"#a:{server}"]}, server, prev=prev, state=state, mangle_auth=mangle)
        elif kind == "redaction":
            target_id = rng.choice(self.order)
            self._emit(sender, "m.room.redaction", {"_redacts": target_id}, None, prev=prev, state=state, mangle_auth=mangle)
        else:
            self._emit(sender, "m.custom.user", {}, rng.choice(USERS), prev=prev, state=state, mangle_auth=mangle)

    def _level(self) -> int | str:
        """A power level; before v10 sometimes a string the spec allows (v1 "stringy" levels)."""
        level = self.rng.choice(LEVELS)
        if self.n < 10 and self.rng.random() < 0.3:
            return self.rng.choice([str(level), f" {level} ", f"+{level}", f"00{level}"])
        return level

    def _membership(self, state: State, user: str) -> str | None:
        event_id = state.get(("m.room.member", user))
        return self.events[event_id]["content"].get("membership") if event_id else None

    def heads(self) -> list[str]:
        referenced = {p for e in self.events.values() for p in prev_event_ids(e)}
        return [e for e in self.order if e not in referenced and e not in self.rejected]


REDACTION_TYPES = [
    "m.room.member",
    "m.room.create",
    "m.room.join_rules",
    "m.room.power_levels",
    "m.room.history_visibility",
    "m.room.redaction",
    "m.room.aliases",
    "m.room.message",
    "m.room.topic",
]
CONTENT_KEYS = [
    "membership", "join_authorised_via_users_server", "third_party_invite", "displayname",
    "creator", "room_version", "m.federate", "join_rule", "allow", "ban", "events",
    "events_default", "invite", "kick", "redact", "state_default", "users", "users_default",
    "notifications", "history_visibility", "redacts", "aliases", "body", "topic",
]
TOP_LEVEL_EXTRA = ["origin", "membership", "prev_state", "redacts", "unsigned", "custom"]


def _random_redactable_event(rng: random.Random, version: str) -> dict[str, Any]:
    # v12 create events have no room_id and Synapse derives one; v11 covers
    # the (identical) create redaction rule.
    types = [t for t in REDACTION_TYPES if not (version == "12" and t == "m.room.create")]
    old_format = int(version) <= 2
    event: dict[str, Any] = {
        "type": rng.choice(types),
        "room_id": "!" + "A" * 43 if version == "12" else "!r:a.test",
        "sender": "@a:a.test",
        "origin_server_ts": 5,
        "depth": 3,
        "prev_events": [["$p:a.test", {"sha256": "h"}]] if old_format else ["$p"],
        "auth_events": [["$a:a.test", {"sha256": "h"}]] if old_format else ["$a"],
        "hashes": {"sha256": "x"},
        "signatures": {"a.test": {"ed25519:1": "s"}},
        "content": {},
    }
    if rng.random() < 0.7:
        event["state_key"] = ""
    for key in rng.sample(CONTENT_KEYS, rng.randint(0, 8)):
        if key == "third_party_invite":
            event["content"][key] = rng.choice(
                [{"signed": {"mxid": "@b:b", "token": "t"}, "display_name": "d"}, {"display_name": "d"}]
            )
        else:
            event["content"][key] = rng.choice([1, "v", {"k": 2}, [3]])
    for key in rng.sample(TOP_LEVEL_EXTRA, rng.randint(0, 3)):
        event[key] = {"age_ts": 1} if key == "unsigned" else "$x"
    if old_format:
        event["event_id"] = "$e:a.test"
    return event


def _state_list(state: State) -> list[list[str]]:
    return sorted([t, k, e] for (t, k), e in state.items())


def _build_case(version: str, seed: int) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    gen = Generator(version, seed)
    for _ in range(EVENTS_PER_CASE):
        gen.random_event()
    heads = gen.heads()
    if len(heads) > 1:
        gen.merges.append(heads)
    queries: list[dict[str, Any]] = []
    expected: list[tuple[str, Any]] = []
    for event_id in gen.order:
        ok = event_id not in gen.rejected
        queries.append({"kind": "auth_events", "event_id": event_id})
        # Our verdict against auth events alone.
        event = gen.events[event_id]
        try:
            check_event_auth(
                event,
                [gen.events[a] for a in auth_event_ids(event) if a in gen.events],
                version,
                create_event=gen.events[gen.order[0]],
                is_rejected=gen.rejected.__contains__,
            )
            expected.append((f"auth_events {event_id}", None))
        except AuthError as exc:
            expected.append((f"auth_events {event_id}", str(exc)))
        if event["type"] != "m.room.create":
            state = gen.state_before[event_id]
            queries.append({"kind": "auth_state", "event_id": event_id, "state": _state_list(state)})
            try:
                check_auth(event, {k: gen.events[v] for k, v in state.items()}, version)
                expected.append((f"auth_state {event_id}", None))
            except AuthError as exc:
                expected.append((f"auth_state {event_id}", str(exc)))
        del ok
    for prevs in gen.merges:
        sets = [gen.state_after[p] for p in prevs]
        queries.append({"kind": "resolve", "state_sets": [_state_list(s) for s in sets]})
        expected.append((f"resolve {prevs}", _state_list(resolve_state(version, sets, gen.events))))
    rng = random.Random(seed)
    for _ in range(30):
        event = _random_redactable_event(rng, version)
        queries.append({"kind": "redact", "event": event})
        redacted = redact_event(event, version)
        redacted.pop("unsigned", None)
        expected.append((f"redact {event}", redacted))
    events = [{**gen.events[e], "rejected": e in gen.rejected} for e in gen.order]
    return {"room_version": version, "events": events, "queries": queries}, expected


VERSIONS = [str(n) for n in range(1, 13)]

Expectations = list[list[tuple[str, Any]]]


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[Expectations, list[Any]]]:
    """Every room version's cases, with our expected verdicts and Synapse's answers.

    One oracle process judges the cases of all versions: starting Synapse's code costs more
    than judging a version's cases, so one start instead of one per version."""
    cases: list[dict[str, Any]] = []
    expectations: dict[str, Expectations] = {}
    for version in VERSIONS:
        expectations[version] = []
        for seed in range(CASES):
            case, expected = _build_case(version, seed * 7919 + int(version))
            cases.append(case)
            expectations[version].append(expected)
    proc = subprocess.run(
        [SYNAPSE_PYTHON, str(ORACLE)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout)
    assert len(answers) == len(cases)
    return {
        version: (expectations[version], answers[i * CASES:(i + 1) * CASES])
        for i, version in enumerate(VERSIONS)
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_against_synapse(version: str, verdicts: dict[str, tuple[Expectations, list[Any]]]) -> None:
    expectations, answers = verdicts[version]
    mismatches = []
    for seed, (expected, got) in enumerate(zip(expectations, answers, strict=True)):
        for (label, ours), theirs in zip(expected, got, strict=True):
            if label.startswith(("resolve", "redact")):
                if ours != theirs:
                    mismatches.append((seed, label, ours, theirs))
            elif (ours is None) != (theirs is None):
                mismatches.append((seed, label, ours, theirs))
    assert not mismatches, "\n".join(map(str, mismatches[:20]))
