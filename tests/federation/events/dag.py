"""Readable-ID event DAGs for state resolution tests (no hashes or signatures,
like the shared state-res fixtures), plus the replay that computes the state
at every event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from federation.events import get_room_version, resolve_state

StateMap = dict[tuple[str, str], str]


class Dag:
    def __init__(self, version: str, creator: str = "@alice:a.test") -> None:
        self.version = version
        self.rv = get_room_version(version)
        self.events: dict[str, dict[str, Any]] = {}
        content: dict[str, Any] = {"room_version": version}
        if self.rv.create_requires_creator_field:
            content["creator"] = creator
        self.room_id = "!create" if self.rv.room_id_is_create_event_id else "!room:a.test"
        self.add("$create", creator, "m.room.create", content, "", auth=[], prev=[], ts=0)

    def add(
        self,
        event_id: str,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        auth: Sequence[str],
        prev: Sequence[str],
        ts: int,
    ) -> str:
        auth = list(auth)
        if event_type != "m.room.create" and self.rv.create_event_in_auth_events:
            auth.insert(0, "$create")
        event: dict[str, Any] = {
            "event_id": event_id,
            "type": event_type,
            "sender": sender,
            "content": dict(content),
            "origin_server_ts": ts,
            "prev_events": list(prev),
            "auth_events": auth,
            "depth": 0,
            "hashes": {},
            "signatures": {},
        }
        if not (event_type == "m.room.create" and self.rv.room_id_is_create_event_id):
            event["room_id"] = self.room_id
        if state_key is not None:
            event["state_key"] = state_key
        self.events[event_id] = event
        return event_id

    def state_after(self) -> dict[str, StateMap]:
        return replay(self.version, self.events.values())

    def resolve_heads(self, *heads: str, rejected: Iterable[str] = ()) -> StateMap:
        states = self.state_after()
        return resolve_state(self.version, [states[h] for h in heads], self.events, rejected=rejected)


def replay(version: str, pdus: Iterable[Mapping[str, Any]]) -> dict[str, StateMap]:
    """The state after every event, each computed from the states after its prev_events."""
    events = {e["event_id"]: e for e in pdus}
    children: dict[str, list[str]] = {e: [] for e in events}
    pending: dict[str, int] = {}
    for event_id, event in events.items():
        pending[event_id] = len(event["prev_events"])
        for prev in event["prev_events"]:
            children[prev].append(event_id)
    ready = sorted(e for e, n in pending.items() if n == 0)
    state_after: dict[str, StateMap] = {}
    while ready:
        event_id = ready.pop()
        event = events[event_id]
        after = resolve_state(version, [state_after[p] for p in event["prev_events"]], events)
        if "state_key" in event:
            after[(event["type"], event["state_key"])] = event_id
        state_after[event_id] = after
        for child in children[event_id]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    if len(state_after) != len(events):
        raise ValueError("prev_events reference unknown events")
    return state_after
