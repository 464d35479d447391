"""Synapse as a test oracle: run with a Python that has ``matrix-synapse`` installed.

Reads a JSON list of cases on stdin and writes Synapse's verdicts as JSON on
stdout. Lives in the test tree but is never imported by the project's own
interpreter (Synapse is not a project dependency); the differential test
starts it as a subprocess via ``ACCORD_SYNAPSE_PYTHON``.

Case: {"room_version", "events": [pdu + event_id + rejected], "queries": [...]}
Query kinds:
  {"kind": "auth_events", "event_id"}            -> null or error string
  {"kind": "auth_state", "event_id", "state"}    -> null or error string
  {"kind": "resolve", "state_sets"}              -> [[type, state_key, event_id], ...]
  {"kind": "redact", "event"}                    -> the redacted event, minus ``unsigned``
  {"kind": "hash_sign", "event", "seed", "server", "key_version"}
      -> Synapse receiving our signed PDU (`event_from_pdu_json`): an error string, or
         {"content_hash_ok", "event_id", "reference_hash", "hashes", "signatures"},
         the last two what Synapse itself computes for the event with the same key
where state maps are lists of [type, state_key, event_id].
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from signedjson.key import decode_signing_key_base64
from synapse import event_auth
from synapse.api.errors import AuthError, SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.crypto.event_signing import (
    add_hashes_and_signatures,
    check_event_content_hash,
    compute_event_reference_hash,
)
from synapse.events import make_event_from_dict
from synapse.events.utils import prune_event
from synapse.federation.federation_base import event_from_pdu_json
from synapse.state import v1, v2
from synapse.storage.databases.main.event_federation import StateDifference
from unpaddedbase64 import encode_base64


class _Clock:
    async def sleep(self, duration: Any) -> None:
        return None


class _Store:
    def __init__(self, events: dict[str, Any], v21: bool) -> None:
        self.events = events
        self.v21 = v21

    async def get_events(self, event_ids: Any, allow_rejected: bool = False, **_: Any) -> dict:
        return {
            e: self.events[e]
            for e in event_ids
            if e in self.events and (allow_rejected or self.events[e].rejected_reason is None)
        }

    async def get_auth_chain_difference(self, room_id: str, state_sets: Any, *_: Any) -> Any:
        # Every event is passed to Synapse as "unpersisted", so Synapse computes
        # the difference and subgraph itself and nothing remains for the store.
        return StateDifference(auth_difference=set(), conflicted_subgraph=set() if self.v21 else None)


async def _run_case(case: dict[str, Any]) -> list[Any]:
    room_version = KNOWN_ROOM_VERSIONS[case["room_version"]]
    if case.get("only_hashes"):
        return [_hash_sign(room_version, q) for q in case["queries"]]
    events: dict[str, Any] = {}
    # Room versions 1 and 2 carry the event ID in the PDU; later ones derive it.
    id_in_pdu = room_version.event_format == 1
    for raw in case["events"]:
        dropped = ("rejected",) if id_in_pdu else ("event_id", "rejected")
        pdu = {k: v for k, v in raw.items() if k not in dropped}
        event = make_event_from_dict(
            pdu, room_version, rejected_reason="auth" if raw.get("rejected") else None
        )
        if event.event_id != raw["event_id"]:
            raise SystemExit(f"event ID mismatch: {event.event_id} != {raw['event_id']}")
        events[event.event_id] = event
    store = _Store(events, case["room_version"] == "12")
    room_id = next(iter(events.values())).room_id
    results: list[Any] = []
    for query in case["queries"]:
        kind = query["kind"]
        try:
            if kind == "auth_events":
                event = events[query["event_id"]]
                await event_auth.check_state_independent_auth_rules(store, event)
                auth = [events[a] for a in event.auth_event_ids() if a in events]
                event_auth.check_state_dependent_auth_rules(event, auth)
                results.append(None)
            elif kind == "auth_state":
                event = events[query["event_id"]]
                state = [events[e] for _t, _k, e in query["state"]]
                event_auth.check_state_dependent_auth_rules(event, state)
                results.append(None)
            elif kind == "resolve":
                state_sets = [{(t, k): e for t, k, e in s} for s in query["state_sets"]]
                # Rejected events are never part of a state or its auth chains;
                # keep them out of the in-flight map Synapse walks eagerly.
                in_flight = {k: e for k, e in events.items() if e.rejected_reason is None}
                if room_version.state_res == 1:

                    async def no_more(_ids: Any) -> dict:
                        return {}

                    resolved = await v1.resolve_events_with_store(
                        room_id, room_version, state_sets, in_flight, no_more
                    )
                else:
                    resolved = await v2.resolve_events_with_store(
                        _Clock(), room_id, room_version, state_sets, in_flight, store
                    )
                results.append(sorted([t, k, e] for (t, k), e in resolved.items()))
            elif kind == "redact":
                original = make_event_from_dict(dict(query["event"]), room_version)
                pruned = dict(prune_event(original).get_pdu_json())
                pruned.pop("unsigned", None)  # Synapse keeps internal bookkeeping there
                results.append(pruned)
            else:
                raise SystemExit(f"unknown query {kind}")
        except (AuthError, SynapseError) as exc:
            results.append(f"{type(exc).__name__}: {exc}")
        except RuntimeError as exc:
            # Synapse's Rust event classes refuse some malformed events (e.g. a v12
            # event citing the create event) outright; for auth queries that is a
            # rejection, anywhere else a harness failure.
            if kind == "resolve":
                raise
            results.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return results


def _hash_sign(room_version: Any, query: dict[str, Any]) -> Any:
    pdu = dict(query["event"])
    try:
        event = event_from_pdu_json(dict(pdu), room_version)
    except SynapseError as exc:
        return f"{type(exc).__name__}: {exc}"
    key = decode_signing_key_base64("ed25519", query["key_version"], query["seed"])
    unsigned = {k: v for k, v in pdu.items() if k not in ("hashes", "signatures")}
    add_hashes_and_signatures(room_version, unsigned, query["server"], key)  # in place
    return {
        "content_hash_ok": check_event_content_hash(event),
        "event_id": event.event_id,
        "reference_hash": encode_base64(compute_event_reference_hash(event)[1], urlsafe=False),
        "hashes": unsigned["hashes"],
        "signatures": unsigned["signatures"],
    }


def main() -> None:
    cases = json.load(sys.stdin)
    out = [asyncio.run(_run_case(case)) for case in cases]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
