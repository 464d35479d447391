"""The end-to-end encryption EDUs (registered with homeserver/federation/edus.py).

* `m.device_list_update`: when a local user's devices change (`DeviceLists`
  tells `local_listeners`), the handler compares the user's devices that have
  keys (with the cross-signing signatures on them) with what it last announced
  (`AnnouncedDeviceStore`, a digest per device) and sends one EDU per device
  added, changed or deleted, to every server sharing a federated room with the
  user. Each EDU gets the next of the user's stream IDs and names the previous
  one in `prev_id`, so a receiver that missed one knows to fetch the list whole
  (`/user/devices`, which serves the last stream ID sent). Received ones go to
  `RemoteKeys.on_device_list_update`.
* `m.signing_key_update`: likewise for the user's master and self-signing keys
  (the user-signing key never leaves the server).
* `m.direct_to_device`: outbound messages are queued by `ToDeviceService` in
  the transaction of the client's request (durable); received ones go to
  `ToDeviceService.receive_remote`.

All three are durable EDUs (queued in the database outbox), sent only to servers
the federation policy allows; a received one about a user who is not of the
sending server is dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from canonicaljson import encode_canonical_json

from homeserver.federation.edus import OutgoingEdu, Submit, servers_sharing_rooms

if TYPE_CHECKING:
    from homeserver.e2ee.device_lists import DeviceLists
    from homeserver.e2ee.keys import KeysService
    from homeserver.e2ee.remote_keys import RemoteKeys
    from homeserver.e2ee.to_device import ToDeviceService
    from homeserver.records.rooms import RoomRecord
    from homeserver.storage.device_list_federation import AnnouncedDeviceStore
    from homeserver.storage.rooms import RoomStore

ServersInRoom = Callable[["RoomRecord"], Awaitable[Iterable[str]]]
# The announced-digest row of the cross-signing keys (no device ID is empty).
CROSS_SIGNING_ROW = ""


def _digest(obj: Any) -> str:
    return hashlib.sha256(encode_canonical_json(obj)).hexdigest()


class _Announcer:
    """What both key EDUs share: told of each local user's device-list change,
    they work out, in the sender's intake worker, what other servers must hear."""

    def __init__(
        self, *, device_lists: DeviceLists, keys: KeysService, announced: AnnouncedDeviceStore,
        remote: RemoteKeys, rooms: RoomStore, servers_in_room: ServersInRoom,
    ) -> None:
        self.device_lists = device_lists
        self.keys = keys
        self.announced = announced
        self.remote = remote
        self.rooms = rooms
        self.servers_in_room = servers_in_room

    def watch(self, submit: Submit) -> None:
        self.device_lists.local_listeners.append(lambda user_id: submit(lambda: self._outgoing(user_id)))

    async def _outgoing(self, user_id: str) -> list[OutgoingEdu]:
        raise NotImplementedError

    async def _destinations(self, user_id: str) -> list[str]:
        return sorted(await servers_sharing_rooms(self.rooms, self.servers_in_room, user_id))


class DeviceListUpdateEdu(_Announcer):
    edu_type = "m.device_list_update"


    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        await self.remote.on_device_list_update(origin, content)


    async def _outgoing(self, user_id: str) -> list[OutgoingEdu]:
        """The updates for the devices that changed since the last announcement;
        run by the sender's intake worker, one change at a time."""
        served, _ = await self.keys.local_keys(user_id, None, "", names=False)
        last, announced = await self.announced.announced(user_id)
        announced.pop(CROSS_SIGNING_ROW, None)
        changed: dict[str, str | None] = {
            d: digest for d, k in served.items() if announced.get(d) != (digest := _digest(k))
        }
        changed.update({d: None for d in announced if d not in served})
        if not changed:
            return []
        destinations = await self._destinations(user_id)
        edus: list[OutgoingEdu] = []
        stream_id = last
        for device_id in sorted(changed):
            prev, stream_id = stream_id, stream_id + 1
            content: dict[str, Any] = {
                "user_id": user_id, "device_id": device_id, "stream_id": stream_id,
                "prev_id": [prev] if prev else [], "deleted": changed[device_id] is None,
            }
            if changed[device_id] is not None:
                content["keys"] = served[device_id]
            edus.append(OutgoingEdu(self.edu_type, content, destinations))
        await self.announced.record(user_id, stream_id, changed)
        return edus if destinations else []


class SigningKeyUpdateEdu(_Announcer):
    edu_type = "m.signing_key_update"


    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        await self.remote.on_signing_key_update(origin, content)


    async def _outgoing(self, user_id: str) -> list[OutgoingEdu]:
        _, cross = await self.keys.local_keys(user_id, None, "", names=False)
        public = {t: cross[t] for t in ("master", "self_signing") if t in cross}
        if not public:
            return []
        digest = _digest(public)
        _, announced = await self.announced.announced(user_id)
        if announced.get(CROSS_SIGNING_ROW) == digest:
            return []
        await self.announced.set_digest(user_id, CROSS_SIGNING_ROW, digest)
        content: dict[str, Any] = {"user_id": user_id}
        if "master" in public:
            content["master_key"] = public["master"]
        if "self_signing" in public:
            content["self_signing_key"] = public["self_signing"]
        destinations = await self._destinations(user_id)
        return [OutgoingEdu(self.edu_type, content, destinations)] if destinations else []


class DirectToDeviceEdu:
    edu_type = "m.direct_to_device"

    def __init__(self, *, to_device: ToDeviceService) -> None:
        self.to_device = to_device

    async def receive(self, origin: str, content: dict[str, Any]) -> None:
        await self.to_device.receive_remote(origin, content)

    def watch(self, submit: Submit) -> None:
        """Nothing to watch: `ToDeviceService.send` queues these in the request's
        own transaction (so they are durable from the client's 200 on)."""
