"""Push actions, computed once per event and member when the event is written.

`PushActionsIndex` is one of the event writer's indexes (EventIndex,
homeserver/rooms/persist.py): inside the transaction that writes a live timeline
event it evaluates the push rules of every local member the event may notify
(joined members, and the invitee of an invite), stores what they say
(homeserver/storage/push_actions.py: one room-wide row for every member whose
answer is the common one, a row of their own for the others), and queues the
notification for the pushers of the members it notifies in the same
transaction, so neither can be lost or disagree with the event after a crash.
A redaction drops the event's rows.

The transaction may only read through its own `txn`, so everything the rules
read comes from there or from caches: rulesets and ignore lists (the services'
own caches, filled through the txn on a miss), display names by membership
event, power levels and create events by event, and the room's members, kept
between writes. The room's send path therefore costs one rule evaluation for the
common answer, one per member evaluated one by one, and one row for everyone else.
"""

from __future__ import annotations

import bisect
import functools
from collections import OrderedDict
from collections.abc import Callable, Collection, KeysView, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from federation.events import get_room_version, get_user_power_level
from homeserver.clock import Clock
from homeserver.push.defaults import Ruleset, server_default_rules
from homeserver.push.evaluator import (
    CompiledRuleset,
    evaluate,
    highlights,
    notifies,
)
from homeserver.push.glob import glob_matches
from homeserver.receipts import MAIN_THREAD, thread_of
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.storage.database import Txn
from homeserver.storage.push_actions import EventNotifications, PushActionStore

if TYPE_CHECKING:
    from homeserver.account_data import AccountDataService
    from homeserver.push.service import PushRulesService

_CACHE_SIZE = 50_000
IGNORED_USERS = "m.ignored_user_list"


class PushQueue(Protocol):
    """The delivery side (homeserver/push/delivery.py): which users have pushers, and
    queueing a notification for them inside the event's transaction."""

    def has_pushers(self, user_id: str) -> bool: ...

    def pushing_users(self) -> Collection[str]:
        """Every user with a pusher: fewer than a big room's members, so a room-wide
        notification is queued by walking these, not the members."""
        ...

    async def queue_in(self, txn: Txn, room: RoomRecord, stored: StoredEvent, user_ids: list[str]) -> None: ...


class CountsListener(Protocol):
    def __call__(self, room_nid: int, user_ids: list[str]) -> None: ...


class WrittenListener(Protocol):
    """Told, inside a live event's transaction, the notification rows it writes for the
    event at `position` (None: forget what was told of that position, the transaction
    is writing it anew). The transaction may yet fail: a listener trusts an entry only
    for the event (`event_nid`) it finds committed at that position."""

    def __call__(self, room_nid: int, position: int, event_nid: int, rows: EventNotifications | None) -> None: ...


class _Lru:
    """A small bounded map, most recently used last."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self.size = size
        self.data: OrderedDict[int, Any] = OrderedDict()

    def get(self, key: int) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: int, value: Any) -> None:
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)


# (user, lower-cased display name, lower-cased localpart); None: not plain ASCII, or
# with glob characters (it may match text its lower-cased form is not in).
_Profile = tuple[str, str | None, str | None]
_MEMBER_ROWS = 200_000  # member rows kept, all rooms together
_SENDER_LEVELS = 1_000  # senders' power levels kept per room (then forgotten at once)
# The server-default rules that read something of the user they belong to; the rest
# are the same for every user, evaluated once per event for everyone who keeps them.
USER_SPECIFIC_RULES = frozenset({
    ".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
    ".m.rule.contains_user_name",
})
_COMMON_RULES: Ruleset = {
    kind: [r for r in rules if r["rule_id"] not in USER_SPECIFIC_RULES]
    for kind, rules in server_default_rules("@-:-").items()
}


def _may_match_type(rule: Mapping[str, Any], event_type: str) -> bool:
    """False when one of the rule's conditions is an `event_match` on `type` that an
    event of this type fails (as the evaluator itself judges it): all conditions must
    hold, so the rule cannot match such an event."""
    conditions = rule.get("conditions")
    if not isinstance(conditions, list):
        return True
    return not any(
        isinstance(c, Mapping) and c.get("kind") == "event_match" and c.get("key") == "type"
        and isinstance(c.get("pattern"), str) and not glob_matches(c["pattern"], event_type)
        for c in conditions
    )


@functools.lru_cache(maxsize=512)
def _common_rules_for(event_type: str) -> Ruleset:
    """`_COMMON_RULES` less the rules no event of this type can match: the same answer
    for every event of the type, found without walking a dozen rules that test
    another type (each send's evaluation, on its writer's path). Bounded: types are
    the senders' to choose."""
    return {kind: [r for r in rules if _may_match_type(r, event_type)] for kind, rules in _COMMON_RULES.items()}


