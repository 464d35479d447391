"""State resolution v1 (room version 1), v2 (versions 2 to 11) and v2.1 (version 12).

The caller supplies events through a mapping or a synchronous fetch
function; the homeserver is expected to preload everything reachable from
the state sets (the events in them and their auth chains). Missing events
are tolerated the way the spec's "Rejected events" note implies: an auth
event that cannot be found simply does not contribute.

Conventions: state maps are ``{(type, state_key): event_id}``; events are
PDU dicts carrying ``event_id``; ``rejected`` names events rejected on
receipt, which must not be used as auth events during the iterative auth
checks (they are still re-checked themselves, as the spec requires).
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from .auth import AuthError, auth_types_for_event, check_auth
from .hashing import create_event_id_from_room_id
from .power_levels import CREATE_KEY, POWER_LEVELS_KEY, Event, StateKey, get_user_power_level
from .references import auth_event_ids
from .room_versions import RoomVersion, StateResolutionVersion, get_room_version

__all__ = [
    "EventSource",
    "compute_auth_chain",
    "conflicted_state_subgraph",
    "is_power_event",
    "resolve_state",
    "separate_state_sets",
]

EventFetcher = Callable[[str], Event | None]
EventSource = Mapping[str, Event] | EventFetcher
RejectedSource = Collection[str] | Callable[[str], bool] | None


def _fetcher(events: EventSource) -> EventFetcher:
    if isinstance(events, Mapping):
        return events.get
    return events


def _rejected_predicate(rejected: RejectedSource) -> Callable[[str], bool]:
    if rejected is None:
        return lambda _event_id: False
    if callable(rejected):
        return rejected
    rejected_set = frozenset(rejected)
    return rejected_set.__contains__


def _auth_event_ids(event: Event, rv: RoomVersion) -> list[str]:
    """An event's auth events, with v12's implicit create event made explicit.

    v12 drops the create event from ``auth_events`` because the room ID
    names it, but it is still the root of every auth chain; treating it as
    cited keeps auth chains and sender power levels uniform across versions.
    """
    ids = auth_event_ids(event)
    if rv.room_id_is_create_event_id and event.get("type") != "m.room.create":
        room_id = event.get("room_id")
        if isinstance(room_id, str) and room_id.startswith("!"):
            create_id = create_event_id_from_room_id(room_id)
            if create_id not in ids:
                ids.append(create_id)
    return ids


def compute_auth_chain(
    event_ids: Iterable[str], events: EventSource, room_version: str | RoomVersion
) -> set[str]:
    """The union of the auth chains of ``event_ids`` (the events themselves excluded
    unless one is in another's chain).

    Exposed for federation endpoints (/state, /send_join, /event_auth) that
    must return auth chains.
    """
    rv = get_room_version(room_version)
    fetch = _fetcher(events)
    chain: set[str] = set()
    stack: list[str] = []
    for event_id in event_ids:
        event = fetch(event_id)
        if event is not None:
            stack.extend(_auth_event_ids(event, rv))
    while stack:
        event_id = stack.pop()
        if event_id in chain:
            continue
        chain.add(event_id)
        event = fetch(event_id)
        if event is not None:
            stack.extend(_auth_event_ids(event, rv))
    return chain


def separate_state_sets(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split into the unconflicted state map and the conflicted state set (by key).

    A key missing from any state set is conflicted, even if every set that
    has it agrees.
    """
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    keys: set[StateKey] = set()
    for state_set in state_sets:
        keys.update(state_set)
    for key in keys:
        values = [state_set.get(key) for state_set in state_sets]
        if all(v is not None for v in values) and len(set(values)) == 1:
            unconflicted[key] = values[0]  # type: ignore[assignment]
        else:
            conflicted[key] = {v for v in values if v is not None}
    return unconflicted, conflicted


def conflicted_state_subgraph(
    conflicted_ids: Collection[str], events: EventSource, room_version: str | RoomVersion
) -> set[str]:
    """Events on some auth-event path between two conflicted events, endpoints included.

    An event lies on such a path exactly when it is reachable from a
    conflicted event and can itself reach a conflicted event, so this is one
    forward reachability pass plus a memoised backward one rather than a
    path enumeration.
    """
    rv = get_room_version(room_version)
    fetch = _fetcher(events)
    conflicted = set(conflicted_ids)
    reachable = compute_auth_chain(conflicted, fetch, rv)

    reaches: dict[str, bool] = {}
    for start in reachable:
        if start in reaches:
            continue
        # Iterative post-order DFS restricted to the reachable region.
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if node in reaches and not expanded:
                continue
            event = fetch(node)
            children = (
                [c for c in _auth_event_ids(event, rv) if c in reachable] if event else []
            )
            if expanded:
                reaches[node] = node in conflicted or any(reaches.get(c, False) for c in children)
                continue
            reaches[node] = False  # provisional: guards against malformed cycles
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in reaches)
    return conflicted | {node for node in reachable if reaches.get(node)}


