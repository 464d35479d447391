"""Other servers' users' keys: asking their servers, and the cached device lists
of the users who share a room with one of ours.

* `/keys/query` and `/keys/claim` for other servers' users go to each server
  (`POST /_matrix/federation/v1/user/keys/query|claim`) at the same time, each
  bounded by the request's `timeout`; a server that cannot be reached, refuses,
  answers garbage or is too slow is reported in `failures` (the federation
  client goes through the federation policy and the outbound guard).
* A user who shares a room with one of our users is *tracked*: their device
  list is cached (`remote_device_lists`) once fetched whole with
  `GET /user/devices/{userId}`, kept current by their server's
  `m.device_list_update` and `m.signing_key_update` EDUs, and a query for them
  is answered from the cache while it is up to date. An update whose `prev_id`
  names a stream ID we never saw means one was lost: the list is fetched whole
  again. When no local user shares a room with them any more, the copy is
  dropped (it would stop being kept current).
* Every change of a remote user's devices enters the local device-list stream
  (`DeviceLists.remote_changed`), which is how local clients learn to refetch
  their keys (/sync `device_lists.changed`, `/keys/changes`).

Everything a peer answers is checked before it is kept or passed on: the keys
must name the user (and device) they are filed under, device keys must carry
their device's own signature, sizes are bounded; what fails is left out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, TypeVar

from canonicaljson import encode_canonical_json

from federation.client import FederationError, RemoteError, quote_path_segment
from homeserver.e2ee.keys import MAX_DEVICE_KEYS_JSON, MAX_ID_LENGTH, MAX_KEY_JSON, ed25519_verify
from homeserver.identifiers import domain_is, parse_user_id
from homeserver.records.e2ee import RemoteDevice, RemoteDeviceList

if TYPE_CHECKING:
    from federation.client import FederationClient
    from homeserver.records.events import StoredEvent
    from homeserver.records.rooms import RoomRecord
    from homeserver.storage.device_list_federation import RemoteDeviceListStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

FED_V1 = "/_matrix/federation/v1"
DEFAULT_TIMEOUT_MS = 10_000
MAX_TIMEOUT_MS = 60_000
# Devices kept of one remote user, and EDUs with more than this are malformed.
MAX_REMOTE_DEVICES = 1000
MAX_DISPLAY_NAME = 255
# A refetch runs while an EDU (and the transaction carrying it) waits for it.
RESYNC_TIMEOUT_S = 10.0

# Local users sharing a joined room with a user, the user included.
Audience = Callable[[str], Awaitable[frozenset[str]]]
RoomMembers = Callable[["RoomRecord"], Awaitable[Iterable[str]]]


class RemoteChanges(Protocol):
    """`DeviceLists.remote_changed`: a remote user's devices changed."""

    async def remote_changed(self, user_id: str) -> None: ...


def _size(obj: Any) -> int:
    try:
        return len(encode_canonical_json(obj))
    except Exception:
        return 1 << 30


def check_device_keys(user_id: str, device_id: str, keys: Any) -> dict[str, Any] | None:
    """Device keys from another server, if they are what they claim to be: the
    user's and device's, of bounded size, signed by the device's own key."""
    if not isinstance(keys, dict) or keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return None
    if _size(keys) > MAX_DEVICE_KEYS_JSON:
        return None
    dkeys = keys.get("keys")
    public = dkeys.get(f"ed25519:{device_id}") if isinstance(dkeys, dict) else None
    if not isinstance(public, str) or not ed25519_verify(keys, user_id, f"ed25519:{device_id}", public):
        return None
    return keys


def check_cross_signing_key(user_id: str, usage: str, key: Any) -> dict[str, Any] | None:
    """A master or self-signing key from another server: the user's, for that use,
    one ed25519 key, bounded. (Clients check the signatures between them.)"""
    if not isinstance(key, dict) or key.get("user_id") != user_id or _size(key) > MAX_KEY_JSON * 2:
        return None
    uses = key.get("usage")
    keys = key.get("keys")
    if not isinstance(uses, list) or usage not in uses or not isinstance(keys, dict) or len(keys) != 1:
        return None
    return key