@functools.lru_cache(maxsize=512)
def _compiled_common_for(event_type: str | None) -> CompiledRuleset:
    """`_common_rules_for` compiled (homeserver/push/evaluator.py): the rules every
    send evaluates, made ready once per type (None: a type that is not a string)."""
    return CompiledRuleset(_COMMON_RULES if event_type is None else _common_rules_for(event_type))


# The characters outside ASCII that Python's case-insensitive regexes (the evaluator's
# glob and word matches, homeserver/push/glob.py) take for an ASCII one: the dotted and
# dotless i, the long s and the Kelvin sign (tests/homeserver/push/test_name_index.py
# checks every code point).
_ASCII_ALIKES = {"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"}


def _body_lower(body: str) -> str:
    """The body lower-cased so that a plain name or localpart (see `_Profile`) the
    evaluator could find in it, case-insensitively, is a substring of it: ASCII
    lower-cased, the characters a regex takes for an ASCII letter written as that
    letter, anything else as it lower-cases (it cannot stand for a plain name's
    character). Glob characters in the body are only text, as are accents and
    emoji: a question or a smiley does not make every member of a big room
    evaluated one by one."""
    if body.isascii():
        return body.lower()
    return "".join(_ASCII_ALIKES.get(c) or c.lower() for c in body)


def _plain_lower(text: str) -> str | None:
    """`text` lower-cased, when plain ASCII without glob characters (see `_Profile`)."""
    if not text.isascii() or "*" in text or "?" in text:
        return None
    return text.lower()


