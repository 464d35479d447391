"""Persisting events built elsewhere (received over federation) into a room's DAG.

A received event is checked against the state before it, which is the state
after its prev events (resolved with the room version's algorithm when there
are several), and then against the room's current state: failing the first
rejects it, failing only the second soft-fails it (kept in the DAG, never shown
to clients, never an extremity). Accepted events become forward extremities;
with several extremities the room's current state is their resolved state,
which is stored as the room head so it survives a restart.

The caller holds the room's lock and has already checked the event's format,
signatures and content hash (those need the network and the key ring).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.events import (
    AuthError,
    auth_types_for_event,
    check_auth,
    check_auth_events,
    get_named_level,
    get_room_version,
    get_user_power_level,
    resolve_state,
)
from federation.events.identifiers import domain_of
from federation.events.room_versions import RoomVersion
from homeserver.storage.database import IntegrityError, Txn
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.rooms import RoomRecord, RoomStore

if TYPE_CHECKING:
    from homeserver.rooms.service import RoomService

StateKey = tuple[str, str]
CREATE: StateKey = ("m.room.create", "")


class MissingEventsError(Exception):
    """Prev or auth events the caller must fetch before the event can be persisted."""

    def __init__(self, kind: str, event_ids: list[str]) -> None:
        super().__init__(f"missing {kind} events: {', '.join(event_ids)}")
        self.kind = kind
        self.event_ids = event_ids


@dataclass(frozen=True)
class Outcome:
    event_id: str
    status: str  # "accepted", "soft_failed", "rejected", "duplicate" or "backfilled"
    reason: str | None = None


class ReceivedEvents:
    def __init__(self, rooms: RoomService) -> None:
        self.rs = rooms
        self.hs = rooms.hs

    async def persist_outliers(self, room: RoomRecord, events: Iterable[dict[str, Any]]) -> None:
        """Store events known only as auth or state of others (no place in the timeline).
        Callers need not hold the room's lock (backfill fetches without it): when
        another writer stores some of the same events first, the rest are stored
        on a second try."""
        events = list(events)
        try:
            await self._persist_outliers(room, events)
        except IntegrityError:
            await self._persist_outliers(room, events)

    async def _persist_outliers(self, room: RoomRecord, events: list[dict[str, Any]]) -> None:
        fresh = []
        seen = await self.rs.events.get_events(e["event_id"] for e in events)
        for e in events:
            if e["event_id"] not in seen:
                fresh.append(e)
        if not fresh:
            return

        async def fn(txn: Txn) -> list[StoredEvent]:
            out = []
            for e in fresh:
                key_nid = None
                if "state_key" in e:
                    key_nid = await self.rs.state.key_nid(txn, (e["type"], e["state_key"]))
                out.append(await EventStore.insert(
                    txn, e, room_nid=room.room_nid, stream_ordering=None, state_key_nid=key_nid,
                    state_before=None, state_after=None, outlier=True,
                ))
            return out

        for stored in await self.hs.db.write(fn):
            self.rs.events.remember(stored)

    async def ensure_room(self, room_id: str, room_version: str, creator: str) -> RoomRecord:
        """The room's record, created as an empty shell for a room known only from
        the outside (an invite, a knock, a join about to fetch its state)."""
        room = await self.hs.room_store.get_room(room_id)
        if room is not None:
            return room
        now = self.hs.clock.time_ms()

        async def fn(txn: Txn) -> None:
            if await txn.fetchone("SELECT 1 FROM rooms WHERE room_id = ?", (room_id,)) is None:
                await RoomStore.insert_room(txn, room_id, room_version, creator, True, now)

        await self.hs.db.write(fn)
        room = await self.hs.room_store.get_room(room_id)
        assert room is not None
        return room

    async def persist_membership_outlier(
        self, room: RoomRecord, event: dict[str, Any], stripped: list[dict[str, Any]] | None
    ) -> StoredEvent:
        """Record a local user's membership in a room this server is not in: the
        event is stored outside the DAG (its prev events are unknown here), the
        stripped state is all the user sees of the room, and the membership takes
        a stream position of its own so /sync reports the change."""
        rs = self.rs
        user_id = event["state_key"]
        membership = str(event["content"].get("membership"))
        existing = await rs.events.get_event(event["event_id"])
        pos = rs.stream.allocate()
        try:
            async def fn(txn: Txn) -> StoredEvent:
                if existing is not None:
                    stored = existing
                else:
                    key_nid = await rs.state.key_nid(txn, (event["type"], user_id))
                    stored = await EventStore.insert(
                        txn, event, room_nid=room.room_nid, stream_ordering=None, state_key_nid=key_nid,
                        state_before=None, state_after=None, outlier=True,
                    )
                if stripped is not None:
                    await RoomStore.set_invite_state(txn, stored.nid, stripped)
                await RoomStore.set_membership(txn, room.room_nid, user_id, membership, stored.nid, pos)
                return stored

            stored = await self.hs.db.write(fn)
        finally:
            rs.stream.finish(pos)
        rs.events.remember(stored)
        self.hs.sync.invalidate_memberships(user_id)
        self.hs.notifier.notify_users({user_id})
        return stored

    async def _load_with_auth_chains(self, event_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The events and everything their auth chains reach, for state resolution."""
        loaded: dict[str, dict[str, Any]] = {}
        frontier = set(event_ids)
        while frontier:
            found = await self.rs.events.get_events(frontier)
            frontier = set()
            for eid, ev in found.items():
                loaded[eid] = ev.event
                for a in ev.event.get("auth_events", []):
                    if isinstance(a, str) and a not in loaded:
                        frontier.add(a)
            frontier -= set(loaded)
        return loaded

    async def resolve(self, rv: RoomVersion, states: list[dict[StateKey, int]]) -> dict[StateKey, int]:
        """Resolve several states given as (type, state_key) -> event nid."""
        if len(states) == 1:
            return dict(states[0])
        nids = {n for s in states for n in s.values()}
        by_nid = await self.rs.events.get_events_by_nid(nids)
        id_states = [{k: by_nid[n].event_id for k, n in s.items() if n in by_nid} for s in states]
        events = await self._load_with_auth_chains({e for s in id_states for e in s.values()})
        rejected = {eid for eid, ev in (await self.rs.events.get_events(events)).items() if ev.rejected}
        resolved = resolve_state(rv, id_states, events, rejected=rejected)
        stored = await self.rs.events.get_events(resolved.values())
        return {k: stored[e].nid for k, e in resolved.items() if e in stored}

    async def persist(
        self, room: RoomRecord, event: dict[str, Any], *, state_before: dict[StateKey, int] | None = None
    ) -> Outcome:
        """Persist a live event. `state_before` is given when some prev events could
        not be fetched (a gap in the DAG): the state at them was asked of another
        server instead, and the event is checked against that."""
        rs = self.rs
        rv = get_room_version(room.room_version)
        event_id = event["event_id"]
        if await rs.events.get_event(event_id) is not None:
            return Outcome(event_id, "duplicate")
        prevs, before, reason = await self._check_against_prev_state(rv, event, state_before)
        soft_failed = False
        head = await rs.head(room)
        current = await rs.state_ids_at_snapshot(head.snapshot)
        if reason is None:
            soft_failed = await self._auth_failure(rv, event, None, current) is not None

        accepted = reason is None and not soft_failed
        new_extremities = list(head.extremities)
        if accepted:
            prev_nids = {p.nid for p in prevs.values()}
            new_extremities = [n for n in head.extremities if n not in prev_nids]
        is_state = "state_key" in event and reason is None
        stream_pos = rs.stream.allocate() if accepted else None
        try:
            return await self._write(
                room, rv, event, prevs, before, is_state, reason, new_extremities, current, stream_pos
            )
        finally:
            if stream_pos is not None:
                rs.stream.finish(stream_pos)

    async def persist_joined(self, room: RoomRecord, event: dict[str, Any], state_ids: dict[StateKey, str]) -> Outcome:
        """Persist our own join into a room we learn of from its resident server: its
        prev events are unknown here, so the state before it is the one the resident
        server sent (already stored as outliers and checked by the caller)."""
        rs = self.rs
        rv = get_room_version(room.room_version)
        stored_state = await rs.events.get_events(state_ids.values())
        missing = [e for e in state_ids.values() if e not in stored_state]
        if missing:
            raise MissingEventsError("state", missing)
        before = {k: stored_state[e].nid for k, e in state_ids.items()}
        auth_ids = [a for a in event.get("auth_events", []) if isinstance(a, str)]
        auth = await rs.events.get_events(auth_ids)
        reason = await self._auth_failure(rv, event, list(auth.values()), before)
        if reason is not None:
            return Outcome(event["event_id"], "rejected", reason)
        head = await rs.head(room)
        current = await rs.state_ids_at_snapshot(head.snapshot)
        pos = rs.stream.allocate()
        try:
            return await self._write(room, rv, event, {}, before, True, None, [], current, pos)
        finally:
            rs.stream.finish(pos)

    async def persist_backfilled(
        self, room: RoomRecord, event: dict[str, Any], pos: int,
        *, state_before: dict[StateKey, int] | None = None,
    ) -> Outcome:
        """Persist an event from the room's past (backfill) at stream position `pos`
        (below everything the room had, see homeserver/federation/backfill.py).

        It is checked against the state before it like any received event, but it
        is history: it never becomes a forward extremity, never changes the current
        state or memberships, and nobody is notified (no /sync wakes, nothing is
        sent on). An event held as an outlier (it came as state or auth of others)
        is promoted into the timeline in place. `state_before` stands in for prev
        events this server does not have (the oldest events of a backfilled batch).
        """
        rs = self.rs
        rv = get_room_version(room.room_version)
        event_id = event["event_id"]
        existing = await rs.events.get_event(event_id)
        if existing is not None and not existing.outlier:
            return Outcome(event_id, "duplicate")
        prevs, before, reason = await self._check_against_prev_state(rv, event, state_before)
        if reason is not None and existing is not None:
            return Outcome(event_id, "rejected", reason)  # stays an outlier, out of the timeline
        is_state = "state_key" in event and reason is None
        return await self._write(
            room, rv, event, prevs, before, is_state, reason, [], {}, None if reason else pos,
            historical=True, outlier=existing,
        )

    async def _check_against_prev_state(
        self, rv: RoomVersion, event: dict[str, Any], state_before: dict[StateKey, int] | None
    ) -> tuple[dict[str, StoredEvent], dict[StateKey, int], str | None]:
        """The event's prev events, the state before it (resolved from theirs, or the
        `state_before` given for prev events that could not be fetched) and why it
        fails the auth rules there (None when it passes); raises for missing events."""
        rs = self.rs
        prev_ids = [p for p in event.get("prev_events", []) if isinstance(p, str)]
        prevs = await rs.events.get_events(prev_ids)
        missing = [p for p in prev_ids if p not in prevs or prevs[p].state_after is None]
        if missing and state_before is None:
            raise MissingEventsError("prev", missing)
        prevs = {p: ev for p, ev in prevs.items() if p not in missing}
        auth_ids = [a for a in event.get("auth_events", []) if isinstance(a, str)]
        auth = await rs.events.get_events(auth_ids)
        missing = [a for a in auth_ids if a not in auth]
        if missing:
            raise MissingEventsError("auth", missing)
        if state_before is not None:
            before = dict(state_before)
        else:
            prev_states = [await rs.state_ids_at_snapshot(p.state_after) for p in prevs.values()]
            before = await self.resolve(rv, prev_states) if prev_states else {}
        return prevs, before, await self._auth_failure(rv, event, list(auth.values()), before)

    async def _auth_failure(
        self, rv: RoomVersion, event: dict[str, Any], auth_events: list[StoredEvent] | None,
        state_ids: dict[StateKey, int],
    ) -> str | None:
        rs = self.rs
        try:
            if auth_events is not None:
                rejected = {e.event_id for e in auth_events if e.rejected}
                check_auth_events(event, [e.event for e in auth_events], rv, is_rejected=rejected.__contains__)
            keys = auth_types_for_event(event, rv) | {CREATE}
            state = await rs.state_events(state_ids, keys)
            check_auth(event, {k: ev.event for k, ev in state.items()}, rv)
        except AuthError as e:
            return e.reason
        return None

    async def _redaction_target(
        self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], before: dict[StateKey, int]
    ) -> str | None:
        """The event a received m.room.redaction redacts, if it may: the auth rules accept
        any redaction (room versions 3+), so it applies only when its sender's server also
        sent the original or its sender has the redact level in the state before it (the
        spec's "Handling redactions"). None for other events, a redaction that may not
        apply, and a target this server does not have.
        """
        target_id = _redacts(event)
        if target_id is None:
            return None
        target = await self.rs.events.get_event(target_id)
        if target is None or target.room_nid != room.room_nid:
            return None
        return target_id if await self._may_redact(rv, event, target, before) else None

    async def _may_redact(
        self, rv: RoomVersion, redaction: dict[str, Any], target: StoredEvent, before: dict[StateKey, int]
    ) -> bool:
        """Whether `redaction` applies to `target`: the same server sent both, or the
        redaction's sender has the redact level in the state before the redaction."""
        if target.rejected is not None:
            return False
        sender = redaction["sender"]
        if domain_of(target.sender) == domain_of(sender):
            return True
        state = await self.rs.state_events(before, {("m.room.power_levels", ""), CREATE})
        plain = {k: ev.event for k, ev in state.items()}
        return get_user_power_level(sender, plain, rv) >= get_named_level(plain, "redact")

    async def _waiting_redactions(
        self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any]
    ) -> list[StoredEvent]:
        """Redactions of `event` that arrived before it and apply to it, oldest first."""
        rows = await self.hs.db.fetchall(
            "SELECT redaction_nid FROM pending_redactions WHERE target_event_id = ? AND room_nid = ?",
            (event["event_id"], room.room_nid),
        )
        if not rows:
            return []
        waiting = await self.rs.events.get_events_by_nid(int(r[0]) for r in rows)
        # Checked against the event as it will be stored: accepted, in this room.
        target = StoredEvent(0, event["event_id"], room.room_nid, None, None, None, False, None, None,
                             None, None, event)
        out = []
        for redaction in sorted(waiting.values(), key=lambda e: e.nid):
            if await self._may_redact(rv, redaction.event, target, await self.rs.state_ids_before(redaction)):
                out.append(redaction)
        return out

    async def _write(
        self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], prevs: dict[str, StoredEvent],
        before: dict[StateKey, int], is_state: bool, reason: str | None, new_extremities: list[int],
        current: dict[StateKey, int], pos: int | None, *, historical: bool = False,
        outlier: StoredEvent | None = None,
    ) -> Outcome:
        """Write the event; `pos` None means it soft-failed (stored, outside the timeline).
        `historical` (backfill) writes the event and its state only, promoting
        `outlier` (the same event, held as an outlier) instead of inserting it."""
        rs = self.rs
        key = (event["type"], event["state_key"]) if is_state else None
        redacts = await self._redaction_target(room, rv, event, before) if reason is None else None
        # A live redaction that does not apply (yet) is held: in the DAG, but not in the
        # timeline clients see, since they would apply it themselves. One whose target
        # is not here yet waits for it (pending_redactions) and is checked again then.
        target_id = _redacts(event)
        held = reason is None and pos is not None and not historical and redacts is None and target_id is not None
        waits_for = None
        if reason is None and pos is not None and target_id is not None and redacts is None:
            if await rs.events.get_event(target_id) is None:
                waits_for = target_id
        # Redactions that arrived before this event and apply to it now.
        waiting = await self._waiting_redactions(room, rv, event) if reason is None and pos is not None else []
        late_positions = [rs.stream.allocate() for r in waiting if r.stream_ordering is None]
        # Key nids for everything we will write into snapshots (they exist: the events do).
        needed_keys = set(before) | ({key} if key else set())
        first_prev = next(iter(prevs.values()), None)
        # Reads happen before the write: a transaction function may only use its Txn.
        base = first_prev.state_after if first_prev is not None else None
        base_state = await rs.state_ids_at_snapshot(base) if base is not None else {}
        needed_keys |= set(base_state)
        # One of our own events persisted from outside (our join through a resident
        # server) is queued to the room's other servers by its own transaction.
        sender = self.hs.federation_sender
        joined: list[str] | None = None
        if reason is None and pos is not None and not historical and sender.sends(room, event):
            joined = await self._joined_after(event, before)
        dests: list[str] = []

        async def fn(txn: Txn) -> StoredEvent:
            key_nids = {k: await rs.state.key_nid(txn, k) for k in needed_keys}
            before_snap: int | None = None
            if first_prev is not None and base_state == before:
                before_snap = first_prev.state_after
            elif before:
                changes: dict[int, int | None] = {
                    key_nids[k]: v for k, v in before.items() if base_state.get(k) != v
                }
                changes.update({key_nids[k]: None for k in base_state if k not in before and k in key_nids})
                before_snap, _ = await rs.state.create_snapshot(txn, room.room_nid, base, changes)
            key_nid = key_nids[key] if key else None
            if outlier is not None:
                stored = await EventStore.promote_outlier(
                    txn, outlier, stream_ordering=pos, state_before=before_snap,
                    state_after=None if is_state else before_snap,
                )
            else:
                stored = await EventStore.insert(
                    txn, event, room_nid=room.room_nid, stream_ordering=None if held else pos,
                    state_key_nid=key_nid,
                    state_before=None if reason else before_snap,
                    state_after=None if (reason or is_state) else before_snap,
                    rejected=reason,
                )
            if reason is not None:
                return stored
            if redacts is not None and pos is not None:  # a soft-failed redaction redacts nothing
                await EventStore.mark_redacted(txn, redacts, stored.event_id)
            if waits_for is not None:
                await txn.execute(
                    "INSERT INTO pending_redactions (target_event_id, redaction_nid, room_nid) VALUES (?, ?, ?)"
                    " ON CONFLICT (target_event_id, redaction_nid) DO NOTHING",
                    (waits_for, stored.nid, room.room_nid),
                )
            if waiting:
                await EventStore.mark_redacted(txn, stored.event_id, waiting[0].event_id)
                stored.redacted_by = waiting[0].event_id
                # Applied now, so now shown: held redactions take their timeline place.
                late = iter(late_positions)
                for redaction in waiting:
                    if redaction.stream_ordering is None:
                        await txn.execute(
                            "UPDATE events SET stream_ordering = ? WHERE event_nid = ? AND stream_ordering IS NULL",
                            (next(late), redaction.nid),
                        )
                await txn.execute("DELETE FROM pending_redactions WHERE target_event_id = ?", (stored.event_id,))
            if key_nid is not None:
                after_snap, _ = await rs.state.create_snapshot(txn, room.room_nid, before_snap, {key_nid: stored.nid})
                await EventStore.set_state_after(txn, stored.nid, after_snap)
                stored.state_after = after_snap
            if pos is None or historical:  # soft-failed or history: not the room's present
                return stored
            extremities = new_extremities + [stored.nid]
            await txn.execute("DELETE FROM forward_extremities WHERE room_nid = ?", (room.room_nid,))
            for nid in extremities:
                await txn.execute(
                    "INSERT INTO forward_extremities (room_nid, event_nid) VALUES (?, ?)", (room.room_nid, nid)
                )
            if joined is not None:
                dests[:] = await sender.queue_event(txn, room, event, joined)
            return stored

        try:
            stored = await self.hs.db.write(fn)
        finally:
            for late_pos in late_positions:
                rs.stream.finish(late_pos)
        sender.wake(dests)
        rs.events.remember(stored)
        shown: list[StoredEvent] = []
        for redaction in waiting:
            if redaction.stream_ordering is None:
                rs.events.forget(redaction.event_id)
                reloaded = await rs.events.get_event(redaction.event_id)
                if reloaded is not None:
                    shown.append(reloaded)
        if redacts is not None and pos is not None:
            target = await rs.events.get_event(redacts)
            if target is not None and target.redacted_by is None:
                target.redacted_by = stored.event_id
        if reason is not None:
            return Outcome(stored.event_id, "rejected", reason)
        if historical:
            return Outcome(stored.event_id, "backfilled")
        if pos is None:
            return Outcome(stored.event_id, "soft_failed", "fails authorisation against the current state")
        await self._update_head(room, rv, new_extremities + [stored.nid], current, stored, pos)
        if not held:
            rs.notify(stored, room)
        for redaction in shown:
            rs.notify(redaction, room)
        return Outcome(stored.event_id, "accepted")

    async def _joined_after(self, event: dict[str, Any], before: dict[StateKey, int]) -> list[str]:
        """Users joined in the state after `event`, given the state before it."""
        key = (event["type"], event.get("state_key"))
        members = await self.rs.events.get_events_by_nid(
            nid for k, nid in before.items() if k[0] == "m.room.member" and k != key
        )
        joined = [
            str(m.state_key) for m in members.values()
            if m.state_key is not None and m.event.get("content", {}).get("membership") == "join"
        ]
        if key[0] == "m.room.member" and isinstance(key[1], str):
            if event.get("content", {}).get("membership") == "join":
                joined.append(key[1])
        return joined

    async def _update_head(
        self, room: RoomRecord, rv: RoomVersion, extremities: list[int], old_current: dict[StateKey, int],
        newest: StoredEvent, pos: int,
    ) -> None:
        """Make the room's current state the (resolved) state after its extremities."""
        rs = self.rs
        events = await rs.events.get_events_by_nid(extremities)
        states = [await rs.state_ids_at_snapshot(e.state_after) for e in events.values()]
        current = await self.resolve(rv, states)
        changed = {k: v for k, v in current.items() if old_current.get(k) != v}
        removed = [k for k in old_current if k not in current]
        member_events = await rs.events.get_events_by_nid(
            [v for k, v in changed.items() if k[0] == "m.room.member"]
        )
        base = newest.state_after
        base_state = await rs.state_ids_at_snapshot(base) if base is not None else {}

        async def fn(txn: Txn) -> int:
            key_nids = {k: await rs.state.key_nid(txn, k) for k in set(changed) | set(removed)}
            if len(extremities) == 1:
                snapshot = newest.state_after
            else:
                all_keys = {k: await rs.state.key_nid(txn, k) for k in set(current) | set(base_state)}
                delta: dict[int, int | None] = {all_keys[k]: v for k, v in current.items() if base_state.get(k) != v}
                delta.update({all_keys[k]: None for k in base_state if k not in current})
                snapshot, _ = await rs.state.create_snapshot(txn, room.room_nid, base, delta)
            assert snapshot is not None
            await RoomStore.set_current_state(
                txn, room.room_nid, {**{key_nids[k]: v for k, v in changed.items()}, **{key_nids[k]: None for k in removed}}
            )
            for ev in member_events.values():
                await RoomStore.set_membership(
                    txn, room.room_nid, str(ev.state_key), str(ev.event["content"].get("membership")), ev.nid, pos
                )
            await txn.execute(
                "INSERT INTO room_heads (room_nid, snapshot_nid) VALUES (?, ?) ON CONFLICT (room_nid)"
                " DO UPDATE SET snapshot_nid = excluded.snapshot_nid",
                (room.room_nid, snapshot),
            )
            return snapshot

        snapshot = await self.hs.db.write(fn)
        rs.set_head(room.room_nid, extremities, snapshot)


def _redacts(event: dict[str, Any]) -> str | None:
    """The event ID an m.room.redaction names (top level before v11, in content since)."""
    if event.get("type") != "m.room.redaction":
        return None
    target = event.get("redacts") or event.get("content", {}).get("redacts")
    return target if isinstance(target, str) else None