def is_power_event(event: Event) -> bool:
    """Power events are those that can take abilities away from someone.

    The create event is counted too, as Synapse and Ruma do; it only matters
    in the pathological case of two create events being in conflict.
    """
    event_type = event.get("type")
    state_key = event.get("state_key")
    if event_type in ("m.room.power_levels", "m.room.join_rules", "m.room.create"):
        return state_key == ""
    if event_type == "m.room.member":
        content = event.get("content")
        membership = content.get("membership") if isinstance(content, Mapping) else None
        return membership in ("leave", "ban") and event.get("sender") != state_key
    return False


class _Resolver:
    def __init__(
        self, rv: RoomVersion, fetch: EventFetcher, is_rejected: Callable[[str], bool]
    ) -> None:
        self.rv = rv
        self._fetch = fetch
        self._cache: dict[str, Event | None] = {}
        self.is_rejected = is_rejected

    def get(self, event_id: str) -> Event | None:
        if event_id not in self._cache:
            self._cache[event_id] = self._fetch(event_id)
        return self._cache[event_id]

    def auth_ids(self, event: Event) -> list[str]:
        return _auth_event_ids(event, self.rv)

    def _pl_auth_event(self, event: Event) -> str | None:
        for auth_id in self.auth_ids(event):
            auth_event = self.get(auth_id)
            if auth_event is not None and _key(auth_event) == POWER_LEVELS_KEY:
                return auth_id
        return None

    # -- Reverse topological power ordering -----------------------------

    def sender_power_level(self, event: Event) -> int | float:
        """The sender's level "when looking at their respective auth_events"."""
        auth_state: dict[StateKey, Event] = {}
        for auth_id in self.auth_ids(event):
            auth_event = self.get(auth_id)
            if auth_event is not None and isinstance(auth_event.get("state_key"), str):
                auth_state[_key(auth_event)] = auth_event
        sender = event.get("sender")
        if not isinstance(sender, str):
            return 0
        return get_user_power_level(sender, auth_state, self.rv)

    def reverse_topological_power_sort(
        self, power_event_ids: Iterable[str], full_conflicted: set[str]
    ) -> list[str]:
        # Graph over the power events and those of their auth ancestors that
        # are in the full conflicted set, with edges along direct auth_events
        # links (as Synapse and Ruma build it).
        graph: dict[str, set[str]] = {}
        stack = list(power_event_ids)
        while stack:
            event_id = stack.pop()
            if event_id in graph:
                continue
            event = self.get(event_id)
            parents = (
                {a for a in self.auth_ids(event) if a in full_conflicted} if event else set()
            )
            graph[event_id] = parents
            stack.extend(p for p in parents if p not in graph)

        def sort_key(event_id: str) -> tuple[float, int, str]:
            event = self.get(event_id) or {}
            return (-self.sender_power_level(event), _ts(event), event_id)

        children: dict[str, list[str]] = {n: [] for n in graph}
        outdegree = {n: len(parents) for n, parents in graph.items()}
        for node, parents in graph.items():
            for parent in parents:
                children[parent].append(node)
        heap = [(sort_key(n), n) for n, deg in outdegree.items() if deg == 0]
        heapq.heapify(heap)
        ordered: list[str] = []
        while heap:
            _, node = heapq.heappop(heap)
            ordered.append(node)
            for child in children[node]:
                outdegree[child] -= 1
                if outdegree[child] == 0:
                    heapq.heappush(heap, (sort_key(child), child))
        return ordered

    # -- Mainline ordering ----------------------------------------------

    def mainline_sort(self, event_ids: Iterable[str], power_levels_id: str | None) -> list[str]:
        mainline_position: dict[str, int] = {}
        current = power_levels_id
        while current is not None and current not in mainline_position:
            mainline_position[current] = len(mainline_position)
            event = self.get(current)
            current = self._pl_auth_event(event) if event is not None else None

        # Memo of PL event ID -> position, shared by every event whose PL
        # ancestry passes through it (long histories make this quadratic otherwise).
        memo: dict[str, float] = dict(mainline_position)

        def position(event: Event) -> float:
            path: list[str] = []
            on_path: set[str] = set()
            pl_id = self._pl_auth_event(event)
            found = math.inf
            while pl_id is not None:
                if pl_id in memo:
                    found = memo[pl_id]
                    break
                if pl_id in on_path:  # malformed cycle
                    break
                path.append(pl_id)
                on_path.add(pl_id)
                pl_event = self.get(pl_id)
                pl_id = self._pl_auth_event(pl_event) if pl_event is not None else None
            for visited in path:
                memo[visited] = found
            return found

        def sort_key(event_id: str) -> tuple[float, int, str]:
            event = self.get(event_id) or {}
            # A greater mainline position sorts first.
            return (-position(event), _ts(event), event_id)

        return sorted(event_ids, key=sort_key)

    # -- Iterative auth checks ------------------------------------------

    def iterative_auth_checks(
        self, event_ids: Iterable[str], base_state: Mapping[StateKey, str]
    ) -> dict[StateKey, str]:
        resolved = dict(base_state)
        for event_id in event_ids:
            event = self.get(event_id)
            if event is None or not isinstance(event.get("state_key"), str):
                continue
            auth_state: dict[StateKey, Event] = {}
            for auth_id in self.auth_ids(event):
                auth_event = self.get(auth_id)
                if (
                    auth_event is not None
                    and not self.is_rejected(auth_id)
                    and isinstance(auth_event.get("state_key"), str)
                ):
                    auth_state[_key(auth_event)] = auth_event
            for key in auth_types_for_event(event, self.rv) | {CREATE_KEY}:
                state_id = resolved.get(key)
                if state_id is None or self.is_rejected(state_id):
                    continue
                state_event = self.get(state_id)
                if state_event is not None:
                    auth_state[key] = state_event
            try:
                check_auth(event, auth_state, self.rv, is_rejected=self.is_rejected)
            except AuthError:
                continue
            resolved[_key(event)] = event_id
        return resolved


