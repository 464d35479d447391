"""Hand-built state resolution scenarios for v2 (room v11) and v2.1 (room v12)."""

from __future__ import annotations

import pytest

from federation.events import (
    compute_auth_chain,
    conflicted_state_subgraph,
    is_power_event,
    resolve_state,
    separate_state_sets,
)

from .dag import Dag

ALICE = "@alice:a.test"
BOB = "@bob:b.test"
CAROL = "@carol:c.test"
ELLA = "@ella:e.test"

PL = ("m.room.power_levels", "")
JR = ("m.room.join_rules", "")
TOPIC = ("m.room.topic", "")


def member(user: str) -> tuple[str, str]:
    return ("m.room.member", user)


@pytest.fixture(params=["10", "11", "12"])
def version(request: pytest.FixtureRequest) -> str:
    return request.param


def users(version: str, **levels: int) -> dict[str, int]:
    """Power level ``users``; v12 forbids listing the creator."""
    mapping = {"@" + k + (":a.test" if k == "alice" else f":{k[0]}.test"): v for k, v in levels.items()}
    if version != "12":
        mapping.setdefault(ALICE, 100)
    return mapping


def public_room(version: str, **levels: int) -> Dag:
    """create, alice joins, power levels (bob 50 by default), public join rules, bob joins."""
    dag = Dag(version)
    dag.add("$alice", ALICE, "m.room.member", {"membership": "join"}, ALICE, auth=[], prev=["$create"], ts=1)
    levels = {"bob": 50, **levels}
    dag.add("$pl0", ALICE, "m.room.power_levels", {"users": users(version, **levels)}, "", auth=["$alice"], prev=["$alice"], ts=2)
    dag.add("$jr", ALICE, "m.room.join_rules", {"join_rule": "public"}, "", auth=["$alice", "$pl0"], prev=["$pl0"], ts=3)
    dag.add("$bob", BOB, "m.room.member", {"membership": "join"}, BOB, auth=["$pl0", "$jr"], prev=["$jr"], ts=4)
    return dag


def test_linear_history_needs_no_resolution(version: str) -> None:
    dag = public_room(version)
    states = dag.state_after()
    assert states["$bob"] == {
        ("m.room.create", ""): "$create",
        member(ALICE): "$alice",
        PL: "$pl0",
        JR: "$jr",
        member(BOB): "$bob",
    }
    assert resolve_state(version, [states["$bob"]], dag.events) == states["$bob"]
    assert resolve_state(version, [], dag.events) == {}


def test_ban_beats_concurrent_topic(version: str) -> None:
    dag = public_room(version, bob=50)
    dag.add("$ban", ALICE, "m.room.member", {"membership": "ban"}, BOB, auth=["$alice", "$pl0", "$bob"], prev=["$bob"], ts=10)
    # Bob's topic is later in wall-clock time but based on the state before the ban.
    dag.add("$topic", BOB, "m.room.topic", {"topic": "spam"}, "", auth=["$bob", "$pl0"], prev=["$bob"], ts=11)
    resolved = dag.resolve_heads("$ban", "$topic")
    assert resolved[member(BOB)] == "$ban"
    assert TOPIC not in resolved


def test_topic_survives_unrelated_ban(version: str) -> None:
    dag = public_room(version, bob=50)
    dag.add("$carol", CAROL, "m.room.member", {"membership": "join"}, CAROL, auth=["$pl0", "$jr"], prev=["$bob"], ts=5)
    dag.add("$ban", ALICE, "m.room.member", {"membership": "ban"}, CAROL, auth=["$alice", "$pl0", "$carol"], prev=["$carol"], ts=10)
    dag.add("$topic", BOB, "m.room.topic", {"topic": "ok"}, "", auth=["$bob", "$pl0"], prev=["$carol"], ts=11)
    resolved = dag.resolve_heads("$ban", "$topic")
    assert resolved[member(CAROL)] == "$ban"
    assert resolved[TOPIC] == "$topic"


def test_demotion_beats_concurrent_power_level_change(version: str) -> None:
    dag = public_room(version, bob=50)
    dag.add("$demote", ALICE, "m.room.power_levels", {"users": users(version, bob=0)}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=20)
    # Bob, still at 50, tries to promote carol; his event has the earlier timestamp.
    dag.add("$bob_pl", BOB, "m.room.power_levels", {"users": users(version, bob=50, carol=50)}, "", auth=["$bob", "$pl0"], prev=["$bob"], ts=10)
    resolved = dag.resolve_heads("$demote", "$bob_pl")
    assert resolved[PL] == "$demote"
    # Regardless of head order.
    assert dag.resolve_heads("$bob_pl", "$demote")[PL] == "$demote"


