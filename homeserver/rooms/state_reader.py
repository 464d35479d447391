"""Reading a room's state, and resolving several states into one.

State is stored as snapshots (layered diffs, see homeserver/storage/state.py)
of state key nid -> event nid; everything above storage speaks
(type, state_key) -> event nid, and loads the events when it needs them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from federation.events import auth_event_ids, resolve_state
from federation.events.room_versions import RoomVersion
from homeserver.records.events import StoredEvent
from homeserver.storage.events import EventStore
from homeserver.storage.state import StateStore

StateKey = tuple[str, str]


class RoomStateReader:
    def __init__(self, events: EventStore, state: StateStore) -> None:
        self.events = events
        self.state = state

    async def state_ids_at_snapshot(self, snapshot: int | None) -> dict[StateKey, int]:
        if snapshot is None:
            return {}
        nid_state = await self.state.get_state(snapshot)
        keys = await self.state.keys_for(set(nid_state))
        return {keys[k]: e for k, e in nid_state.items()}

    async def state_events_at_snapshot(
        self, snapshot: int | None, keys: Iterable[StateKey], *, look_up: bool = False
    ) -> dict[StateKey, StoredEvent]:
        """Some keys' events of a snapshot, reading only those keys when their nids are
        known (a room's full state can be thousands of members), else the whole state.
        `look_up`: a key this process has not seen is looked up instead (one indexed
        read; a key with no nid at all is in no snapshot, which commits with its keys'
        rows), for a caller whose keys are often new (a joiner's own member key): in a
        big room that costs less than a copy of the whole state, in a small one more."""
        if snapshot is None:
            return {}
        keys = list(keys)
        key_nids: dict[int, StateKey] = {}
        for key in keys:
            nid = self.state.known_key_nid(key)
            if nid is None and look_up:
                nid = await self.state.lookup_key_nid(key)
                if nid is None:
                    continue
            if nid is None:  # never seen here, perhaps absent from every room: look the usual way
                return await self.state_events(await self.state_ids_at_snapshot(snapshot), keys)
            key_nids[nid] = key
        entries = await self.state.get_entries(snapshot, key_nids)
        by_nid = await self.events.get_events_by_nid(entries.values())
        found = {key_nids[k]: by_nid[n] for k, n in entries.items() if n in by_nid}
        return {k: found[k] for k in keys if k in found}  # in the order asked, as state_events

    async def state_events(
        self, state_ids: dict[StateKey, int], keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        wanted = state_ids if keys is None else {k: state_ids[k] for k in keys if k in state_ids}
        by_nid = await self.events.get_events_by_nid(wanted.values())
        return {k: by_nid[n] for k, n in wanted.items() if n in by_nid}


    async def preload(self, snapshots: Iterable[int], members: Collection[str] | None = None) -> None:
        """Bring many snapshots and the events they name into the caches at once, for a
        reader about to ask for them one by one (an initial sync, room after room).
        `members`: only those users' member events (a lazy-loading client is sent no
        others, and a big room has thousands); None: every event."""
        states = await self.state.preload(snapshots)
        nids: set[int] = set()
        if members is None:
            for state in states.values():
                nids.update(state.values())
        else:
            keys = await self.state.keys_for({k for state in states.values() for k in state})
            for state in states.values():
                nids.update(
                    e for k, e in state.items()
                    if k in keys and (keys[k][0] != "m.room.member" or keys[k][1] in members)
                )
        await self.events.get_events_by_nid(nids)


class StateResolver:
    """The room version's state resolution over states given as (type, state_key) ->
    event nid; the events' auth chains are loaded from the store."""

    def __init__(self, events: EventStore) -> None:
        self.events = events

    async def resolve(
        self, rv: RoomVersion, states: list[dict[StateKey, int]], *, unstored: StoredEvent | None = None
    ) -> dict[StateKey, int]:
        """Resolve several states. `unstored` is an event about to be written in the
        same transaction (its nid a placeholder): it takes part as if stored."""
        if len(states) == 1:
            return dict(states[0])
        nids = {n for s in states for n in s.values()}
        by_nid = await self.events.get_events_by_nid(nids)
        if unstored is not None:
            by_nid[unstored.nid] = unstored
        id_states = [{k: by_nid[n].event_id for k, n in s.items() if n in by_nid} for s in states]
        extra = {unstored.event_id: unstored.event} if unstored is not None else {}
        events = await self.load_with_auth_chains({e for s in id_states for e in s.values()}, extra)
        rejected = {eid for eid, ev in (await self.events.get_events(events)).items() if ev.rejected}
        resolved = resolve_state(rv, id_states, events, rejected=rejected)
        stored = await self.events.get_events(resolved.values())
        if unstored is not None:
            stored[unstored.event_id] = unstored
        return {k: stored[e].nid for k, e in resolved.items() if e in stored}

    async def load_with_auth_chains(
        self, event_ids: Iterable[str], extra: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """The events and everything their auth chains reach (for state resolution,
        and a send_join answer); `extra` holds events not stored yet."""
        extra = extra or {}
        loaded: dict[str, dict[str, Any]] = {}
        frontier = set(event_ids)
        while frontier:
            found = {eid: ev.event for eid, ev in (await self.events.get_events(frontier - set(extra))).items()}
            found.update({eid: extra[eid] for eid in frontier if eid in extra})
            frontier = set()
            for eid, ev in found.items():
                loaded[eid] = ev
                for a in auth_event_ids(ev):
                    if a not in loaded:
                        frontier.add(a)
            frontier -= set(loaded)
        return loaded