def _key(event: Event) -> StateKey:
    return (event.get("type"), event.get("state_key"))  # type: ignore[return-value]


def _ts(event: Mapping[str, Any]) -> int:
    ts = event.get("origin_server_ts")
    return ts if type(ts) is int else 0


def resolve_state(
    room_version: str | RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    events: EventSource,
    *,
    auth_chains: Sequence[Collection[str]] | None = None,
    rejected: RejectedSource = None,
) -> dict[StateKey, str]:
    """Resolve several room states into one.

    ``auth_chains``, if given, must hold the full auth chain of each state
    set (same order as ``state_sets``; whether the set's own events are
    included does not matter); otherwise they are computed by walking
    ``auth_events`` through ``events``. Passing them lets the homeserver use
    an auth chain index instead of the walk.
    """
    rv = get_room_version(room_version)
    fetch = _fetcher(events)
    if not state_sets:
        return {}
    if rv.state_resolution is StateResolutionVersion.V1:
        return _resolve_v1(rv, state_sets, fetch)
    unconflicted, conflicted = separate_state_sets(state_sets)
    if not conflicted:
        return unconflicted

    resolver = _Resolver(rv, fetch, _rejected_predicate(rejected))

    if auth_chains is None:
        auth_chains = [compute_auth_chain(s.values(), resolver.get, rv) for s in state_sets]
    # Each state set's own events count as part of its auth chain, as in
    # Synapse: an event a state already contains is not "missing" from it.
    # (Read literally, the spec's union of per-event auth chains excludes
    # them; the difference only matters for v2.1, where it decides whether an
    # unconflicted event is replayed into the partial state, so we follow
    # the implementation most of the federation runs.)
    chain_sets = [set(c) | set(s.values()) for c, s in zip(auth_chains, state_sets, strict=True)]
    auth_difference = set().union(*chain_sets) - chain_sets[0].intersection(*chain_sets[1:])

    conflicted_ids: set[str] = set().union(*conflicted.values())
    full_conflicted = conflicted_ids | auth_difference
    if rv.state_resolution is StateResolutionVersion.V2_1:
        full_conflicted |= conflicted_state_subgraph(conflicted_ids, resolver.get, rv)
    full_conflicted = {e for e in full_conflicted if resolver.get(e) is not None}

    power_events = [e for e in full_conflicted if is_power_event(resolver.get(e) or {})]
    sorted_power = resolver.reverse_topological_power_sort(power_events, full_conflicted)

    base_state = {} if rv.state_resolution is StateResolutionVersion.V2_1 else unconflicted
    partial = resolver.iterative_auth_checks(sorted_power, base_state)

    picked = set(sorted_power)
    remaining = [e for e in full_conflicted if e not in picked]
    sorted_remaining = resolver.mainline_sort(remaining, partial.get(POWER_LEVELS_KEY))
    resolved = resolver.iterative_auth_checks(sorted_remaining, partial)

    resolved.update(unconflicted)
    return resolved