class _NameIndex:
    """The members' lower-cased display names and localparts by length, for finding
    which of them occur in a message's body by looking up the body's substrings of
    those lengths (a few hundred look-ups for a short message) instead of testing
    every member's name against the body (two substring searches per member, the
    bulk of a send's work in a room of 10,000). Both find exactly the members whose
    name or localpart is a substring of the body; `named` takes whichever is cheaper
    for the body at hand (a long body has many substrings).
    """

    def __init__(self, profiles: list[_Profile]) -> None:
        self.size = len(profiles)
        # users tested against every body: a name or localpart that is not plain (see
        # `_Profile`), or an empty localpart (a substring of any body)
        self.always: list[str] = []
        self.by_length: dict[int, dict[str, list[str]]] = {}
        for user_id, name, localpart in profiles:
            if name is None or not localpart:
                self.always.append(user_id)
                continue
            self._add(localpart, user_id)
            if name and name != localpart:
                self._add(name, user_id)

    def _add(self, text: str, user_id: str) -> None:
        self.by_length.setdefault(len(text), {}).setdefault(text, []).append(user_id)

    def patched(self, removed: _Profile | None, added: _Profile | None) -> _NameIndex:
        """A copy with one member's profile taken out and/or put in (a membership
        change, whose transaction may yet fail: this index stays as it is). Only the
        entries of the lengths it touches are copied."""
        new = _NameIndex([])
        new.size = self.size - (removed is not None) + (added is not None)
        new.always = self.always
        new.by_length = dict(self.by_length)
        copied: set[int] = set()

        def texts(n: int) -> dict[str, list[str]]:
            if n not in copied:
                copied.add(n)
                new.by_length[n] = dict(new.by_length.get(n, {}))
            return new.by_length[n]

        if removed is not None:
            user_id, name, localpart = removed
            if name is None or not localpart:
                new.always = [u for u in new.always if u != user_id]
            else:
                for text in {localpart, name} - {""}:
                    entry = texts(len(text))
                    users = [u for u in entry.get(text, ()) if u != user_id]
                    if users:
                        entry[text] = users
                    else:
                        entry.pop(text, None)
                        if not entry:
                            del new.by_length[len(text)]
                            copied.discard(len(text))
        if added is not None:
            user_id, name, localpart = added
            if name is None or not localpart:
                new.always = [*new.always, user_id]
            else:
                for text in {localpart, name} - {""}:
                    entry = texts(len(text))
                    entry[text] = [*entry.get(text, ()), user_id]
        return new

    def named(self, lower_body: str, profiles: list[_Profile]) -> set[str]:
        """The members whose lower-cased name or localpart occurs in `lower_body` (the
        lower-cased body, plain), and those always tested."""
        length = len(lower_body)
        lookups = sum(length - n + 1 for n in self.by_length if n <= length)
        if lookups > self.size:  # a long body: one pass over the members is cheaper
            return {
                user_id for user_id, name, localpart in profiles
                if localpart is None or name is None or localpart in lower_body or (name and name in lower_body)
            }
        found: set[str] = set(self.always)
        for n, texts in self.by_length.items():
            for i in range(length - n + 1):
                users = texts.get(lower_body[i:i + n])
                if users is not None:
                    found.update(users)
        return found


@dataclass
class _RoomMembers:
    """What the rules of a room's members read, kept between writes (see `_room`)."""

    room_id: str
    joined_count: int  # local or not
    local: list[tuple[str, int]]  # joined local users and their membership event nids, by user
    power_levels_nid: int | None
    create_nid: int | None
    profiles: list[_Profile] | None = None  # built on first need
    nids: dict[str, int] = field(default_factory=dict)  # `local` as a map
    names: _NameIndex | None = None  # `profiles` indexed, built on first need

    @property
    def members(self) -> KeysView[str]:
        """The users of `local`: a view of `nids`, which no one changes once made (a
        membership event patches a copy), rather than a set of its own, whose building
        cost a join to a room of 10,000 some 200 us."""
        return self.nids.keys()


