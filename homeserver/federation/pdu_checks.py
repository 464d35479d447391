"""The checks every PDU from another server goes through, in the spec's order.

1. format: the room version's event format, size and nesting limits;
2. signatures: of every server that must have signed it, with keys valid at
   the event's timestamp;
3. content hash: a mismatch keeps the event, redacted (the signatures cover
   only the redacted form);
4. auth against its own auth events;
5. auth against the state before it (the resolved state after its prev events,
   or a state fetched for prev events this server cannot get);
6. auth against the room's current state: failing only this soft-fails it.

Steps 1-3 (`check`) need the network and the key ring and run before the room
is locked; steps 4-6 need the room's stored DAG and run under the lock, from
homeserver/rooms/received.py. `/send`, joins, invites, backfill and state
fetches all use this one module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from federation.events import (
    AuthError,
    EventFormatError,
    SignatureError,
    auth_event_ids,
    auth_types_for_event,
    check_auth,
    check_auth_events,
    compute_event_id,
    content_hash_matches,
    pdu_json,
    prev_event_ids,
    redact_event,
    room_id_from_create_event_id,
    servers_required_to_sign,
    validate_pdu,
    verify_event_signatures,
)
from federation.events.room_versions import RoomVersion
from federation.events.signing import VerifyKey
from homeserver.records.events import StoredEvent
from homeserver.rooms.state_reader import RoomStateReader, StateKey, StateResolver
from homeserver.storage.events import EventStore

CREATE: StateKey = ("m.room.create", "")


_CHUNK = 250  # events per worker-thread task in `check_many`


def _signed_and_hashed(event: dict[str, Any], rv: RoomVersion, keys: dict[str, dict[str, VerifyKey]]) -> dict[str, Any]:
    """Steps 2 and 3 for a formatted event with its ID, given its signers' keys."""
    try:
        verify_event_signatures(event, rv, keys)
    except SignatureError as e:
        raise PduError(f"Bad signature: {e}") from None
    if not content_hash_matches(event, rv):
        # The signature covers the redacted form only: keep that much, drop the content.
        redacted = redact_event(event, rv)
        redacted["event_id"] = event["event_id"]
        return redacted
    return event


def _formatted_all(pdus: Sequence[dict[str, Any]], rv: RoomVersion) -> list[dict[str, Any]]:
    return [_formatted(p, rv) for p in pdus]


def _signed_and_hashed_all(
    keyed: Sequence[tuple[dict[str, Any], dict[str, dict[str, VerifyKey]]]], rv: RoomVersion
) -> list[dict[str, Any]]:
    return [_signed_and_hashed(e, rv, keys) for e, keys in keyed]


