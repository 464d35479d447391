"""What each sliding sync connection has been sent, so each response sends only
what changed for that client.

A connection is (user, device, `conn_id`). Its state is versioned: the `pos` a
response hands out names the connection's state *after* that response, and the
next request names it back. A request may be a retry of one whose answer was
lost, so the state it names is kept until a request names a newer one; at most
two versions live per connection (the one named and the one just made). A
position this server does not hold (the connection expired, the server
restarted, the device was deleted) is 400 M_UNKNOWN_POS, and the client starts
the connection again: starting over is always correct, so the state lives in
memory only.

Per room and per stream that has a per-room part (events, receipts, account
data), the state records how far the room was sent: `LIVE` (up to date as of
the request's position, so the request's position is where to read from), or a
position where it was left behind (it had news while outside every list's
window), or nothing (never sent: the room is sent from scratch, `initial`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from homeserver.errors import MatrixError
from homeserver.sync.sliding.config import RoomConfig

LIVE = -1
# Connections kept, least recently used dropped first; each costs its rooms' entries.
MAX_CONNECTIONS = 20_000
MAX_CONNECTIONS_PER_DEVICE = 10
# A connection unused this long is dropped (Synapse expires them after a week).
IDLE_EXPIRY_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class ConnectionState:
    """One version of a connection's state. Never mutated: a response that changes
    anything makes a new version (`Changes.apply`)."""

    rooms: Mapping[str, int] = field(default_factory=dict)  # events: LIVE or a position
    receipts: Mapping[str, int] = field(default_factory=dict)
    account_data: Mapping[str, int] = field(default_factory=dict)
    configs: Mapping[str, RoomConfig] = field(default_factory=dict)
    # Lazy-loaded members already sent, per room.
    lazy_members: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def sent_from(self, stream: Mapping[str, int], room_id: str, since: int | None) -> int | None:
        """Where to read a room from: the request's position if the room is live,
        the position it was left behind at, or None if it was never sent."""
        status = stream.get(room_id)
        if status is None or since is None:
            return None
        return since if status == LIVE else status


@dataclass
class Changes:
    """What one response changes in its connection's state."""

    rooms: dict[str, int] = field(default_factory=dict)
    receipts: dict[str, int] = field(default_factory=dict)
    account_data: dict[str, int] = field(default_factory=dict)
    configs: dict[str, RoomConfig] = field(default_factory=dict)
    lazy_members: dict[str, frozenset[str]] = field(default_factory=dict)

    def sent(self, target: dict[str, int], prior: Mapping[str, int], room_ids: Iterable[str]) -> None:
        for room_id in room_ids:
            if prior.get(room_id) != LIVE:
                target[room_id] = LIVE

    def unsent(self, target: dict[str, int], prior: Mapping[str, int], room_ids: Iterable[str], since: int) -> None:
        """Rooms with news the response did not carry: read from `since` next time."""
        for room_id in room_ids:
            if prior.get(room_id) == LIVE and room_id not in target:
                target[room_id] = since

    def __bool__(self) -> bool:
        return bool(self.rooms or self.receipts or self.account_data or self.configs or self.lazy_members)

    def apply(self, state: ConnectionState) -> ConnectionState:
        def merged(old: Mapping[str, object], new: Mapping[str, object]) -> dict[str, object]:
            out = dict(old)
            out.update(new)
            return out

        return replace(
            state,
            rooms=merged(state.rooms, self.rooms),  # type: ignore[arg-type]
            receipts=merged(state.receipts, self.receipts),  # type: ignore[arg-type]
            account_data=merged(state.account_data, self.account_data),  # type: ignore[arg-type]
            configs=merged(state.configs, self.configs),  # type: ignore[arg-type]
            lazy_members=merged(state.lazy_members, self.lazy_members),  # type: ignore[arg-type]
        )


_Key = tuple[str, str, str]  # user, device, conn_id


@dataclass
class _Connection:
    versions: dict[int, ConnectionState]
    last_used_ms: int


class Connections:
    """Every live connection's state versions, in memory, bounded."""

    def __init__(self) -> None:
        self._conns: OrderedDict[_Key, _Connection] = OrderedDict()
        self._next_pos = 1

    def __len__(self) -> int:
        return len(self._conns)

    def get(self, key: _Key, pos: int, now_ms: int) -> ConnectionState:
        """The state a request's position names (position 0: a fresh connection);
        every other version of the connection is dropped."""
        if pos == 0:
            return ConnectionState()
        conn = self._conns.get(key)
        state = conn.versions.get(pos) if conn is not None else None
        if conn is None or state is None or now_ms - conn.last_used_ms > IDLE_EXPIRY_MS:
            raise MatrixError(400, "M_UNKNOWN_POS", "Unknown position: start the connection again")
        conn.versions = {pos: state}
        conn.last_used_ms = now_ms
        self._conns.move_to_end(key)
        return state

    def record(self, key: _Key, since_pos: int, state: ConnectionState, changes: Changes, now_ms: int) -> int:
        """Keep the state after a response; returns the position naming it (the
        request's own when nothing changed)."""
        if not changes and since_pos != 0:
            return since_pos
        pos = self._next_pos
        self._next_pos += 1
        conn = self._conns.get(key)
        if conn is None or since_pos == 0:
            conn = _Connection({}, now_ms)
            self._conns[key] = conn
            self._bound(key)
        conn.versions = {p: s for p, s in conn.versions.items() if p == since_pos}
        conn.versions[pos] = changes.apply(state)
        conn.last_used_ms = now_ms
        self._conns.move_to_end(key)
        return pos

    def _bound(self, key: _Key) -> None:
        same_device = [k for k in self._conns if k[:2] == key[:2]]
        for k in same_device[: max(0, len(same_device) - MAX_CONNECTIONS_PER_DEVICE)]:
            del self._conns[k]
        while len(self._conns) > MAX_CONNECTIONS:
            self._conns.popitem(last=False)

    def device_gone(self, user_id: str, device_ids: Iterable[str] | None = None) -> None:
        """A deleted device's (or a user's every device's) connections end."""
        devices = set(device_ids) if device_ids is not None else None
        for k in [k for k in self._conns if k[0] == user_id and (devices is None or k[1] in devices)]:
            del self._conns[k]
