"""E-mail pushers and digests: notifications still unread `email.notif_delay_s` after they
arrived are mailed, grouped per room, with a link to each room and an
unsubscribe link that works without logging in (signed for that pusher).

A loop looks at every e-mail pusher every `email.notif_check_s`; each pusher's
progress (the stream position mailed up to) is stored, so a restart neither
loses nor repeats a mail, and a failed delivery is tried again on the next
round. Digests (a user's choice in account data, DIGEST_TYPE) summarise the rooms
with unread notifications once a day or week at `email.digest_hour`.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from homeserver.background import cancel_and_wait
from homeserver.clock import Clock
from homeserver.config import EmailConfig
from homeserver.email.mailer import LANGUAGE_KEY, Mailer, MailError, header_text
from homeserver.email.threepids import UNSUBSCRIBE_PATH
from homeserver.records.pushers import Pusher
from homeserver.records.rooms import RoomRecord
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.push_actions import PushActionRow, PushActionStore
from homeserver.storage.pushers import PusherStore
from homeserver.storage.threepids import ThreepidStore

if TYPE_CHECKING:
    from homeserver.receipts import ReceiptService
    from homeserver.records.events import StoredEvent
    from homeserver.rooms.service import RoomService
    from homeserver.storage.events import EventStore
    from homeserver.storage.rooms import RoomStore

logger = logging.getLogger(__name__)

_BATCH = 200
_MAX_BODY = 500


# Global account data, a user's e-mail choices: {"frequency": "daily" | "weekly" | "off",
# "language": a tag such as "de"}; the language is for every mail the user is sent.
DIGEST_TYPE = "org.accord.digest"
_DAY_MS = 86_400_000


def digest_period_start(now_ms: int, frequency: str, hour: int, weekday: int) -> int:
    """When the current digest period began: the latest configured hour (UTC) at or
    before `now_ms`, on the configured weekday for weekly digests."""
    moment = datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC)
    start = moment.replace(hour=hour, minute=0, second=0, microsecond=0)
    if start > moment:
        start -= datetime.timedelta(days=1)
    if frequency == "weekly":
        start -= datetime.timedelta(days=(start.weekday() - weekday) % 7)
    return int(start.timestamp() * 1000)


def _described(ev: StoredEvent, user_id: str) -> dict[str, str]:
    """What a mail says of one event: its `kind` (the templates word it in the
    mail's language: message, encrypted, invite, membership or other) and, for a
    message, its body, for other kinds the event type."""
    content = ev.event.get("content")
    body = content.get("body") if isinstance(content, dict) else None
    if ev.type == "m.room.encrypted":
        return {"kind": "encrypted", "body": ""}
    if ev.type == "m.room.member":
        invited = ev.state_key == user_id and isinstance(content, dict) and content.get("membership") == "invite"
        return {"kind": "invite" if invited else "membership", "body": ""}
    if isinstance(body, str):
        return {"kind": "message", "body": body[:_MAX_BODY]}
    return {"kind": "other", "body": ev.type}


class EmailNotifier:
    def __init__(
        self, *, config: EmailConfig, mailer: Mailer, pushers: PusherStore, actions: PushActionStore,
        events: EventStore, rooms: RoomStore, room_service: RoomService, receipts: ReceiptService,
        clock: Clock, secret: bytes, account_data: AccountDataStore, addresses: ThreepidStore,
        unread_rooms: Callable[[str], Awaitable[list[tuple[RoomRecord, int]]]],
    ) -> None:
        self.config = config
        self.mailer = mailer
        self.pushers = pushers
        self.actions = actions
        self.events = events
        self.rooms = rooms
        self.room_service = room_service
        self.receipts = receipts
        self.clock = clock
        self.account_data = account_data
        self.addresses = addresses
        self.unread_rooms = unread_rooms
        self._key = hashlib.sha256(b"accord e-mail unsubscribe\x00" + secret).digest()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                logger.exception("e-mail notifications: a round failed; trying again later")
            await asyncio.sleep(self.config.notif_check_s)

    async def run_once(self) -> None:
        for pusher in await self.pushers.of_kind("email"):
            await self._pusher(pusher)
        await self._digests()

    # --- digests ---

    async def chosen_language(self, user_id: str) -> str | None:
        """The mail language the user chose (`language` in their DIGEST_TYPE account
        data), as given: the mailer cleans it."""
        choice = await self.account_data.get(user_id, GLOBAL, DIGEST_TYPE)
        value = choice.get(LANGUAGE_KEY) if isinstance(choice, dict) else None
        return value if isinstance(value, str) else None

    async def _digests(self) -> None:
        """Each user who chose digests gets one per period, at the configured hour, of
        the rooms with unread notifications (none when nothing is unread). The first
        period counts from when the choice was first seen."""
        now = self.clock.time_ms()
        for user_id, content in await self.account_data.global_of_type(DIGEST_TYPE):
            frequency = content.get("frequency")
            if frequency not in ("daily", "weekly"):
                continue
            start = digest_period_start(now, frequency, self.config.digest_hour, self.config.digest_weekday)
            last = await self.pushers.last_digest(user_id)
            if last is None:
                await self.pushers.set_last_digest(user_id, now)
                continue
            if last >= start:
                continue
            to = [a for m, a, _, _ in await self.addresses.for_user(user_id) if m == "email"]
            rooms = await self.unread_rooms(user_id) if to else []
            if rooms:
                try:
                    await self._mail_digest(to[0], frequency, rooms, self.mailer.languages(content.get(LANGUAGE_KEY)))
                except MailError as exc:
                    logger.warning("digest for %s: %s; trying again next round", user_id, exc)
                    continue
            await self.pushers.set_last_digest(user_id, now)

    async def _mail_digest(
        self, to: str, frequency: str, found: list[tuple[RoomRecord, int]], languages: list[str],
    ) -> None:
        rooms = [
            {"name": await self._room_name(room), "link": self._room_link(room.room_id), "count": n}
            for room, n in found
        ]
        total = sum(n for _, n in found)
        mail = self.mailer.render("digest", languages, rooms=rooms, frequency=frequency, total=total)
        await self.mailer.send(self.mailer.message(to, mail))

    def _room_link(self, room_id: str) -> str:
        return self.config.client_room_url.replace("{room_id}", quote(room_id, safe=""))

    # --- unsubscribing ---

    def unsubscribe_token(self, pusher: Pusher) -> str:
        msg = f"{pusher.pusher_nid}\x00{pusher.user_id}\x00{pusher.pushkey}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def unsubscribe_link(self, pusher: Pusher) -> str:
        base = (self.config.public_baseurl or "").rstrip("/")
        query = urlencode({"pusher": pusher.pusher_nid, "token": self.unsubscribe_token(pusher)})
        return f"{base}{UNSUBSCRIBE_PATH}?{query}"

    async def unsubscribe(self, pusher_nid: int, token: str, *, apply: bool) -> bool:
        """Whether the link is good; with `apply`, the pusher is deleted."""
        pusher = await self.pushers.get(pusher_nid)
        if pusher is None or pusher.kind != "email":
            return False
        if not hmac.compare_digest(self.unsubscribe_token(pusher), token):
            return False
        if apply:
            await self.pushers.delete_nid(pusher_nid)
        return True

    # --- mailing ---

    async def _pusher(self, pusher: Pusher) -> None:
        after = await self.pushers.mailed_upto(pusher.pusher_nid) or 0
        cutoff = self.clock.time_ms() - self.config.notif_delay_s * 1000
        rows = await self.actions.since(pusher.user_id, after, _BATCH)
        due: list[PushActionRow] = []
        for r in rows:
            if r.ts > cutoff:
                break  # not due yet; neither is anything after it
            due.append(r)
        if not due:
            return
        unread: list[PushActionRow] = []
        for r in due:
            if r.ts < pusher.created_ts:
                continue  # from before the pusher existed
            room = await self.rooms.get_room_by_nid(r.room_nid)
            read = await self.receipts.read_up_to(pusher.user_id, room.room_id) if room else None
            if room is not None and (read is None or read < r.stream_ordering):
                unread.append(r)
        if unread:
            try:
                await self._mail(pusher, unread)
            except MailError as exc:
                logger.warning("e-mail pusher %d: %s; trying again next round", pusher.pusher_nid, exc)
                return
        await self.pushers.set_mailed_upto(pusher.pusher_nid, due[-1].stream_ordering)

    async def _mail(self, pusher: Pusher, rows: list[PushActionRow]) -> None:
        events = await self.events.get_events_by_nid([r.event_nid for r in rows])
        by_room: OrderedDict[int, list[dict[str, str]]] = OrderedDict()
        names: dict[tuple[int, str], str] = {}
        for r in rows:
            ev = events.get(r.event_nid)
            room = await self.rooms.get_room_by_nid(r.room_nid)
            if ev is None or room is None or ev.redacted_by is not None:
                continue
            key = (r.room_nid, ev.sender)
            if key not in names:
                member = await self.room_service.current_state_event(room, ("m.room.member", ev.sender))
                content = member.event.get("content") if member is not None else None
                name = content.get("displayname") if isinstance(content, dict) else None
                names[key] = name if isinstance(name, str) and name.strip() else ev.sender
            by_room.setdefault(r.room_nid, []).append({"sender": names[key], **_described(ev, pusher.user_id)})
        if not by_room:
            return
        rooms: list[dict[str, Any]] = []
        for room_nid, messages in by_room.items():
            room = await self.rooms.get_room_by_nid(room_nid)
            assert room is not None
            rooms.append({
                "name": await self._room_name(room),
                "link": self._room_link(room.room_id),
                "messages": messages,
            })
        unsubscribe = self.unsubscribe_link(pusher)
        first = rooms[0]
        mail = self.mailer.render(
            "notif", self.mailer.languages(await self.chosen_language(pusher.user_id), pusher.lang), rooms=rooms,
            unsubscribe=unsubscribe, senders=sorted({m["sender"] for m in first["messages"]}),
            room=first["name"], others=len(rooms) - 1,
        )
        await self.mailer.send(self.mailer.message(
            pusher.pushkey, mail,
            headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        ))

    async def _room_name(self, room: RoomRecord) -> str:
        for key, field in ((("m.room.name", ""), "name"), (("m.room.canonical_alias", ""), "alias")):
            ev = await self.room_service.current_state_event(room, key)
            content = ev.event.get("content") if ev is not None else None
            value = content.get(field) if isinstance(content, dict) else None
            if isinstance(value, str) and value.strip():
                return header_text(value)
        return str(room.room_id)
