"""A tiny in-memory room for building event DAGs in tests.

Events are real PDUs (hashed, signed, hash-based IDs) built with
``build_event``; auth events are selected from the room's current state the
way a homeserver would, and every event sent is checked both against its
auth events and against the current state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from federation.events import (
    AuthError,
    auth_event_ids,
    build_event,
    check_auth,
    check_event_auth,
    domain_of,
    get_room_version,
    reference_hash_b64,
    room_id_for_new_room,
    select_auth_event_ids,
    signing_key_from_seed,
)

_KEYS: dict[str, Any] = {}


def key_for(server_name: str) -> Any:
    if server_name not in _KEYS:
        seed = hashlib.sha256(server_name.encode()).digest()
        _KEYS[server_name] = signing_key_from_seed(seed, "test")
    return _KEYS[server_name]


class Room:
    def __init__(
        self,
        version: str,
        creator: str = "@alice:a.test",
        *,
        create_content: Mapping[str, Any] | None = None,
        room_id: str | None = None,
    ) -> None:
        self.version = version
        self.rv = get_room_version(version)
        self.creator = creator
        self.events: dict[str, dict[str, Any]] = {}
        self.state_ids: dict[tuple[str, str], str] = {}
        self.rejected: set[str] = set()
        self.last: list[str] = []
        self.ts = 1000
        content: dict[str, Any] = {"room_version": version}
        if self.rv.create_requires_creator_field:
            content["creator"] = creator
        content.update(create_content or {})
        if self.rv.room_id_is_create_event_id:
            self.room_id = None
        else:
            self.room_id = room_id or f"!room:{domain_of(creator)}"
        create = self._build(creator, "m.room.create", content, "", prev=[], auth=[])
        self.room_id = room_id_for_new_room(create, self.rv)
        self.create = create
        self._apply(create)

    # -- building --------------------------------------------------------

    def _build(
        self,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None,
        *,
        prev: Sequence[str] | None = None,
        auth: Sequence[str] | None = None,
        redacts: str | None = None,
        ts: int | None = None,
    ) -> dict[str, Any]:
        prev_events = list(self.last if prev is None else prev)
        if auth is None:
            draft = {"type": event_type, "sender": sender, "content": content}
            if state_key is not None:
                draft["state_key"] = state_key
            auth = select_auth_event_ids(draft, self.state_ids, self.rv)
        depth = 1 + max((self.events[p]["depth"] for p in prev_events), default=0)
        self.ts += 1
        room_id = None if event_type == "m.room.create" and self.room_id is None else self.room_id
        return build_event(
            self.rv,
            room_id=room_id,
            sender=sender,
            event_type=event_type,
            content=content,
            state_key=state_key,
            prev_events=prev_events,
            auth_events=list(auth),
            depth=depth,
            origin_server_ts=self.ts if ts is None else ts,
            redacts=redacts,
            signing_key=key_for(domain_of(sender)),
            reference_hashes=lambda i: reference_hash_b64(self.events[i], self.rv),
            event_id=f"${len(self.events)}-{self.ts}:{domain_of(sender)}",
        )

    def event(
        self,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Build an event without checking or applying it."""
        return self._build(sender, event_type, content, state_key, **kwargs)

    # -- checking --------------------------------------------------------

    def state(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {k: self.events[v] for k, v in self.state_ids.items()}

    def check(self, event: Mapping[str, Any], **kwargs: Any) -> None:
        """Check against its auth events, then against the current state."""
        auth_events = [self.events[a] for a in auth_event_ids(event)]
        check_event_auth(
            event,
            auth_events,
            self.rv,
            create_event=self.create,
            is_rejected=self.rejected.__contains__,
            **kwargs,
        )
        if event["type"] != "m.room.create":
            check_auth(event, self.state(), self.rv, **kwargs)

    def _apply(self, event: dict[str, Any]) -> None:
        self.events[event["event_id"]] = event
        self.last = [event["event_id"]]
        if "state_key" in event:
            self.state_ids[(event["type"], event["state_key"])] = event["event_id"]

    def send(
        self,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        check_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        event = self.event(sender, event_type, content, state_key, **kwargs)
        self.check(event, **(check_kwargs or {}))
        self._apply(event)
        return event

    def refuse(
        self,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        check_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> AuthError:
        """Build an event that must fail auth; the room is left unchanged."""
        event = self.event(sender, event_type, content, state_key, **kwargs)
        try:
            self.check(event, **(check_kwargs or {}))
        except AuthError as exc:
            return exc
        raise AssertionError(f"{event_type} from {sender} was unexpectedly allowed")

    # -- conveniences ----------------------------------------------------

    def member(self, sender: str, membership: str, target: str | None = None, **content: Any):
        return self.send(
            sender, "m.room.member", {"membership": membership, **content}, target or sender
        )

    def refuse_member(
        self, sender: str, membership: str, target: str | None = None, **content: Any
    ) -> AuthError:
        return self.refuse(
            sender, "m.room.member", {"membership": membership, **content}, target or sender
        )

    def bootstrap(
        self,
        join_rule: str | None = "public",
        users: Mapping[str, int] | None = None,
        **power_levels: Any,
    ) -> Room:
        """Creator joins, then power levels and join rules, as createRoom does."""
        self.member(self.creator, "join")
        levels: dict[str, Any] = dict(users or {})
        if not self.rv.creators_have_infinite_power:
            levels.setdefault(self.creator, 100)
        self.send(self.creator, "m.room.power_levels", {"users": levels, **power_levels}, "")
        if join_rule is not None:
            self.send(self.creator, "m.room.join_rules", {"join_rule": join_rule}, "")
        return self

    def join(self, user: str) -> dict[str, Any]:
        return self.member(user, "join")