def _formatted(pdu: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
    """Step 1: the PDU in the room version's format, with its ID."""
    event = pdu_json(pdu, rv)
    try:
        validate_pdu(event, rv)
        event["event_id"] = compute_event_id(event, rv)
    except (EventFormatError, ValueError) as e:
        raise PduError(f"Invalid PDU: {e}") from None
    return event


def auth_chain_failures(
    events: dict[str, dict[str, Any]], known: dict[str, dict[str, Any]], create: dict[str, Any] | None,
    rv: RoomVersion,
) -> dict[str, str]:
    """Step 4 for a batch that carries its own auth chain (a send_join answer): each
    event against its auth events, found in the batch or in `known` (stored before,
    never rejected). An event citing one that failed, is missing, or lies in a cycle
    fails too. `create` stands in for the create event where the version does not
    cite it. Returns event ID -> why it fails; pure CPU, so callers run it in a thread."""
    failures: dict[str, str] = {}
    done: set[str] = set(known)
    for root in events:
        stack: list[tuple[str, bool]] = [(root, False)]
        on_path: set[str] = set()
        while stack:
            event_id, expanded = stack.pop()
            if event_id in done:
                continue
            event = events[event_id]
            cited = auth_event_ids(event)
            if not expanded:
                if event_id in on_path:
                    failures[event_id] = "its auth events form a cycle"
                    done.add(event_id)
                    continue
                on_path.add(event_id)
                stack.append((event_id, True))
                stack.extend((a, False) for a in cited if a in events and a not in done)
                continue
            on_path.discard(event_id)
            done.add(event_id)
            reason = _auth_against_cited(event, cited, events, known, failures, create, rv)
            if reason is not None:
                failures[event_id] = reason
    return failures


def _auth_against_cited(
    event: dict[str, Any], cited: list[str], events: dict[str, dict[str, Any]],
    known: dict[str, dict[str, Any]], failures: dict[str, str], create: dict[str, Any] | None, rv: RoomVersion,
) -> str | None:
    auth: list[dict[str, Any]] = []
    for auth_id in cited:
        if auth_id in failures:
            return f"its auth event {auth_id} fails the auth rules"
        found = events.get(auth_id) or known.get(auth_id)
        if found is None:
            return f"its auth event {auth_id} is missing"
        auth.append(found)
    try:
        check_auth_events(event, auth, rv)
        # check_auth_events has made sure each is a state event of a needed type.
        state: dict[StateKey, dict[str, Any]] = {(str(a.get("type")), str(a.get("state_key"))): a for a in auth}
        if create is not None:
            state.setdefault(CREATE, create)
        check_auth(event, state, rv)
    except AuthError as e:
        return e.reason
    return None


class PduError(Exception):
    """This PDU is refused; the reason goes back to the sender for this event only."""


class MissingEventsError(Exception):
    """Prev or auth events the caller must fetch before the event can be persisted."""

    def __init__(self, kind: str, event_ids: list[str]) -> None:
        super().__init__(f"missing {kind} events: {', '.join(event_ids)}")
        self.kind = kind
        self.event_ids = event_ids


class VerifyKeys(Protocol):
    async def get_verify_keys(
        self, server_name: str, key_ids: Collection[str], minimum_valid_until_ts: int | None = None,
    ) -> dict[str, VerifyKey]: ...


def event_in_room(event: dict[str, Any], room_id: str, rv: RoomVersion) -> bool:
    """Whether a checked event (with its computed ID) belongs to the room: by its
    room_id, or, for a create event of a version without one, by its ID. Events a
    peer hands over as part of something else are filtered with this, so no room
    can be given another room's events."""
    if "room_id" in event:
        return bool(event["room_id"] == room_id)
    return (
        rv.room_id_is_create_event_id
        and event.get("type") == "m.room.create"
        and room_id_from_create_event_id(event["event_id"]) == room_id
    )


class PduChecks:
    def __init__(
        self, *, keyring: VerifyKeys, events: EventStore, reader: RoomStateReader, resolver: StateResolver
    ) -> None:
        self.keyring = keyring
        self.events = events
        self.reader = reader
        self.resolver = resolver

    # --- 1-3: before the room is locked ---

    async def check(self, pdu: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
        """Format, signatures and content hash; returns the event (with its ID) to persist."""
        event = _formatted(pdu, rv)
        return _signed_and_hashed(event, rv, await self._signing_keys(event, rv))

    async def _signing_keys(self, event: dict[str, Any], rv: RoomVersion) -> dict[str, dict[str, VerifyKey]]:
        """The keys of every server that must have signed the event (step 2's look-ups)."""
        keys = {}
        for server in servers_required_to_sign(event, rv):
            sigs = event.get("signatures", {}).get(server, {})
            key_ids = list(sigs) if isinstance(sigs, dict) else []
            try:
                # v5+: the key must be valid when the event was sent; before,
                # any key the server ever had will do.
                keys[server] = await self.keyring.get_verify_keys(
                    server, key_ids,
                    minimum_valid_until_ts=event["origin_server_ts"] if rv.enforce_key_validity else 0,
                )
            except Exception as e:
                raise PduError(f"Cannot get keys of {server}: {e}") from None
        return keys

    async def check_many(self, pdus: Sequence[dict[str, Any]], rv: RoomVersion) -> list[dict[str, Any]]:
        """`check` for a batch (a send_join answer: thousands of events, some given
        twice, as state and in the auth chain). Each distinct event is verified once
        (a repeat is answered with the first copy's result). The work is pure CPU
        (canonical JSON, hashes, ed25519), so it runs in worker threads, in chunks:
        the event loop keeps serving other requests meanwhile, and libsodium, which
        releases the GIL, verifies on several cores at once where there are idle
        ones. Only the key look-ups (cached, rarely a fetch) stay on the loop. One
        checked event per PDU, in the order given; PduError if any one is invalid."""
        chunks = [pdus[i : i + _CHUNK] for i in range(0, len(pdus), _CHUNK)]
        formatted = [
            e for part in await asyncio.gather(*(asyncio.to_thread(_formatted_all, c, rv) for c in chunks))
            for e in part
        ]
        distinct: dict[str, dict[str, Any]] = {}
        for e in formatted:
            distinct.setdefault(e["event_id"], e)
        keyed = [(e, await self._signing_keys(e, rv)) for e in distinct.values()]
        parts = [keyed[i : i + _CHUNK] for i in range(0, len(keyed), _CHUNK)]
        checked = {
            e["event_id"]: e
            for part in await asyncio.gather(*(asyncio.to_thread(_signed_and_hashed_all, c, rv) for c in parts))
            for e in part
        }
        return [checked[e["event_id"]] for e in formatted]

    async def chain_failures(
        self, events: dict[str, dict[str, Any]], create: dict[str, Any] | None, rv: RoomVersion
    ) -> dict[str, str]:
        """Step 4 for a checked batch with its auth chain (see `auth_chain_failures`):
        auth events it cites but does not carry are read from storage, where only
        events not rejected count."""
        outside = {a for e in events.values() for a in auth_event_ids(e) if a not in events}
        stored = await self.events.get_events(list(outside)) if outside else {}
        known = {i: ev.event for i, ev in stored.items() if ev.rejected is None}
        return await asyncio.to_thread(auth_chain_failures, events, known, create, rv)

    async def create_event(
        self, room_id: str, rv: RoomVersion, given: dict[str, dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The room's create event where the version names the room after it (v12:
        it is never cited as an auth event, but every check needs it), from `given`
        or storage; None before v12."""
        if not rv.room_id_is_create_event_id:
            return None
        create_id = "$" + room_id[1:]
        if create_id in given:
            return given[create_id]
        stored = await self.events.get_event(create_id)
        return stored.event if stored is not None else None

    # --- 4-6: against the stored DAG, under the room's lock ---

    async def against_prev_state(
        self, rv: RoomVersion, event: dict[str, Any], state_before: dict[StateKey, int] | None
    ) -> tuple[dict[str, StoredEvent], dict[StateKey, int], str | None, int | None]:
        """Steps 4 and 5: the event's prev events, the state before it (resolved from
        theirs, or the `state_before` given for prev events that could not be
        fetched), why it fails there (None when it passes) and the snapshot that
        state is, when it is one prev event's (the writer then need not compare a big
        room's whole state with it again); raises MissingEventsError for prev or auth
        events this server does not have."""
        prev_ids = prev_event_ids(event)
        prevs = await self.events.get_events(prev_ids)
        missing = [p for p in prev_ids if p not in prevs or prevs[p].state_after is None]
        if missing and state_before is None:
            raise MissingEventsError("prev", missing)
        prevs = {p: ev for p, ev in prevs.items() if p not in missing}
        auth = await self.auth_events(event)
        snapshot: int | None = None
        if state_before is not None:
            before = dict(state_before)
        elif len(prevs) == 1:
            snapshot = next(iter(prevs.values())).state_after
            before = await self.reader.state_ids_at_snapshot(snapshot)  # a fresh dict: nothing to resolve
        else:
            prev_states = [await self.reader.state_ids_at_snapshot(p.state_after) for p in prevs.values()]
            before = await self.resolver.resolve(rv, prev_states) if prev_states else {}
        return prevs, before, await self.auth_failure(rv, event, auth, before), snapshot

    async def auth_events(self, event: dict[str, Any]) -> list[StoredEvent]:
        """The event's auth events, all of which must be here."""
        auth_ids = auth_event_ids(event)
        auth = await self.events.get_events(auth_ids)
        missing = [a for a in auth_ids if a not in auth]
        if missing:
            raise MissingEventsError("auth", missing)
        return list(auth.values())

    async def auth_failure(
        self, rv: RoomVersion, event: dict[str, Any], auth_events: list[StoredEvent] | None,
        state_ids: dict[StateKey, int],
    ) -> str | None:
        """Why the event fails the auth rules against its `auth_events` (step 4, when
        given) and against `state_ids`; None when it passes."""
        try:
            if auth_events is not None:
                rejected = {e.event_id for e in auth_events if e.rejected}
                check_auth_events(event, [e.event for e in auth_events], rv, is_rejected=rejected.__contains__)
            keys = auth_types_for_event(event, rv) | {CREATE}
            state = await self.reader.state_events(state_ids, keys)
            check_auth(event, {k: ev.event for k, ev in state.items()}, rv)
        except AuthError as e:
            return e.reason
        return None

    async def soft_fails(self, rv: RoomVersion, event: dict[str, Any], current: dict[StateKey, int]) -> bool:
        """Step 6: the event passes where it sits in the DAG, but not against the
        room's current state: stored, never shown, never an extremity."""
        return await self.auth_failure(rv, event, None, current) is not None