def test_demotion_reverts_concurrent_ban_by_demoted_user(version: str) -> None:
    dag = public_room(version, bob=50)
    dag.add("$carol", CAROL, "m.room.member", {"membership": "join"}, CAROL, auth=["$pl0", "$jr"], prev=["$bob"], ts=5)
    dag.add("$demote", ALICE, "m.room.power_levels", {"users": users(version, bob=0)}, "", auth=["$alice", "$pl0"], prev=["$carol"], ts=20)
    dag.add("$ban", BOB, "m.room.member", {"membership": "ban"}, CAROL, auth=["$bob", "$pl0", "$carol"], prev=["$carol"], ts=10)
    resolved = dag.resolve_heads("$demote", "$ban")
    assert resolved[PL] == "$demote"
    assert resolved[member(CAROL)] == "$carol"


def test_join_rules_change_beats_concurrent_join(version: str) -> None:
    dag = public_room(version)
    dag.add("$invite_only", ALICE, "m.room.join_rules", {"join_rule": "invite"}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=10)
    dag.add("$ella", ELLA, "m.room.member", {"membership": "join"}, ELLA, auth=["$pl0", "$jr"], prev=["$bob"], ts=11)
    resolved = dag.resolve_heads("$invite_only", "$ella")
    assert resolved[JR] == "$invite_only"
    assert member(ELLA) not in resolved


def test_concurrent_joins_both_kept(version: str) -> None:
    dag = public_room(version)
    dag.add("$carol", CAROL, "m.room.member", {"membership": "join"}, CAROL, auth=["$pl0", "$jr"], prev=["$bob"], ts=10)
    dag.add("$ella", ELLA, "m.room.member", {"membership": "join"}, ELLA, auth=["$pl0", "$jr"], prev=["$bob"], ts=10)
    resolved = dag.resolve_heads("$carol", "$ella")
    assert resolved[member(CAROL)] == "$carol"
    assert resolved[member(ELLA)] == "$ella"


@pytest.mark.parametrize(("ts_alice", "ts_bob", "winner"), [(20, 10, "$t_alice"), (10, 20, "$t_bob"), (15, 15, "$t_bob")])
def test_concurrent_topics_tie_broken_by_timestamp_then_id(version: str, ts_alice: int, ts_bob: int, winner: str) -> None:
    dag = public_room(version)
    dag.add("$t_alice", ALICE, "m.room.topic", {"topic": "a"}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=ts_alice)
    dag.add("$t_bob", BOB, "m.room.topic", {"topic": "b"}, "", auth=["$bob", "$pl0"], prev=["$bob"], ts=ts_bob)
    # Same mainline position: later timestamp is applied last and wins; on a
    # tie the greater event ID ("$t_bob") is applied last.
    assert dag.resolve_heads("$t_alice", "$t_bob")[TOPIC] == winner


def test_mainline_position_beats_timestamp(version: str) -> None:
    dag = public_room(version)
    dag.add("$pl1", ALICE, "m.room.power_levels", {"users": users(version, bob=50), "events": {"m.x": 1}}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=10)
    dag.add("$t_new", BOB, "m.room.topic", {"topic": "new"}, "", auth=["$bob", "$pl1"], prev=["$pl1"], ts=11)
    # Concurrent topic based on the older power levels, with a much later timestamp.
    dag.add("$t_old", BOB, "m.room.topic", {"topic": "old"}, "", auth=["$bob", "$pl0"], prev=["$bob"], ts=99)
    resolved = dag.resolve_heads("$t_new", "$t_old")
    assert resolved[PL] == "$pl1"
    assert resolved[TOPIC] == "$t_new"


def test_v21_mainline_comes_from_the_partial_state_only() -> None:
    """With the power levels unconflicted, v2 orders by the PL mainline but v2.1
    (starting from an empty map) has no power levels in its partial state, so
    it orders the remaining events by timestamp alone."""
    results = {}
    for version in ("11", "12"):
        dag = public_room(version)
        dag.add("$pl1", ALICE, "m.room.power_levels", {"users": users(version, bob=50), "events": {"m.x": 1}}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=5)
        dag.add("$t_old", ALICE, "m.room.topic", {"topic": "old"}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=50)
        dag.add("$t_new", ALICE, "m.room.topic", {"topic": "new"}, "", auth=["$alice", "$pl1"], prev=["$pl1"], ts=10)
        base = {("m.room.create", ""): "$create", member(ALICE): "$alice", member(BOB): "$bob", JR: "$jr", PL: "$pl1"}
        results[version] = resolve_state(version, [{**base, TOPIC: "$t_old"}, {**base, TOPIC: "$t_new"}], dag.events)
        assert results[version][PL] == "$pl1"
    assert results["11"][TOPIC] == "$t_new"
    assert results["12"][TOPIC] == "$t_old"