class PushActionsIndex:
    """Writes each live event's push actions for the local users it notifies."""

    def __init__(
        self,
        *,
        store: PushActionStore,
        push_rules: PushRulesService,
        account_data: AccountDataService,
        is_mine: Callable[[str], bool],
        clock: Clock,
    ) -> None:
        self.store = store
        self.push_rules = push_rules
        self.account_data = account_data
        self.is_mine = is_mine
        self.clock = clock
        self.queue: PushQueue | None = None
        # told (room nid, users) when stored counts changed other than by growing
        # at the stream's head: a redaction removed notifications
        self.on_removed: list[CountsListener] = []
        # told each live event's rows as they are written (the woken readers' unread
        # counts then need no read of them: sync/room_tallies.py)
        self.on_written: list[WrittenListener] = []
        self._names = _Lru()  # membership event nid -> display name ("" when none)
        # room nid -> its members as of the last write that read them, least recently
        # used first, bounded by rows; dropped when the writer reports a state change.
        self._rooms: OrderedDict[int, _RoomMembers] = OrderedDict()
        self._room_rows = 0
        self._versions: dict[int, int] = {}  # room nid -> state changes seen, guards loads
        # room nid -> (state event nid, version, members as its transaction has them)
        self._pending: dict[int, tuple[int, int, _RoomMembers]] = {}
        self._contents = _Lru(4096)  # power levels / create event nid -> event
        # room nid -> ((power levels nid, create nid, room version), sender -> `_sender_level`),
        # dropped with the room's members when the writer reports a change of its present
        self._sender_levels: dict[
            int, tuple[tuple[int | None, int | None, str], dict[str, tuple[int, dict[str, Any] | None]]]
        ] = {}

    def connect(self, queue: PushQueue) -> None:
        """The delivery queue, built after the event writer (it reads these rows)."""
        self.queue = queue

    def state_changed(self, room_nid: int, by: StoredEvent | None = None) -> None:
        """The room's current state or memberships moved (told by the event writer
        right after the commit, under the room's lock): what is kept of it is stale,
        unless the commit was that of the local event `by` alone, whose transaction
        read (or patched) the room's members as they now are (`_room`): that is kept."""
        pending = self._pending.pop(room_nid, None)
        version = self._versions.get(room_nid, 0)
        self._versions[room_nid] = version + 1
        self._drop_room(room_nid)
        if by is not None and pending is not None and pending[0] == by.nid and pending[1] == version:
            self._keep(room_nid, pending[2])

    def _drop_room(self, room_nid: int) -> None:
        self._sender_levels.pop(room_nid, None)
        entry = self._rooms.pop(room_nid, None)
        if entry is not None:
            self._room_rows -= len(entry.local) + 1

    def _keep(self, room_nid: int, entry: _RoomMembers) -> None:
        self._drop_room(room_nid)
        self._rooms[room_nid] = entry
        self._room_rows += len(entry.local) + 1
        while self._room_rows > _MEMBER_ROWS and len(self._rooms) > 1:
            self._drop_room(next(iter(self._rooms)))

    async def _room(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> _RoomMembers:
        """The room's members and rule-relevant state as of this transaction. A state
        event reads them through its own transaction (it may have just changed them):
        a membership event, when the room's members are kept, reads only its user's
        row and patches a copy (a join to a room of 10,000 does not read 10,000 rows),
        anything else reads them all; either is kept aside, to be kept if the writer
        reports the commit as this event's alone (`state_changed`). Any other event
        cannot have changed them, so it uses what an earlier write read, kept until the
        writer reports a change of the room's present."""
        is_state = stored.state_key is not None
        kept = self._rooms.get(room.room_nid)
        if kept is not None and kept.room_id != room.room_id:
            kept = None
        version = self._versions.get(room.room_nid, 0)
        if not is_state and kept is not None:
            self._rooms.move_to_end(room.room_nid)
            return kept
        if is_state and kept is not None and stored.type == "m.room.member" and stored.state_key is not None:
            entry = await self._patched(txn, room, kept, stored.state_key)
        else:
            ctx = await PushActionStore.room_context(txn, room.room_nid)
            joined = [(u, nid) for u, m, nid in ctx.members if m == "join"]
            local = sorted((u, nid) for u, nid in joined if self.is_mine(u))
            entry = _RoomMembers(
                room.room_id, len(joined), local, ctx.power_levels_nid, ctx.create_nid,
                nids=dict(local),
            )
        if is_state:
            self._pending[room.room_nid] = (stored.nid, version, entry)
        elif self._versions.get(room.room_nid, 0) == version:
            self._keep(room.room_nid, entry)
        return entry

    async def _patched(self, txn: Txn, room: RoomRecord, kept: _RoomMembers, user_id: str) -> _RoomMembers:
        """`kept` with `user_id`'s membership as this transaction has it (the only one a
        membership event changes): a copy, since the transaction may yet fail."""
        row = await PushActionStore.membership_in(txn, room.room_nid, user_id)
        now_nid = row[1] if row is not None and row[0] == "join" else None
        if not self.is_mine(user_id):
            count = await PushActionStore.joined_count_in(txn, room.room_nid)
            return replace(kept, joined_count=count)
        was_nid = kept.nids.get(user_id)
        if was_nid == now_nid:
            return kept
        # Copies, the transaction may yet fail. A user who was not a member (every join)
        # has no entry to find: the lists are copied whole, in C, not filtered in Python,
        # which cost some 8% of a join's CPU in a room of 10,000 (profile).
        nids = dict(kept.nids)
        was: _Profile | None = None
        if was_nid is None:
            local = list(kept.local)
            profiles = list(kept.profiles) if kept.profiles is not None else None
        else:
            del nids[user_id]
            at = bisect.bisect_left(kept.local, (user_id, was_nid))  # `local` is sorted
            if at < len(kept.local) and kept.local[at] == (user_id, was_nid):
                local = kept.local[:at] + kept.local[at + 1:]
            else:
                local = [m for m in kept.local if m[0] != user_id]
            profiles = None
            if kept.profiles is not None:
                profiles = [p for p in kept.profiles if p[0] != user_id]
                was = next((p for p in kept.profiles if p[0] == user_id), None)
        now: _Profile | None = None
        if now_nid is not None:
            bisect.insort(local, (user_id, now_nid))
            nids[user_id] = now_nid
            if profiles is not None:
                await self._load_names(txn, [now_nid])
                now = self._profile(user_id, now_nid)
                profiles.append(now)
        count = kept.joined_count + (now_nid is not None) - (was_nid is not None)
        # The name index follows the one member changed (a join to a room of 10,000
        # does not index its 10,000 names again for the next message).
        names = kept.names.patched(was, now) if kept.names is not None and profiles is not None else None
        return _RoomMembers(
            room.room_id, count, local, kept.power_levels_nid, kept.create_nid, profiles, nids, names,
        )

    def _profile(self, user_id: str, member_nid: int) -> _Profile:
        """The member's profile, once the name of their membership event is loaded."""
        name = self._names.get(member_nid) or ""
        return user_id, _plain_lower(name), _plain_lower(user_id[1:].split(":", 1)[0])

    async def _profiles(self, txn: Txn, entry: _RoomMembers) -> list[_Profile]:
        """Each local member's lower-cased display name and localpart, for finding in
        one pass the few members a message might mention (built once per member list)."""
        if entry.profiles is None:
            await self._load_names(txn, [nid for _, nid in entry.local])
            entry.profiles = [self._profile(user_id, nid) for user_id, nid in entry.local]
        return entry.profiles

    async def event_written(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> None:
        """Every local member's push actions for the event, evaluated once for all who
        keep the server's default rules and then only for those the event could name.

        The default rules differ between users only in four places: the invite to the
        user (`state_key`), a mention of their ID in `m.mentions`, and the body holding
        their display name or their localpart. All other conditions (the event's type
        and content, the member count, the sender's power level) are the same for
        everyone. So the defaults are evaluated once with those four rules left out,
        which is every such user's answer unless the event could match one of the four
        for them: the invitee, the users mentioned, and the users whose lower-cased
        name or localpart occurs in the lower-cased body (a superset of the rules'
        case-insensitive word matches, see `_body_lower`; every user whose name is
        not plain ASCII). Those users, users with rules of their own and users with an
        ignore list are evaluated one by one, as before, each getting a row of their
        own: their actions, or an exception (notify = 0) hiding the room-wide row,
        which stands for everyone else. A message in a room of 10,000 thus costs one
        evaluation, one pass of substring tests and one row.
        """
        # Backfilled history sits below position 1 and notifies nobody.
        if stored.stream_ordering is None or stored.stream_ordering <= 0:
            return
        self._tell(room.room_nid, stored, None)  # an earlier attempt's rows are not this one's
        self._tell(room.room_nid, stored, await self._write_actions(txn, room, stored))

    def _tell(self, room_nid: int, stored: StoredEvent, rows: EventNotifications | None) -> None:
        assert stored.stream_ordering is not None
        for listener in self.on_written:
            listener(room_nid, stored.stream_ordering, stored.nid, rows)

    async def _write_actions(self, txn: Txn, room: RoomRecord, stored: StoredEvent) -> EventNotifications:
        """`event_written`'s work: the rows it wrote, exactly as `rows_for_events` would
        read them back."""
        assert stored.stream_ordering is not None
        none = EventNotifications([], [])
        if stored.redacted_by is not None:  # already redacted when it arrives: notifies nobody
            return none
        event = stored.event
        sender = event.get("sender")
        state_key = event.get("state_key")
        is_state = state_key is not None
        entry = await self._room(txn, room, stored)
        invitee = None
        if (
            event.get("type") == "m.room.member" and isinstance(state_key, str) and state_key != sender
            and self.is_mine(state_key) and isinstance(event.get("content"), dict)
            and event["content"].get("membership") == "invite"
        ):
            invitee = state_key  # not a member yet
        if not entry.local and invitee is None:
            return none
        sender_level, levels_content = await self._sender_level(txn, room, entry, str(sender))
        shown = {**event, "room_id": room.room_id}

        special = await self._named(txn, entry, event, invitee)
        for users in await self.push_rules.customised_in(txn):
            special |= users & entry.members  # a set intersection walks the smaller side
        if not is_state:  # users with an ignore list
            for users in await self.account_data.holders_in(txn, IGNORED_USERS):
                special |= users & entry.members
        event_type = event.get("type")
        rules = _compiled_common_for(event_type if isinstance(event_type, str) else None)
        common = evaluate(rules, shown, entry.joined_count, None, sender_level, levels_content)
        common_notifies = notifies(common)
        groups: dict[int, tuple[list[Any], list[str]]] = {}  # id(actions) -> (actions, users)
        special.discard(str(sender))
        one_by_one = [(u, entry.nids[u]) for u in sorted(special) if u in entry.nids]
        # Whether anyone's answer is `common` (every other member but the sender): one
        # row for them all.
        room_wide = common_notifies and len(entry.members) - (sender in entry.members) > len(one_by_one)
        if invitee is not None:
            one_by_one.append((invitee, stored.nid))
        if one_by_one:
            await self._load_names(txn, [nid for _, nid in one_by_one])
        suppressed: list[str] = []  # members the room-wide row must not reach
        for user_id, member_nid in one_by_one:
            if not is_state and sender in await self._ignored(txn, user_id):
                actions: list[Any] = []  # an ignored user's messages are not shown, so they do not notify
            else:
                name = self._names.get(member_nid) or None
                actions = evaluate(
                    await self.push_rules.compiled_in(txn, user_id), shown, entry.joined_count, name, sender_level,
                    levels_content,
                )
            if notifies(actions):
                groups.setdefault(id(actions), (actions, []))[1].append(user_id)
            elif room_wide and user_id != invitee:
                suppressed.append(user_id)
        if not room_wide and not groups:
            return none
        thread = await self._thread(txn, event)
        now = self.clock.time_ms()
        written = await PushActionStore.add_event(
            txn, room.room_nid, stored.stream_ordering, stored.nid, thread, now, sender=str(sender),
            room_wide=(highlights(common), common) if room_wide else None,
            groups=[(users, highlights(actions), actions) for actions, users in groups.values()],
            suppressed=suppressed if room_wide else (),
        )
        if self.queue is not None:
            pushed = [u for _, users in groups.values() for u in users if self.queue.has_pushers(u)]
            if room_wide:
                own = {u for u, _ in one_by_one}
                pushing = self.queue.pushing_users()
                candidates = pushing if len(pushing) < len(entry.members) else entry.members
                pushed += [
                    u for u in candidates
                    if u != sender and u not in own and u in entry.members and self.queue.has_pushers(u)
                ]
            if pushed:
                await self.queue.queue_in(txn, room, stored, sorted(pushed))
        return written

    async def _sender_level(
        self, txn: Txn, room: RoomRecord, entry: _RoomMembers, sender: str
    ) -> tuple[int, dict[str, Any] | None]:
        """The sender's power level and the room's power levels content, as the room's
        power levels and create events (by nid: an event's JSON never changes) give
        them; kept per room and sender while those events stay, since a room's senders
        send many."""
        events = (entry.power_levels_nid, entry.create_nid, room.room_version)
        kept = self._sender_levels.get(room.room_nid)
        if kept is None or kept[0] != events:
            kept = self._sender_levels[room.room_nid] = (events, {})
        known = kept[1].get(sender)
        if known is not None:
            return known
        await self._load_events(txn, [n for n in (entry.power_levels_nid, entry.create_nid) if n is not None])
        state: dict[tuple[str, str], Any] = {}
        if entry.create_nid is not None:
            state[("m.room.create", "")] = self._contents.get(entry.create_nid)
        levels = self._contents.get(entry.power_levels_nid) if entry.power_levels_nid is not None else None
        if levels is not None:
            state[("m.room.power_levels", "")] = levels
        rv = get_room_version(room.room_version)
        sender_level = int(min(get_user_power_level(sender, state, rv), 2**31))
        levels_content = levels.get("content") if isinstance(levels, dict) else None
        known = sender_level, (levels_content if isinstance(levels_content, dict) else None)
        if len(kept[1]) >= _SENDER_LEVELS:
            kept[1].clear()
        kept[1][sender] = known
        return known

    async def _named(
        self, txn: Txn, entry: _RoomMembers, event: dict[str, Any], invitee: str | None
    ) -> set[str]:
        """The local members for whom one of the user-specific default rules might
        match the event (see `event_written`): to be evaluated one by one."""
        named: set[str] = {invitee} if invitee is not None else set()
        if event.get("type") == "m.room.member" and isinstance(event.get("state_key"), str):
            named.add(event["state_key"])  # .m.rule.invite_for_me reads it
        content = event.get("content")
        if not isinstance(content, dict):
            return named
        mentions = content.get("m.mentions")
        if isinstance(mentions, dict) and isinstance(mentions.get("user_ids"), list):
            named.update(u for u in mentions["user_ids"] if isinstance(u, str))
        body = content.get("body")
        if "m.mentions" in content or not isinstance(body, str):
            return named  # the rules reading the body are skipped, or have nothing to read
        lower_body = _body_lower(body)
        profiles = await self._profiles(txn, entry)
        if entry.names is None:
            entry.names = _NameIndex(profiles)
        return named | entry.names.named(lower_body, profiles)

    async def event_redacted(self, txn: Txn, room: RoomRecord, redacted_event_id: str) -> None:
        users = await PushActionStore.remove_event(txn, redacted_event_id)
        if users:
            for listener in self.on_removed:
                listener(room.room_nid, users)

    async def _thread(self, txn: Txn, event: dict[str, Any]) -> str:
        # No event ID holds NUL (and PostgreSQL text cannot): such a relation is to nothing.
        async def parent(event_id: str) -> dict[str, Any] | None:
            return None if "\x00" in event_id else await PushActionStore.event_json_by_id(txn, event_id)

        thread = await thread_of(event, parent)
        return MAIN_THREAD if thread is None or "\x00" in thread else thread

    async def _ignored(self, txn: Txn, user_id: str) -> set[str] | dict[str, Any]:
        content = await self.account_data.get_global_in(txn, user_id, IGNORED_USERS)
        ignored = content.get("ignored_users") if isinstance(content, dict) else None
        return ignored if isinstance(ignored, dict) else set()

    async def _load_events(self, txn: Txn, nids: list[int]) -> None:
        missing = [n for n in nids if self._contents.get(n) is None]
        if missing:
            for nid, ev in (await PushActionStore.event_json(txn, missing)).items():
                self._contents.put(nid, ev)

    async def _load_names(self, txn: Txn, nids: list[int]) -> None:
        missing = [n for n in nids if self._names.get(n) is None]
        if not missing:
            return
        for nid, ev in (await PushActionStore.event_json(txn, missing)).items():
            content = ev.get("content")
            name = content.get("displayname") if isinstance(content, dict) else None
            self._names.put(nid, name if isinstance(name, str) else "")