def _stream_id_ok(value: Any) -> TypeGuard[int]:
    """A stream ID we can store (a 64-bit column on PostgreSQL)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _device_id_ok(device_id: Any) -> bool:
    return isinstance(device_id, str) and 0 < len(device_id) <= MAX_ID_LENGTH and "\x00" not in device_id


def _failure(error: BaseException) -> dict[str, Any]:
    if isinstance(error, RemoteError):
        return {"status": error.status, "message": str(error)[:200]}
    if isinstance(error, TimeoutError):
        return {"status": 504, "message": "The server did not answer in time"}
    return {"status": 503, "message": str(error)[:200] or type(error).__name__}


class RemoteKeys:
    def __init__(
        self,
        *,
        store: RemoteDeviceListStore,
        client: FederationClient | None,
        server_name: str,
        audience: Audience,
        room_members: RoomMembers,
        changes: RemoteChanges,
    ) -> None:
        self.store = store
        self.client = client  # None: federation is off, every remote user fails
        self.server_name = server_name
        self.audience = audience
        self.room_members = room_members
        self.changes = changes
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- one user at a time: EDUs applied in order, one resync at once ---

    async def _locked(self, user_id: str, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        lock, users = self._locks.get(user_id, (asyncio.Lock(), 0))
        self._locks[user_id] = (lock, users + 1)
        try:
            async with lock:
                return await fn()
        finally:
            lock, users = self._locks[user_id]
            if users <= 1:
                del self._locks[user_id]
            else:
                self._locks[user_id] = (lock, users - 1)

    async def tracked(self, user_id: str) -> bool:
        """Whether a local user shares a joined room with (remote) `user_id`."""
        return bool(await self.audience(user_id) - {user_id})

    # --- queries and claims ---

    @staticmethod
    def timeout_s(timeout_ms: Any) -> float:
        if isinstance(timeout_ms, int) and not isinstance(timeout_ms, bool) and timeout_ms >= 0:
            return min(timeout_ms, MAX_TIMEOUT_MS) / 1000
        return DEFAULT_TIMEOUT_MS / 1000

    async def _per_server(
        self, by_server: dict[str, T], ask: Callable[[str, T], Awaitable[dict[str, Any]]], timeout_s: float
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """Run `ask` for every server at once, each within `timeout_s`: (answers, failures)."""

        async def one(server: str, what: T) -> tuple[str, dict[str, Any] | BaseException]:
            if self.client is None:
                return server, FederationError("Federation is disabled")
            try:
                return server, await asyncio.wait_for(ask(server, what), timeout_s)
            except (FederationError, TimeoutError, ValueError) as e:
                return server, e

        answers: dict[str, dict[str, Any]] = {}
        failures: dict[str, Any] = {}
        for server, result in await asyncio.gather(*(one(s, w) for s, w in by_server.items())):
            if isinstance(result, BaseException):
                logger.info("keys from %s failed: %s", server, result)
                failures[server] = _failure(result)
            else:
                answers[server] = result
        return answers, failures

    async def query(self, wanted: dict[str, list[str]], timeout_s: float) -> dict[str, Any]:
        """Device keys, master and self-signing keys of other servers' users
        ({user_id: [device_id, ...] or [] for all}); `failures` by server."""
        by_server: dict[str, dict[str, list[str]]] = {}
        for user_id, device_ids in wanted.items():
            parsed = parse_user_id(user_id)
            if parsed is not None:
                by_server.setdefault(parsed[1], {})[user_id] = device_ids
        answers, failures = await self._per_server(by_server, self._query_server, timeout_s)
        out: dict[str, Any] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}, "failures": failures}
        for answer in answers.values():
            for name in ("device_keys", "master_keys", "self_signing_keys"):
                out[name].update(answer.get(name, {}))
        return out

    async def _query_server(self, server: str, users: dict[str, list[str]]) -> dict[str, Any]:
        device_keys: dict[str, Any] = {}
        master: dict[str, Any] = {}
        self_signing: dict[str, Any] = {}
        ask: dict[str, list[str]] = {}
        for user_id, device_ids in users.items():
            cached: RemoteDeviceList | None = None
            if await self.tracked(user_id):
                cached = await self.store.get(user_id)
                if cached is None or not cached.up_to_date:
                    cached = await self.resync(user_id)
            if cached is None:
                ask[user_id] = device_ids
                continue
            wanted = set(device_ids)
            device_keys[user_id] = {
                d.device_id: _served(d) for d in cached.devices.values()
                if d.keys is not None and (not wanted or d.device_id in wanted)
            }
            if cached.master_key is not None:
                master[user_id] = cached.master_key
            if cached.self_signing_key is not None:
                self_signing[user_id] = cached.self_signing_key
        if ask:
            assert self.client is not None
            body = await self.client.post_json(server, FED_V1 + "/user/keys/query", {"device_keys": ask})
            if not isinstance(body, dict):
                raise ValueError("keys query answered without an object")
            got = body.get("device_keys")
            for user_id, devices in (got.items() if isinstance(got, dict) else ()):
                if user_id not in ask or not isinstance(devices, dict):
                    continue  # a server answers for the users asked of it, no others
                wanted = set(ask[user_id])
                answered = itertools.islice(devices.items(), MAX_REMOTE_DEVICES)
                checked = {
                    d: k for d, k in ((d, check_device_keys(user_id, d, k)) for d, k in answered)
                    if k is not None and (not wanted or d in wanted)
                }
                device_keys[user_id] = checked
            for name, usage, out in (("master_keys", "master", master), ("self_signing_keys", "self_signing", self_signing)):
                keys = body.get(name)
                for user_id, key in (keys.items() if isinstance(keys, dict) else ()):
                    if user_id in ask and (checked_key := check_cross_signing_key(user_id, usage, key)) is not None:
                        out[user_id] = checked_key
        return {"device_keys": device_keys, "master_keys": master, "self_signing_keys": self_signing}

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_s: float) -> dict[str, Any]:
        """One-time keys of other servers' users' devices ({user: {device: algorithm}})."""
        by_server: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            parsed = parse_user_id(user_id)
            if parsed is not None and devices:
                by_server.setdefault(parsed[1], {})[user_id] = devices
        answers, failures = await self._per_server(by_server, self._claim_server, timeout_s)
        claimed: dict[str, Any] = {}
        for answer in answers.values():
            claimed.update(answer)
        return {"one_time_keys": claimed, "failures": failures}

    async def _claim_server(self, server: str, users: dict[str, dict[str, str]]) -> dict[str, Any]:
        assert self.client is not None
        body = await self.client.post_json(server, FED_V1 + "/user/keys/claim", {"one_time_keys": users})
        got = body.get("one_time_keys") if isinstance(body, dict) else None
        if not isinstance(got, dict):
            raise ValueError("keys claim answered without one_time_keys")
        out: dict[str, Any] = {}
        for user_id, devices in got.items():
            if user_id not in users or not isinstance(devices, dict):
                continue
            for device_id, keys in devices.items():
                if device_id not in users[user_id] or not isinstance(keys, dict) or len(keys) != 1:
                    continue
                key_id, key = next(iter(keys.items()))
                algorithm = users[user_id][device_id]
                if not isinstance(key_id, str) or not key_id.startswith(algorithm + ":"):
                    continue
                if not isinstance(key, str | dict) or _size(key) > MAX_KEY_JSON:
                    continue
                out.setdefault(user_id, {})[device_id] = {key_id: key}
        return out

    # --- the cached device lists ---

    async def resync(self, user_id: str) -> RemoteDeviceList | None:
        """Fetch the user's whole device list from their server and cache it
        (None, the cache marked stale, if that fails)."""
        return await self._locked(user_id, lambda: self._resync(user_id))

    async def _resync(self, user_id: str, also_seen: Sequence[int] = ()) -> RemoteDeviceList | None:
        parsed = parse_user_id(user_id)
        if parsed is None or self.client is None:
            return None
        try:
            body = await self.client.get_json(
                parsed[1], f"{FED_V1}/user/devices/{quote_path_segment(user_id)}", timeout_s=RESYNC_TIMEOUT_S
            )
            fetched = _parse_user_devices(user_id, body)
        except (FederationError, TimeoutError, ValueError) as e:
            logger.info("device list of %s could not be fetched: %s", user_id, e)
            await self.store.mark_stale(user_id)
            return None
        stream_id, devices, master, self_signing = fetched
        if not await self.tracked(user_id):
            return RemoteDeviceList(user_id, stream_id, (stream_id,), {d.device_id: d for d in devices},
                                    master, self_signing, True)  # answered, but not kept
        await self.store.replace(user_id, stream_id, devices, master, self_signing, also_seen)
        await self.changes.remote_changed(user_id)
        return await self.store.get(user_id)

    async def on_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        """An m.device_list_update EDU, from the user's own server only."""
        user_id = content.get("user_id")
        device_id = content.get("device_id")
        stream_id = content.get("stream_id")
        prev_ids = content.get("prev_id", [])
        deleted = content.get("deleted", False)
        if (
            not isinstance(user_id, str) or not domain_is(user_id, origin) or not _device_id_ok(device_id)
            or not _stream_id_ok(stream_id) or not isinstance(prev_ids, list) or len(prev_ids) > 100
            or not all(_stream_id_ok(p) for p in prev_ids)
            or not isinstance(deleted, bool)
        ):
            logger.info("dropping a malformed or forged m.device_list_update from %s", origin)
            return
        assert isinstance(device_id, str)
        raw_keys = content.get("keys")
        keys = check_device_keys(user_id, device_id, raw_keys) if not deleted and raw_keys is not None else None
        name = content.get("device_display_name")
        name = name if isinstance(name, str) and len(name) <= MAX_DISPLAY_NAME else None
        if not await self.tracked(user_id):
            return  # no one here needs their devices; nothing is cached for them
        if keys is None and raw_keys is not None and not deleted:
            # Keys we cannot take as the device's (bad signature, another device's,
            # or a cross-signing key some servers announce this way): nothing of the
            # EDU is kept; the list is asked of the user's server instead.
            logger.info("m.device_list_update from %s with keys not the device's: refetching", origin)
            await self._locked(user_id, lambda: self._resync(user_id, also_seen=[stream_id]))
            return
        device = RemoteDevice(device_id, keys, name)
        await self._locked(user_id, lambda: self._apply(user_id, stream_id, prev_ids, device, deleted))

    async def _apply(
        self, user_id: str, stream_id: int, prev_ids: list[int], device: RemoteDevice, deleted: bool
    ) -> None:
        cached = await self.store.get(user_id)
        if cached is None:
            # Never fetched: local clients will ask, and the first query fetches it.
            await self.changes.remote_changed(user_id)
            return
        if stream_id in cached.seen:
            return  # applied already (a retransmission, or brought by a resync)
        in_order = all(p in cached.seen for p in prev_ids) if prev_ids else stream_id > cached.stream_id
        if cached.up_to_date and in_order:
            await self.store.apply_update(user_id, stream_id, device, deleted=deleted)
            await self.changes.remote_changed(user_id)
            return
        # A gap: an update we never received. Fetch the whole list again.
        await self._resync(user_id, also_seen=[stream_id])

    async def on_signing_key_update(self, origin: str, content: dict[str, Any]) -> None:
        """An m.signing_key_update EDU: the user's new master or self-signing key."""
        user_id = content.get("user_id")
        if not isinstance(user_id, str) or not domain_is(user_id, origin):
            logger.info("dropping a malformed or forged m.signing_key_update from %s", origin)
            return
        raw_master, raw_ssk = content.get("master_key"), content.get("self_signing_key")
        master = check_cross_signing_key(user_id, "master", raw_master) if raw_master is not None else None
        ssk = check_cross_signing_key(user_id, "self_signing", raw_ssk) if raw_ssk is not None else None
        if (raw_master is not None and master is None) or (raw_ssk is not None and ssk is None) or (
            master is None and ssk is None
        ):
            logger.info("dropping a malformed m.signing_key_update from %s", origin)
            return
        if not await self.tracked(user_id):
            return

        async def apply() -> None:
            await self.store.set_signing_keys(user_id, master, ssk)
            await self.changes.remote_changed(user_id)

        await self._locked(user_id, apply)

    # --- forgetting users no one here shares a room with ---

    def on_room_event(self, event: StoredEvent, room: RoomRecord) -> None:
        """A room service listener: after someone leaves (or is kicked or banned),
        the remote users it concerns may share no room with us any more."""
        if event.type != "m.room.member" or event.state_key is None:
            return
        if event.event.get("content", {}).get("membership") in ("join", "invite", "knock"):
            return
        task = asyncio.get_running_loop().create_task(self._forget_untracked(event.state_key, room))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget_untracked(self, user_id: str, room: RoomRecord) -> None:
        try:
            candidates = (
                [user_id] if not domain_is(user_id, self.server_name)
                else [u for u in await self.room_members(room) if not domain_is(u, self.server_name)]
            )
            for candidate in candidates:
                if not await self.tracked(candidate):
                    await self._locked(candidate, lambda c=candidate: self.store.drop(c))  # type: ignore[misc]
        except Exception:
            logger.exception("dropping device lists no longer shared failed")

    async def drain(self) -> None:
        """Wait for the background work under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _served(device: RemoteDevice) -> dict[str, Any]:
    keys = dict(device.keys or {})
    if device.display_name is not None:
        keys["unsigned"] = {**(keys.get("unsigned") or {}), "device_display_name": device.display_name}
    return keys


def _parse_user_devices(
    user_id: str, body: Any
) -> tuple[int, list[RemoteDevice], dict[str, Any] | None, dict[str, Any] | None]:
    """A /user/devices answer, checked: devices whose keys fail the checks are left out."""
    if not isinstance(body, dict) or body.get("user_id") != user_id:
        raise ValueError("user/devices answered for another user")
    stream_id = body.get("stream_id")
    devices = body.get("devices")
    if not _stream_id_ok(stream_id) or not isinstance(devices, list):
        raise ValueError("user/devices answered without stream_id and devices")
    out: list[RemoteDevice] = []
    for device in devices[:MAX_REMOTE_DEVICES]:
        if not isinstance(device, dict) or not _device_id_ok(device.get("device_id")):
            continue
        device_id = str(device["device_id"])
        keys = check_device_keys(user_id, device_id, device.get("keys"))
        name = device.get("device_display_name")
        name = name if isinstance(name, str) and len(name) <= MAX_DISPLAY_NAME else None
        if keys is not None:
            out.append(RemoteDevice(device_id, keys, name))
    master = check_cross_signing_key(user_id, "master", body.get("master_key"))
    ssk = check_cross_signing_key(user_id, "self_signing", body.get("self_signing_key"))
    return stream_id, out, master, ssk