def test_rejected_auth_events_are_not_used(version: str) -> None:
    dag = public_room(version)
    dag.add("$pl_open", ALICE, "m.room.power_levels", {"users": users(version), "state_default": 0}, "", auth=["$alice", "$pl0"], prev=["$bob"], ts=5)
    dag.add("$topic", BOB, "m.room.topic", {"topic": "x"}, "", auth=["$bob", "$pl_open"], prev=["$pl_open"], ts=6)
    base = {("m.room.create", ""): "$create", member(ALICE): "$alice", member(BOB): "$bob", JR: "$jr", PL: "$pl_open"}
    sets = [{**base, TOPIC: "$topic"}, base]
    assert resolve_state(version, sets, dag.events)[TOPIC] == "$topic"
    # Once Bob's join is known to be rejected it cannot authorise his topic.
    resolved = resolve_state(version, sets, dag.events, rejected={"$bob"})
    assert TOPIC not in resolved
    assert resolved[member(BOB)] == "$bob", "unconflicted state always survives"
    assert TOPIC not in resolve_state(version, sets, dag.events.get, rejected=lambda e: e == "$bob")


def test_explicit_auth_chains_match_computed(version: str) -> None:
    dag = public_room(version, bob=50)
    dag.add("$ban", ALICE, "m.room.member", {"membership": "ban"}, BOB, auth=["$alice", "$pl0", "$bob"], prev=["$bob"], ts=10)
    dag.add("$topic", BOB, "m.room.topic", {"topic": "spam"}, "", auth=["$bob", "$pl0"], prev=["$bob"], ts=11)
    states = dag.state_after()
    sets = [states["$ban"], states["$topic"]]
    chains = [compute_auth_chain(s.values(), dag.events, version) for s in sets]
    assert resolve_state(version, sets, dag.events, auth_chains=chains) == resolve_state(version, sets, dag.events)


def test_missing_events_are_tolerated(version: str) -> None:
    dag = public_room(version)
    dag.add("$t1", ALICE, "m.room.topic", {"topic": "a"}, "", auth=["$alice", "$pl0", "$gone"], prev=["$bob"], ts=10)
    base = dag.state_after()["$bob"]
    resolved = resolve_state(version, [{**base, TOPIC: "$t1"}, {**base, TOPIC: "$unknown"}], dag.events)
    assert resolved[TOPIC] == "$t1"


def test_helpers(version: str) -> None:
    dag = public_room(version)
    unconflicted, conflicted = separate_state_sets([{PL: "$a", JR: "$j"}, {PL: "$b", JR: "$j"}, {JR: "$j", TOPIC: "$t"}])
    assert unconflicted == {JR: "$j"}
    assert conflicted == {PL: {"$a", "$b"}, TOPIC: {"$t"}}
    assert compute_auth_chain(["$bob"], dag.events, version) == {"$create", "$alice", "$pl0", "$jr"}
    assert is_power_event(dag.events["$pl0"]) and is_power_event(dag.events["$jr"])
    assert not is_power_event(dag.events["$bob"])
    kick = {"type": "m.room.member", "sender": ALICE, "state_key": BOB, "content": {"membership": "leave"}}
    assert is_power_event(kick)
    assert not is_power_event({**kick, "sender": BOB})
    assert not is_power_event({"type": "m.room.power_levels", "state_key": "x"})


def test_conflicted_state_subgraph() -> None:
    #   A <- B <- C      (C cites B, B cites A)
    #   A <- D           (D off the path)
    #   X <- C           (X only reachable from C)
    events = {
        "$a": {"event_id": "$a", "auth_events": []},
        "$b": {"event_id": "$b", "auth_events": ["$a"]},
        "$c": {"event_id": "$c", "auth_events": ["$b", "$x"]},
        "$d": {"event_id": "$d", "auth_events": ["$a"]},
        "$x": {"event_id": "$x", "auth_events": []},
    }
    assert conflicted_state_subgraph({"$c", "$a"}, events, "11") == {"$a", "$b", "$c"}
    assert conflicted_state_subgraph({"$c", "$d"}, events, "11") == {"$c", "$d"}
    assert conflicted_state_subgraph({"$c", "$x", "$a"}, events, "11") == {"$a", "$b", "$c", "$x"}
