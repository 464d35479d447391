"""Runs every state resolution test vector in /work/shared/test-vectors/state-res.

Batch scenarios are replayed PDU by PDU along ``prev_events`` (the state
before an event is the resolution of the states after its parents), and
also resolved all at once, since the README requires both to agree.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from federation.events import resolve_state

from .dag import replay

VECTORS = Path(os.environ.get("ACCORD_STATE_RES_VECTORS", "/work/shared/test-vectors/state-res"))
FIXTURES = VECTORS / "fixtures"

BATCH_SCENARIOS: dict[str, list[str]] = {
    "minimal_private_chat": ["bootstrap-private-chat"],
    "minimal_public_chat": ["bootstrap-public-chat"],
    "origin_server_ts_tiebreak": ["bootstrap-private-chat", "origin-server-ts-tiebreak"],
    "ban_vs_power_levels": [
        "bootstrap-public-chat",
        "ban-vs-power-levels-alice",
        "ban-vs-power-levels-bob",
    ],
    "topic_vs_power_levels": [
        "bootstrap-public-chat",
        "topic-vs-power-levels-alice",
        "topic-vs-power-levels-bob",
    ],
    "power_levels_admin_vs_mod": [
        "bootstrap-public-chat",
        "power-levels-admin-vs-mod-alice",
        "power-levels-admin-vs-mod-bob",
    ],
    "topic_vs_ban": [
        "bootstrap-public-chat",
        "topic-vs-ban-common",
        "topic-vs-ban-alice",
        "topic-vs-ban-bob",
    ],
    "join_rules_vs_join": [
        "bootstrap-public-chat",
        "join-rules-vs-join-common",
        "join-rules-vs-join-alice",
        "join-rules-vs-join-ella",
    ],
    "concurrent_joins": [
        "bootstrap-public-chat",
        "concurrent-joins-charlie",
        "concurrent-joins-ella",
    ],
}

STATE_MAP_SCENARIOS: dict[str, tuple[list[str], str]] = {
    "msc4297_problem_a_state_res_v2_0": (
        ["MSC4297-problem-A/state-bob", "MSC4297-problem-A/state-charlie"],
        "MSC4297-problem-A/pdus-v11",
    ),
    "msc4297_problem_a_state_res_v2_1": (
        ["MSC4297-problem-A/state-bob", "MSC4297-problem-A/state-charlie"],
        "MSC4297-problem-A/pdus-v12",
    ),
    "msc4297_problem_b_state_res_v2_0": (
        ["MSC4297-problem-B/state-eve", "MSC4297-problem-B/state-zara"],
        "MSC4297-problem-B/pdus-v11",
    ),
    "msc4297_problem_b_state_res_v2_1": (
        ["MSC4297-problem-B/state-eve", "MSC4297-problem-B/state-zara"],
        "MSC4297-problem-B/pdus-v12",
    ),
}

pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason="state-res vectors not available")


def _load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _expected(name: str) -> dict[tuple[str, str], str]:
    text = (VECTORS / "expected" / f"{name}@resolved_state.snap").read_text()
    # insta snapshot: a YAML front matter block between '---' lines, then JSON.
    body = text.split("---", 2)[2]
    return {(e["type"], e["state_key"]): e["event_id"] for e in json.loads(body)}


def _room_version(pdus: list[dict[str, Any]]) -> str:
    create = pdus[0]
    assert create["type"] == "m.room.create"
    return create["content"].get("room_version", "1")


def _key(event: dict[str, Any]) -> tuple[str, str]:
    return (event["type"], event["state_key"])


def _resolve_along_dag(room_version: str, pdus: list[dict[str, Any]]) -> dict:
    events = {e["event_id"]: e for e in pdus}
    state_after = replay(room_version, pdus)
    parents = {p for e in pdus for p in e["prev_events"]}
    leaves = [eid for eid in events if eid not in parents]
    return resolve_state(room_version, [state_after[leaf] for leaf in leaves], events)


@pytest.mark.parametrize("scenario", sorted(BATCH_SCENARIOS))
def test_batch_scenario(scenario: str) -> None:
    pdus = [pdu for name in BATCH_SCENARIOS[scenario] for pdu in _load(name)]
    room_version = _room_version(pdus)
    resolved = _resolve_along_dag(room_version, pdus)
    assert resolved == _expected(scenario)


@pytest.mark.parametrize("scenario", sorted(BATCH_SCENARIOS))
def test_batch_scenario_resolved_at_once(scenario: str) -> None:
    """Every PDU as its own one-entry state set, resolved in a single call."""
    pdus = [pdu for name in BATCH_SCENARIOS[scenario] for pdu in _load(name)]
    events = {e["event_id"]: e for e in pdus}
    state_sets = [{_key(e): e["event_id"]} for e in pdus]
    resolved = resolve_state(_room_version(pdus), state_sets, events)
    assert resolved == _expected(scenario)


@pytest.mark.parametrize("scenario", sorted(STATE_MAP_SCENARIOS))
def test_state_map_scenario(scenario: str) -> None:
    state_files, pdus_file = STATE_MAP_SCENARIOS[scenario]
    pdus = _load(pdus_file)
    events = {e["event_id"]: e for e in pdus}
    state_sets = [{_key(events[i]): i for i in _load(f)} for f in state_files]
    resolved = resolve_state(_room_version(pdus), state_sets, events)
    assert resolved == _expected(scenario)


def test_every_expected_file_is_covered() -> None:
    names = {p.name.split("@")[0] for p in (VECTORS / "expected").glob("*.snap")}
    assert names == set(BATCH_SCENARIOS) | set(STATE_MAP_SCENARIOS)
