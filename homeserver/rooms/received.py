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
from typing import Any

from federation.events import (
    auth_event_ids,
    get_named_level,
    get_room_version,
    get_user_power_level,
)
from federation.events.identifiers import domain_of
from federation.events.room_versions import RoomVersion
from homeserver.federation.pdu_checks import MissingEventsError, PduChecks
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.heads import RoomHeads
from homeserver.rooms.persist import EventOutbox, EventPersister, ReceivedWrite, redaction_target
from homeserver.rooms.state_reader import RoomStateReader, StateKey
from homeserver.storage.events import EventStore

CREATE: StateKey = ("m.room.create", "")

__all__ = ["MissingEventsError", "Outcome", "ReceivedEvents"]


@dataclass(frozen=True)
class Outcome:
    event_id: str
    status: str  # "accepted", "soft_failed", "rejected", "duplicate" or "backfilled"
    reason: str | None = None


class ReceivedEvents:
    def __init__(
        self,
        *,
        events: EventStore,
        reader: RoomStateReader,
        heads: RoomHeads,
        checks: PduChecks,
        persister: EventPersister,
        outbox: EventOutbox,
    ) -> None:
        self.events = events
        self.reader = reader
        self.heads = heads
        self.checks = checks
        self.persister = persister
        self.outbox = outbox

    async def persist_outliers(self, room: RoomRecord, events: Iterable[dict[str, Any]]) -> None:
        """Store events known only as auth or state of others (no place in the timeline).
        Callers need not hold the room's lock (backfill fetches without it)."""
        await self.persister.outliers_in_bulk(room, list(events))

    async def ensure_room(self, room_id: str, room_version: str, creator: str) -> RoomRecord:
        """The room's record, created as an empty shell for a room known only from
        the outside (an invite, a knock, a join about to fetch its state)."""
        return await self.persister.ensure_room(room_id, room_version, creator)

    async def persist_membership_outlier(
        self, room: RoomRecord, event: dict[str, Any], stripped: list[dict[str, Any]] | None
    ) -> StoredEvent:
        """Record a local user's membership in a room this server is not in: the
        event is stored outside the DAG (its prev events are unknown here), the
        stripped state is all the user sees of the room, and the membership takes
        a stream position of its own so /sync reports the change."""
        return await self.persister.membership_outlier(room, event, stripped)

    async def resolve(self, rv: RoomVersion, states: list[dict[StateKey, int]]) -> dict[StateKey, int]:
        """Resolve several states given as (type, state_key) -> event nid."""
        return await self.checks.resolver.resolve(rv, states)

    async def persist(
        self, room: RoomRecord, event: dict[str, Any], *, state_before: dict[StateKey, int] | None = None
    ) -> Outcome:
        """Persist a live event. `state_before` is given when some prev events could
        not be fetched (a gap in the DAG): the state at them was asked of another
        server instead, and the event is checked against that."""
        rv = get_room_version(room.room_version)
        event_id = event["event_id"]
        if await self.events.get_event(event_id) is not None:
            return Outcome(event_id, "duplicate")
        prevs, before, reason, before_snapshot = await self.checks.against_prev_state(rv, event, state_before)
        soft_failed = False
        head = await self.heads.get(room)
        current = await self.reader.state_ids_at_snapshot(head.snapshot)
        if reason is None:
            soft_failed = await self.checks.soft_fails(rv, event, current)

        accepted = reason is None and not soft_failed
        new_extremities = list(head.extremities)
        if accepted:
            prev_nids = {p.nid for p in prevs.values()}
            new_extremities = [n for n in head.extremities if n not in prev_nids]
        is_state = "state_key" in event and reason is None
        stream = self.persister.stream
        stream_pos = stream.allocate() if accepted else None
        try:
            return await self._write(
                room, rv, event, prevs, before, is_state, reason, new_extremities, current, stream_pos,
                before_snapshot=before_snapshot,
            )
        finally:
            if stream_pos is not None:
                stream.finish(stream_pos)

    async def persist_joined(self, room: RoomRecord, event: dict[str, Any], state_ids: dict[StateKey, str]) -> Outcome:
        """Persist our own join into a room we learn of from its resident server: its
        prev events are unknown here, so the state before it is the one the resident
        server sent (already stored as outliers and checked by the caller)."""
        rv = get_room_version(room.room_version)
        stored_state = await self.events.get_events(state_ids.values())
        missing = [e for e in state_ids.values() if e not in stored_state]
        if missing:
            raise MissingEventsError("state", missing)
        before = {k: stored_state[e].nid for k, e in state_ids.items()}
        auth_ids = auth_event_ids(event)
        auth = await self.events.get_events(auth_ids)
        reason = await self.checks.auth_failure(rv, event, list(auth.values()), before)
        if reason is not None:
            return Outcome(event["event_id"], "rejected", reason)
        head = await self.heads.get(room)
        current = await self.reader.state_ids_at_snapshot(head.snapshot)
        stream = self.persister.stream
        pos = stream.allocate()
        try:
            return await self._write(room, rv, event, {}, before, True, None, [], current, pos)
        finally:
            stream.finish(pos)

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
        rv = get_room_version(room.room_version)
        event_id = event["event_id"]
        existing = await self.events.get_event(event_id)
        if existing is not None and not existing.outlier:
            return Outcome(event_id, "duplicate")
        prevs, before, reason, before_snapshot = await self.checks.against_prev_state(rv, event, state_before)
        if reason is not None and existing is not None:
            return Outcome(event_id, "rejected", reason)  # stays an outlier, out of the timeline
        is_state = "state_key" in event and reason is None
        return await self._write(
            room, rv, event, prevs, before, is_state, reason, [], {}, None if reason else pos,
            historical=True, outlier=existing, before_snapshot=before_snapshot,
        )

    # --- redactions: which apply, which wait ---

    async def _redaction_target(
        self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], before: dict[StateKey, int]
    ) -> str | None:
        """The event a received m.room.redaction redacts, if it may: the auth rules accept
        any redaction (room versions 3+), so it applies only when its sender's server also
        sent the original or its sender has the redact level in the state before it (the
        spec's "Handling redactions"). None for other events, a redaction that may not
        apply, and a target this server does not have.
        """
        target_id = redaction_target(event)
        if target_id is None:
            return None
        target = await self.events.get_event(target_id)
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
        state = await self.reader.state_events(before, {("m.room.power_levels", ""), CREATE})
        plain = {k: ev.event for k, ev in state.items()}
        return get_user_power_level(sender, plain, rv) >= get_named_level(plain, "redact")

    async def _waiting_redactions(
        self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any]
    ) -> list[StoredEvent]:
        """Redactions of `event` that arrived before it and apply to it, oldest first."""
        nids = await self.events.pending_redactions(event["event_id"], room.room_nid)
        if not nids:
            return []
        waiting = await self.events.get_events_by_nid(nids)
        # Checked against the event as it will be stored: accepted, in this room.
        target = StoredEvent(0, event["event_id"], room.room_nid, None, None, None, False, None, None,
                             None, None, event)
        out = []
        for redaction in sorted(waiting.values(), key=lambda e: e.nid):
            before = await self.reader.state_ids_at_snapshot(redaction.state_before)
            if await self._may_redact(rv, redaction.event, target, before):
                out.append(redaction)
        return out

    # --- writing ---

    async def _write(
        self, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], prevs: dict[str, StoredEvent],
        before: dict[StateKey, int], is_state: bool, reason: str | None, new_extremities: list[int],
        current: dict[StateKey, int], pos: int | None, *, historical: bool = False,
        outlier: StoredEvent | None = None, before_snapshot: int | None = None,
    ) -> Outcome:
        """Decide how the event is written (see `ReceivedWrite`), have the writer write
        it, and tell clients. `pos` None means it soft-failed (stored, outside the
        timeline); `before_snapshot`, the snapshot `before` is, when known."""
        redacts = await self._redaction_target(room, rv, event, before) if reason is None else None
        # A live redaction that does not apply (yet) is held: in the DAG, but not in the
        # timeline clients see, since they would apply it themselves. One whose target
        # is not here yet waits for it (pending_redactions) and is checked again then.
        target_id = redaction_target(event)
        held = reason is None and pos is not None and not historical and redacts is None and target_id is not None
        waits_for = None
        if reason is None and pos is not None and target_id is not None and redacts is None:
            if await self.events.get_event(target_id) is None:
                waits_for = target_id
        # Redactions that arrived before this event and apply to it now.
        waiting = await self._waiting_redactions(room, rv, event) if reason is None and pos is not None else []
        # One of our own events persisted from outside (our join through a resident
        # server) is queued to the room's other servers by its own transaction.
        joined: list[str] | None = None
        if reason is None and pos is not None and not historical and self.outbox.sends(room, event):
            joined = await self._joined_after(event, before)
        stored = await self.persister.received_event(room, rv, ReceivedWrite(
            event=event, prevs=prevs, before=before, is_state=is_state, reason=reason,
            new_extremities=new_extremities, current=current, pos=pos, historical=historical,
            outlier=outlier, redacts=redacts, held=held, waits_for=waits_for, waiting=waiting, joined=joined,
            before_snapshot=before_snapshot,
        ))
        shown = await self.persister.shown_redactions(waiting)
        if reason is not None:
            return Outcome(stored.event_id, "rejected", reason)
        if historical:
            return Outcome(stored.event_id, "backfilled")
        if pos is None:
            return Outcome(stored.event_id, "soft_failed", "fails authorisation against the current state")
        activity = self.persister.activity
        if not held:
            activity.event_persisted(stored, room)
        for redaction in shown:
            activity.event_persisted(redaction, room)
        return Outcome(stored.event_id, "accepted")

    async def _joined_after(self, event: dict[str, Any], before: dict[StateKey, int]) -> list[str]:
        """Users joined in the state after `event`, given the state before it."""
        key = (event["type"], event.get("state_key"))
        members = await self.events.get_events_by_nid(
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
