"""Reported content (the spec's report_content module): users report events, rooms and
other users, the server's admins list, read and delete the reports.

A report of an event someone may not see is refused exactly like a report of an
event that does not exist, so reporting cannot be used to probe for events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import MatrixError, not_found
from homeserver.identifiers import domain_is, parse_user_id
from homeserver.records.event_reports import EventReport, RoomReport, UserReport

if TYPE_CHECKING:
    from homeserver.audit import AuditLog
    from homeserver.clock import Clock
    from homeserver.rooms.service import RoomService
    from homeserver.rooms.visibility import VisibilityService
    from homeserver.storage.event_reports import EventReportStore
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore
    from homeserver.storage.users import UserStore

#: Memberships that show this server knows a remote user (any room, any state).
_ANY_MEMBERSHIP = ("join", "invite", "leave", "ban", "knock")


class ReportService:
    def __init__(
        self,
        *,
        store: EventReportStore,
        rooms: RoomStore,
        events: EventStore,
        room_service: RoomService,
        visibility: VisibilityService,
        audit: AuditLog,
        clock: Clock,
        users: UserStore,
        server_name: str,
    ) -> None:
        self.store = store
        self.users = users
        self.server_name = server_name
        self.rooms = rooms
        self.events = events
        self.room_service = room_service
        self.visibility = visibility
        self.audit = audit
        self.clock = clock

    # --- reporting (users) ---

    async def report_event(
        self, user_id: str, room_id: str, event_id: str, reason: str | None, score: int | None,
        ip: str | None,
    ) -> None:
        """The reporter must be joined and able to see the event; anything else is the
        same 404."""
        missing = not_found("The event was not found or you are not joined to the room.")
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise missing
        membership = await self.rooms.membership_of(room.room_nid, user_id)
        if membership is None or membership[0] != "join":
            raise missing
        event = await self.events.get_event(event_id)
        if event is None or event.room_nid != room.room_nid or event.stream_ordering is None:
            raise missing
        if not await self.visibility.viewer(user_id, room).can_see(event):
            raise missing
        report_id = await self.store.add_event_report(
            self.clock.time_ms(), room.room_id, event.event_id, user_id, reason, score, event.sender
        )
        await self.audit.record(
            "report.event", actor=user_id, target=event.event_id, ip=ip,
            details={"room_id": room.room_id, "report_id": report_id},
        )

    async def report_room(self, user_id: str, room_id: str, reason: str, ip: str | None) -> None:
        """Anyone may report a room, joined or not (the spec forbids requiring it)."""
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_found("The room was not found.")
        report_id = await self.store.add_room_report(self.clock.time_ms(), room.room_id, user_id, reason)
        await self.audit.record(
            "report.room", actor=user_id, target=room.room_id, ip=ip,
            details={"report_id": report_id},
        )

    async def report_user(self, user_id: str, target_user_id: str, reason: str, ip: str | None) -> None:
        """A local account must exist (deactivated ones too: what they did stays
        reportable); a remote user must be one this server has met in a room, so the
        table cannot be filled with made-up IDs. Anything else is 404, as the spec lets a
        server answer."""
        if parse_user_id(target_user_id) is None:
            raise MatrixError(400, "M_INVALID_PARAM", "Not a valid user ID")
        if domain_is(target_user_id, self.server_name):
            known = await self.users.get_user(target_user_id) is not None
        else:
            known = bool(await self.rooms.rooms_for_user(target_user_id, _ANY_MEMBERSHIP))
        if not known:
            raise not_found("The user was not found.")
        report_id = await self.store.add_user_report(self.clock.time_ms(), target_user_id, user_id, reason)
        await self.audit.record(
            "report.user", actor=user_id, target=target_user_id, ip=ip, details={"report_id": report_id},
        )

    # --- reviewing (admins) ---

    async def page_of(
        self, kind: str, *, offset: int, limit: int, newest_first: bool, filters: dict[str, str | None],
    ) -> tuple[list[RoomReport | UserReport], int]:
        """One page of room ("room") or user ("user") reports, newest or oldest first."""
        return await self.store.page_of(kind, offset=offset, limit=limit, newest_first=newest_first, filters=filters)

    async def get_of(self, kind: str, report_id: int) -> RoomReport | UserReport | None:
        return await self.store.get_of(kind, report_id)

    async def delete_of(self, kind: str, report_id: int) -> bool:
        return await self.store.delete_of(kind, report_id)

    async def page(
        self, *, offset: int, limit: int, newest_first: bool, user_id: str | None,
        room_id: str | None, event_sender: str | None,
    ) -> tuple[list[EventReport], int]:
        """One page of event reports and how many match in all."""
        return await self.store.page(
            offset=offset, limit=limit, newest_first=newest_first, user_id=user_id,
            room_id=room_id, event_sender=event_sender,
        )

    async def get(self, report_id: int) -> EventReport | None:
        return await self.store.get(report_id)

    async def reported_event(self, report: EventReport) -> dict[str, Any] | None:
        """The reported event as stored (None once purged)."""
        event = await self.events.get_event(report.event_id)
        return event.event if event is not None else None

    async def delete(self, report_id: int) -> bool:
        return await self.store.delete(report_id)

    async def report_json(self, report: EventReport) -> dict[str, Any]:
        """A report with the room's current name and canonical alias (null once the room
        is gone)."""
        name = alias = None
        room = await self.rooms.get_room(report.room_id)
        if room is not None:
            state = await self.room_service.current_state_events(
                room, [("m.room.name", ""), ("m.room.canonical_alias", "")]
            )
            name_ev, alias_ev = state.get(("m.room.name", "")), state.get(("m.room.canonical_alias", ""))
            if name_ev is not None and isinstance(name_ev.event["content"].get("name"), str):
                name = name_ev.event["content"]["name"]
            if alias_ev is not None and isinstance(alias_ev.event["content"].get("alias"), str):
                alias = alias_ev.event["content"]["alias"]
        return {
            "id": report.id,
            "received_ts": report.received_ts,
            "room_id": report.room_id,
            "name": name,
            "event_id": report.event_id,
            "user_id": report.user_id,
            "reason": report.reason,
            "score": report.score,
            "sender": report.sender,
            "canonical_alias": alias,
        }