# ---------------------------------------------------------------------------
# State resolution v1 (room version 1)
# ---------------------------------------------------------------------------


def _resolve_v1(
    rv: RoomVersion, state_sets: Sequence[Mapping[StateKey, str]], fetch: EventFetcher
) -> dict[StateKey, str]:
    """The room version 1 algorithm.

    Unlike v2, a key that only some states have is not a conflict: the
    union of the states keeps it. Conflicted power levels, then join rules,
    then memberships are settled by replaying the candidates from the
    shallowest up and stopping at the first that fails the auth rules;
    every other conflict goes to the deepest candidate that passes. The
    auth state for those checks comes from the unconflicted state only (plus
    what earlier passes settled), as Synapse computes it; the spec's
    description leaves that choice open.
    """
    if len(state_sets) == 1:
        return dict(state_sets[0])
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        for key, event_id in state_set.items():
            if key in conflicted:
                conflicted[key].add(event_id)
            elif key in unconflicted and unconflicted[key] != event_id:
                conflicted[key] = {unconflicted.pop(key), event_id}
            else:
                unconflicted[key] = event_id

    candidates: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted.items():
        found = [e for e in (fetch(i) for i in ids) if e is not None]
        if len(found) == 1:
            unconflicted[key] = str(found[0]["event_id"])
        elif found:
            candidates[key] = found

    auth_state: dict[StateKey, Event] = {}
    for found in candidates.values():
        for event in found:
            for key in auth_types_for_event(event, rv):
                if key not in auth_state and key in unconflicted:
                    auth_event = fetch(unconflicted[key])
                    if auth_event is not None:
                        auth_state[key] = auth_event

    resolved: dict[StateKey, Event] = {}
    if POWER_LEVELS_KEY in candidates:
        resolved[POWER_LEVELS_KEY] = _v1_replay(rv, candidates[POWER_LEVELS_KEY], auth_state)
    auth_state.update(resolved)
    for kind in ("m.room.join_rules", "m.room.member"):
        for key, found in candidates.items():
            if key[0] == kind:
                resolved[key] = _v1_replay(rv, found, auth_state)
        auth_state.update(resolved)
    for key, found in candidates.items():
        if key not in resolved:
            resolved[key] = _v1_first_allowed(rv, found, auth_state)

    result = dict(unconflicted)
    for key, event in resolved.items():
        result[key] = str(event["event_id"])
    return result


def _v1_order(events: Iterable[Event]) -> list[Event]:
    """Deepest first, then ascending SHA-1 of the event ID (hex)."""

    def key(event: Event) -> tuple[int, str]:
        depth = event.get("depth")
        digest = hashlib.sha1(str(event["event_id"]).encode("utf-8")).hexdigest()
        return (-(depth if type(depth) is int else 0), digest)

    return sorted(events, key=key)


def _v1_allowed(rv: RoomVersion, event: Event, state: Mapping[StateKey, Event]) -> bool:
    try:
        check_auth(event, state, rv)
    except AuthError:
        return False
    return True


def _v1_replay(rv: RoomVersion, events: list[Event], auth_state: Mapping[StateKey, Event]) -> Event:
    """Power levels, join rules, members: from the shallowest, each candidate
    that passes in the state so far replaces the previous; the first failure
    stops the replay."""
    ordered = list(reversed(_v1_order(events)))
    keys = {k for event in events for k in auth_types_for_event(event, rv)}
    state = {k: v for k, v in auth_state.items() if k in keys}
    chosen = ordered[0]
    for event in ordered[1:]:
        state[_key(chosen)] = chosen
        if not _v1_allowed(rv, event, state):
            return chosen
        chosen = event
    return chosen


def _v1_first_allowed(rv: RoomVersion, events: list[Event], auth_state: Mapping[StateKey, Event]) -> Event:
    """Any other conflict: the deepest candidate allowed in the resolved auth
    state; if none is, the shallowest."""
    ordered = _v1_order(events)
    for event in ordered:
        if _v1_allowed(rv, event, auth_state):
            return event
    return ordered[-1]
