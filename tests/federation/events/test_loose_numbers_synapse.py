"""Floats and large integers in events of room versions 1-5, against Synapse.

Room version 6 made servers refuse events whose JSON holds a float or an integer
beyond +-(2**53 - 1). Before it such events are valid, and rooms created by Synapse
hold them (a power level of 50.0, a client's `{"rating": 4.5}`): Synapse accepts
them and hashes, signs and names them over Python canonicaljson's bytes, where
each float is written by Python's shortest round-trip repr (`1.0`, `1e+100`).
We must produce the same bytes, or Synapse's events would be refused (a
redacted form whose signature does not verify) or wrongly redacted here.

Differential: events we build with such numbers are given to Synapse, which
must receive them (`event_from_pdu_json`), find the content hash right, name them
with our event ID, and compute with the same key the same hashes and signatures,
byte for byte. From v6 both refuse them. The encoder itself is also compared
with the canonicaljson library on random values holding such numbers.
"""

from __future__ import annotations

import json
import random
import subprocess
from typing import Any

import canonicaljson
import pytest

from federation.events import (
    EventFormatError,
    build_event,
    compute_reference_hash,
    encode_base64,
    encode_event_canonical_json,
    get_room_version,
    has_loose_numbers,
    validate_pdu,
)

from .roomkit import key_for
from .test_canonical_equivalence import _value
from .test_differential_synapse import ORACLE, SYNAPSE_PYTHON
from .test_differential_synapse import pytestmark as needs_synapse

SERVER = "a.test"
LOOSE = [1.5, 1.0, -0.0, 0.1, 1e10, 1e100, 1e-7, 2.5e-300, 123456789.123, 1e16, 1e22, 2**53, -(2**60), 2**63 - 1]


def _loose_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 3)
    if kind == 0:
        return rng.choice(LOOSE)
    if kind == 1:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    if kind == 2 and depth < 3:
        return {f"k{i}": _loose_value(rng, depth + 1) for i in range(rng.randint(0, 3))}
    return _value(rng, depth + 2)


def _events(version: str) -> list[dict[str, Any]]:
    """Events of one room holding loose numbers: a create event, power levels with
    float levels (the redaction keeps them, so signatures cover them), messages."""
    rng = random.Random(int(version))
    key = key_for(SERVER)
    sender = f"@alice:{SERVER}"
    contents: list[tuple[str, str | None, dict[str, Any]]] = [
        ("m.room.power_levels", "", {"users": {sender: 100.0}, "ban": 50.5, "events_default": 0.0}),
        ("m.room.message", None, {"body": "floats", "value": 1.5, "list": [1.0, 1e100, -0.0]}),
        ("m.room.message", None, {"body": "big", "value": 2**60}),
    ]
    contents += [("m.room.message", None, {"v": _loose_value(rng)}) for _ in range(25)]
    events = []
    for i, (event_type, state_key, content) in enumerate(contents):
        events.append(build_event(
            version, room_id=f"!loose:{SERVER}", sender=sender, event_type=event_type, content=content,
            state_key=state_key, prev_events=[], auth_events=[], depth=i + 1,
            origin_server_ts=1_700_000_000_000 + i, signing_key=key, server_name=SERVER,
        ))
    return events


@pytest.mark.parametrize("seed", range(10))
def test_encoder_matches_canonicaljson_on_loose_numbers(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        value = {"k": _loose_value(rng)}
        assert encode_event_canonical_json(value) == canonicaljson.encode_canonical_json(value)


VERSIONS = [str(n) for n in range(1, 13)]


def _case(version: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Our events for this version and the oracle's case for them. From v6 we cannot
    build them; Synapse is given the same events as v5 made them, to refuse."""
    rv = get_room_version(version)
    if rv.strict_canonical_json:
        with pytest.raises(EventFormatError):
            _events(version)
        events = _events("5")
    else:
        events = _events(version)
        for event in events:
            validate_pdu(event, version)
    key = key_for(SERVER)
    queries = [{
        "kind": "hash_sign", "event": {k: v for k, v in e.items() if rv.event_id_in_pdu or k != "event_id"},
        "seed": encode_base64(bytes(key)), "server": SERVER, "key_version": key.version,
    } for e in events]
    return events, {"room_version": version, "only_hashes": True, "events": [], "queries": queries}


@pytest.fixture(scope="module")
def synapse_answers() -> dict[str, tuple[list[dict[str, Any]], list[Any]]]:
    """One Synapse process for every version (its start-up is most of the cost)."""
    cases = {v: _case(v) for v in VERSIONS}
    proc = subprocess.run(
        [SYNAPSE_PYTHON, str(ORACLE)],
        input=json.dumps([case for _, case in cases.values()]),
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout)
    return {v: (events, got) for (v, (events, _)), got in zip(cases.items(), answers, strict=True)}


@needs_synapse
@pytest.mark.parametrize("version", VERSIONS)
def test_loose_numbers_against_synapse(
    version: str, synapse_answers: dict[str, tuple[list[dict[str, Any]], list[Any]]]
) -> None:
    rv = get_room_version(version)
    events, answers = synapse_answers[version]
    for event, got in zip(events, answers, strict=True):
        if rv.strict_canonical_json and has_loose_numbers(event):
            assert isinstance(got, str) and ("float" in got or "out of range" in got), got
            continue
        assert isinstance(got, dict), got
        assert got["content_hash_ok"], event
        if not rv.strict_canonical_json:
            assert got["event_id"] == event["event_id"]
        assert got["reference_hash"] == encode_base64(compute_reference_hash(event, version))
        assert got["hashes"] == event["hashes"]
        assert got["signatures"] == event["signatures"], event
