"""Inbound transactions: PUT /_matrix/federation/v1/send/{txnId}.

Each PDU goes through the checks the spec orders (homeserver/federation/pdu_checks.py):
format, signatures of every server that must have signed it (keys valid at the
event's timestamp), content hash (a mismatch means the event is stored
redacted), then the auth rules against its auth events, the state before it and
the current state. Missing prev events are asked of the sending
server with /get_missing_events, missing auth events with /event_auth (or one by
one with /event where the sender will not answer that), each fetched event going
through the same checks. When /get_missing_events cannot
close the gap (the sender returns too few events: its limit, or history it
will not share), the state at the prev events still missing is asked for with
/state_ids instead (homeserver/federation/state_fetch.py) and the event is
checked against that: the hole stays in the DAG, the room moves on. Each PDU
has a small budget of such fetches, so a peer cannot make one transaction
cost an unbounded number of requests. A transaction is answered once: a retry
of the same (origin, txn ID) gets the first answer back.

The room's m.room.server_acl applies to the transaction's origin: PDUs of a
room whose ACL denies it are refused one by one, and typing notifications and
receipts for such a room are dropped (the spec's "Server Access Control Lists").
Presence EDUs are taken only for users of the origin who share a room with a
user of ours.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from federation.client import quote_path_segment
from federation.events import (
    compute_event_id,
    get_room_version,
    pdu_json,
)
from federation.events.room_versions import RoomVersion
from homeserver.errors import MatrixError
from homeserver.federation.access import ServerGate
from homeserver.federation.pdu_checks import MissingEventsError, PduError
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.received import Outcome

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.federation.edus import EduRegistry
    from homeserver.federation.pdu_checks import PduChecks
    from homeserver.federation.state_fetch import StateFetcher
    from homeserver.rooms.received import ReceivedEvents
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
MAX_MISSING = 20
_SEEN_TXNS = 10_000


def _event_id_or_placeholder(pdu: dict[str, Any], rv: RoomVersion | None) -> str:
    """The ID an answer is keyed by: computed, since PDUs travel without one."""
    try:
        return compute_event_id(pdu_json(pdu, rv), rv or "12")
    except Exception:
        return str(pdu.get("event_id", "?"))


@dataclass
class _Budget:
    """What one received PDU may still cost in requests back to its sender."""

    auth_chains: int = 3
    states: int = 2


class InboundTransactions:
    def __init__(
        self, *, client: FederationClient | None, gate: ServerGate, checks: PduChecks,
        received: ReceivedEvents, state_fetcher: StateFetcher, rooms: RoomStore, events: EventStore,
        room_service: RoomService, edus: EduRegistry,
    ) -> None:
        self.client = client  # None when federation is off (no route reaches this then)
        self.gate = gate
        self.checks = checks
        self.received = received
        self.state_fetcher = state_fetcher
        self.rooms = rooms
        self.events = events
        self.room_service = room_service
        self.edus = edus
        self._answered: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    async def on_send(self, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise MatrixError(400, "M_BAD_JSON", "Transaction must be an object")
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise MatrixError(400, "M_BAD_JSON", "'pdus' and 'edus' must be arrays")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise MatrixError(400, "M_BAD_JSON", f"At most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")
        key = (origin, txn_id)
        if key in self._answered:
            return self._answered[key]
        results: dict[str, dict[str, Any]] = {}
        for pdu in pdus:
            event_id, error = await self._on_pdu(origin, pdu)
            results[event_id] = {} if error is None else {"error": error}
        for edu in edus:
            try:
                await self._on_edu(origin, edu)
            except Exception as e:  # EDUs are best effort: one bad EDU must not fail the rest
                logger.info("ignoring EDU from %s: %s", origin, e)
        answer = {"pdus": results}
        self._answered[key] = answer
        if len(self._answered) > _SEEN_TXNS:
            self._answered.popitem(last=False)
        return answer

    def _client(self) -> FederationClient:
        if self.client is None:
            raise RuntimeError("federation is disabled")
        return self.client

    # --- PDUs ---

    async def _on_pdu(self, origin: str, pdu: Any) -> tuple[str, str | None]:
        if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
            return "?", "PDU must be an object with a room_id"
        room = await self.rooms.get_room(pdu["room_id"])
        if room is None:
            return _event_id_or_placeholder(pdu, None), "Unknown room"
        rv = get_room_version(room.room_version)
        if not await self.gate.acl_allows(room, origin):
            return _event_id_or_placeholder(pdu, rv), "Your server is denied by the room's server ACL"
        try:
            event = await self.checks.check(pdu, rv)
        except PduError as e:
            return _event_id_or_placeholder(pdu, rv), str(e)
        try:
            async with self.room_service.lock(room.room_id):
                outcome = await self._persist(origin, room, rv, event, depth=0, budget=_Budget())
        except PduError as e:
            return event["event_id"], str(e)
        if outcome.status == "rejected":
            return event["event_id"], f"Rejected: {outcome.reason}"
        return event["event_id"], None

    async def _persist(
        self, origin: str, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], depth: int, budget: _Budget
    ) -> Outcome:
        """Persist with the room lock held, fetching what is missing from `origin`:
        the auth chain (`StateFetcher.fetch_auth_chain`); missing prev events with /get_missing_events
        (only for the PDU itself, not for the events that fetches), then, for what
        is still missing, the state at the prev events with /state_ids."""
        state: dict[tuple[str, str], int] | None = None
        asked_missing = depth > 0
        for _ in range(5):
            try:
                return await self.received.persist(room, event, state_before=state)
            except MissingEventsError as missing:
                if missing.kind == "auth":
                    if budget.auth_chains <= 0:
                        raise PduError(str(missing)) from None
                    budget.auth_chains -= 1
                    await self.state_fetcher.fetch_auth_chain(origin, room, rv, event)
                elif not asked_missing:
                    asked_missing = True
                    await self._fetch_missing_prevs(origin, room, rv, event, budget)
                elif state is None and budget.states > 0:
                    budget.states -= 1
                    state = await self.state_fetcher.state_at_prevs(origin, room, rv, event)
                else:
                    raise PduError(str(missing)) from None
        raise PduError("Could not complete the event's history")

    async def _fetch_missing_prevs(
        self, origin: str, room: RoomRecord, rv: RoomVersion, event: dict[str, Any], budget: _Budget
    ) -> None:
        """Ask the sender for the events between our forward extremities and `event`
        (at most MAX_MISSING, nearest to `event` first) and persist them oldest
        first; one that cannot be persisted is skipped, the rest may still fit."""
        head = await self.room_service.head(room)
        latest = await self.events.get_events_by_nid(head.extremities)
        try:
            body = await self._client().post_json(
                origin,
                f"/_matrix/federation/v1/get_missing_events/{quote_path_segment(room.room_id)}",
                {
                    "earliest_events": [e.event_id for e in latest.values()],
                    "latest_events": [event["event_id"]],
                    "limit": MAX_MISSING,
                    "min_depth": 0,
                },
            )
        except Exception as e:
            raise PduError(f"Cannot fetch missing events: {e}") from None
        found = body.get("events", []) if isinstance(body, dict) else []
        if not isinstance(found, list):
            return
        events = []
        for pdu in found[:MAX_MISSING]:
            if isinstance(pdu, dict) and pdu.get("room_id") == room.room_id:  # never a create event
                try:
                    events.append(await self.checks.check(pdu, rv))
                except PduError as e:
                    logger.info("missing event from %s refused: %s", origin, e)
        events.sort(key=lambda e: e.get("depth", 0))
        for missing_event in events:
            try:
                await self._persist(origin, room, rv, missing_event, depth=1, budget=budget)
            except PduError as e:
                logger.info("missing event %s from %s not persisted: %s", missing_event["event_id"], origin, e)

    # --- EDUs ---

    async def _on_edu(self, origin: str, edu: Any) -> None:
        """To the handler registered for the EDU's type (homeserver/federation/edus.py);
        types nobody handles are ignored."""
        if not isinstance(edu, dict) or not isinstance(edu.get("content"), dict):
            return
        kind = edu.get("edu_type")
        handler = self.edus.handler(kind) if isinstance(kind, str) else None
        if handler is not None:
            await handler.receive(origin, edu["content"])
