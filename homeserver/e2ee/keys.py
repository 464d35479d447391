"""Device keys, one-time keys and fallback keys (the spec's "Key management API"):
`POST /keys/upload`, `/keys/query` and `/keys/claim` for this server's users.

Upload rules:

* `device_keys` must name the requesting user and device, list its algorithms,
  hold its `ed25519:<device_id>` key and be signed with that key; anything else
  is 400 `M_INVALID_PARAM`. A device uploading keys different from those stored
  replaces them and its user's device list is announced as changed (as Synapse
  does: a client that lost its crypto store but kept its access token starts over);
  identical keys change nothing.
* one-time keys are deduplicated by key ID: a key already stored with the same
  value is accepted again, the same ID with another value is 400 `M_INVALID_PARAM`
  and the upload stores none of its one-time keys.
* fallback keys replace the device's fallback key of their algorithm, unused;
  re-uploading the key in force keeps whether it was used.
* bounds: at most `MAX_KEYS_PER_UPLOAD` one-time keys and `MAX_FALLBACK_KEYS`
  fallback keys an upload (413 `M_TOO_LARGE`), identifiers of at most
  `MAX_ID_LENGTH` characters and key objects of at most `MAX_KEY_JSON` bytes
  (400 `M_INVALID_PARAM`).

Other servers' users are asked of their servers, or answered from the cached
device lists (homeserver/e2ee/remote_keys.py); this server's users are served to
other servers by `federation_query`, `claim_local` and `user_devices`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol, cast

from canonicaljson import encode_canonical_json
from unpaddedbase64 import decode_base64

from federation.events.signing import decode_verify_key_bytes
from homeserver.errors import MatrixError
from homeserver.identifiers import parse_user_id
from homeserver.records.e2ee import CrossSigningSignature, OneTimeKey

if TYPE_CHECKING:
    from homeserver.e2ee.remote_keys import RemoteKeys
    from homeserver.identifiers import LocalServer
    from homeserver.storage.device_list_federation import AnnouncedDeviceStore
    from homeserver.storage.devices import DeviceStore
    from homeserver.storage.e2ee_keys import E2eeKeyStore

MAX_KEYS_PER_UPLOAD = 500
MAX_FALLBACK_KEYS = 10
MAX_ID_LENGTH = 255
MAX_KEY_JSON = 4096
MAX_DEVICE_KEYS_JSON = 16384
MAX_QUERY_DEVICES = 10000
# What every answer counts even when the device has none (clients read it to top up).
COUNTED_ALGORITHMS = ("signed_curve25519",)


class DeviceListChanges(Protocol):
    """`DeviceLists` (homeserver/e2ee/device_lists.py): told when a local user's
    device keys or cross-signing keys change."""

    async def mark_changed(self, user_id: str) -> None: ...

    async def signature_changed(self, signer: str, target: str) -> None: ...


def invalid(message: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", message)


def ed25519_verify(obj: dict[str, Any], signer_user_id: str, key_id: str, public_key: str) -> bool:
    """Whether `obj` carries a valid signature by `signer_user_id`'s ed25519 key
    `key_id` ("ed25519:<name>") with public key `public_key` (unpadded base64)."""
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key))
    except Exception:
        return False
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict) or not isinstance(sigs.get(signer_user_id), dict):
        return False
    if not isinstance(sigs[signer_user_id].get(key_id), str):
        return False
    # signedjson's encoding (canonicaljson's) is what clients' key signatures are
    # checked against; imported when a server first verifies one, not at start-up
    # (its package reads the installed distributions when imported, about 0.8 MB).
    from signedjson.sign import verify_signed_json

    try:
        # A PyNaCl key with alg and version set, which is what signedjson's protocol types.
        verify_signed_json(obj, signer_user_id, cast(Any, verify_key))
    except Exception:
        return False
    return True


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise invalid(f"{what} must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return value


def _json_size(obj: Any) -> int:
    try:
        return len(encode_canonical_json(obj))
    except Exception:
        raise invalid("Keys must be plain JSON") from None


def check_key_object(key_id: str, key: object, *, what: str) -> str | dict[str, Any]:
    """A one-time or fallback key: "<algorithm>:<id>" to a key string or a key object."""
    _check_id(key_id, f"{what} ID")
    algorithm, sep, name = key_id.partition(":")
    if not sep or not algorithm or not name:
        raise invalid(f"{what} ID {key_id!r} must be <algorithm>:<key_id>")
    if isinstance(key, str):
        if len(key) > MAX_ID_LENGTH:
            raise invalid(f"{what} {key_id!r} is too long")
        return key
    if not isinstance(key, dict) or not isinstance(key.get("key"), str):
        raise invalid(f"{what} {key_id!r} must be a string or an object with a 'key' string")
    if _json_size(key) > MAX_KEY_JSON:
        raise invalid(f"{what} {key_id!r} is larger than {MAX_KEY_JSON} bytes")
    return key


_COUNTS_CACHE_SIZE = 50_000


class KeysService:
    def __init__(
        self, *, store: E2eeKeyStore, devices: DeviceStore, local_server: LocalServer,
        device_lists: DeviceListChanges, remote: RemoteKeys | None = None,
        announced: AnnouncedDeviceStore | None = None,
    ) -> None:
        self.announced = announced  # what other servers were told of our users' devices
        self.remote = remote  # other servers' users (None: reported as failures)
        self.store = store
        self.devices = devices
        self.local_server = local_server
        self.device_lists = device_lists
        # (user, device) -> (the user's key version read at, one-time key counts, unused
        # fallback algorithms): every /sync response carries them, few requests change
        # them. Each change of a user's keys bumps the version after its write, so a
        # read that raced the write is never served.
        self._counts: OrderedDict[tuple[str, str], tuple[int, dict[str, int], list[str]]] = OrderedDict()
        self._versions: dict[str, int] = {}
        self.count_hits = 0
        self.count_misses = 0

    def cache_stats(self) -> dict[str, int]:
        return {"hits": self.count_hits, "misses": self.count_misses, "entries": len(self._counts)}

    def _keys_changed(self, user_id: str) -> None:
        self._versions[user_id] = self._versions.get(user_id, 0) + 1

    async def devices_deleted(self, user_id: str) -> None:
        """Devices of the user were deleted, their keys with them (a device ID can come
        back with a new login, without its old keys)."""
        self._keys_changed(user_id)

    async def _device_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        version = self._versions.get(user_id, 0)
        key = (user_id, device_id)
        cached = self._counts.get(key)
        if cached is not None and cached[0] == version:
            self.count_hits += 1
            self._counts.move_to_end(key)
            return cached[1], cached[2]
        self.count_misses += 1
        counts = await self.store.one_time_key_counts(user_id, device_id)
        fallback = await self.store.unused_fallback_algorithms(user_id, device_id)
        self._counts[key] = (version, counts, fallback)
        self._counts.move_to_end(key)
        if len(self._counts) > _COUNTS_CACHE_SIZE:
            self._counts.popitem(last=False)
        return counts, fallback

    # --- upload ---

    def _check_device_keys(self, user_id: str, device_id: str, keys: object) -> dict[str, Any]:
        if not isinstance(keys, dict):
            raise invalid("device_keys must be an object")
        if keys.get("user_id") != user_id:
            raise invalid("device_keys.user_id must be the requesting user")
        if keys.get("device_id") != device_id:
            raise invalid("device_keys.device_id must be the requesting device")
        algorithms = keys.get("algorithms")
        if (
            not isinstance(algorithms, list) or len(algorithms) > 32
            or not all(isinstance(a, str) and 0 < len(a) <= MAX_ID_LENGTH for a in algorithms)
        ):
            raise invalid("device_keys.algorithms must be a list of algorithm names")
        dkeys = keys.get("keys")
        if (
            not isinstance(dkeys, dict) or len(dkeys) > 32
            or not all(isinstance(v, str) and len(k) <= MAX_ID_LENGTH and len(v) <= MAX_ID_LENGTH for k, v in dkeys.items())
        ):
            raise invalid("device_keys.keys must map key IDs to keys")
        if not isinstance(keys.get("signatures"), dict):
            raise invalid("device_keys.signatures must be an object")
        if _json_size(keys) > MAX_DEVICE_KEYS_JSON:
            raise invalid(f"device_keys is larger than {MAX_DEVICE_KEYS_JSON} bytes")
        key_id = f"ed25519:{device_id}"
        public = dkeys.get(key_id)
        if not isinstance(public, str):
            raise invalid(f"device_keys.keys must hold the device's {key_id} key")
        if not ed25519_verify(keys, user_id, key_id, public):
            raise invalid("device_keys is not signed by the device's ed25519 key")
        return keys

    def _check_key_map(self, keys: object, *, what: str, limit: int) -> list[OneTimeKey]:
        if keys is None:
            return []
        if not isinstance(keys, dict):
            raise invalid(f"{what} must be an object")
        if len(keys) > limit:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {limit} {what} an upload")
        return [OneTimeKey(k, check_key_object(k, v, what=what)) for k, v in keys.items()]

    async def upload(
        self, user_id: str, device_id: str, body: dict[str, Any]
    ) -> dict[str, int]:
        """Store what the body carries (everything checked before anything is stored);
        returns the device's one-time key counts."""
        device_keys = body.get("device_keys")
        checked = self._check_device_keys(user_id, device_id, device_keys) if device_keys is not None else None
        otks = self._check_key_map(body.get("one_time_keys"), what="one_time_keys", limit=MAX_KEYS_PER_UPLOAD)
        fallback = self._check_key_map(body.get("fallback_keys"), what="fallback_keys", limit=MAX_FALLBACK_KEYS)
        by_algorithm: dict[str, OneTimeKey] = {}
        for k in fallback:
            algorithm = k.key_id.split(":", 1)[0]
            if algorithm in by_algorithm:
                raise invalid(f"fallback_keys holds two keys of algorithm {algorithm!r}")
            by_algorithm[algorithm] = k
        try:
            if otks:
                clash = await self.store.add_one_time_keys(user_id, device_id, otks)
                if clash is not None:
                    raise invalid(f"One-time key {clash} already exists with a different value")
            for algorithm, k in by_algorithm.items():
                await self.store.set_fallback_key(user_id, device_id, algorithm, k)
        finally:
            self._keys_changed(user_id)
        if checked is not None:
            stored = (await self.store.get_device_keys(user_id, [device_id])).get(device_id)
            if stored != checked:
                await self.store.set_device_keys(user_id, device_id, checked)
                await self.device_lists.mark_changed(user_id)
        return await self.one_time_key_counts(user_id, device_id)

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts, _ = await self._device_counts(user_id, device_id)
        return {**dict.fromkeys(COUNTED_ALGORITHMS, 0), **counts}

    async def unused_fallback_algorithms(self, user_id: str, device_id: str) -> list[str]:
        _, fallback = await self._device_counts(user_id, device_id)
        return list(fallback)

    # --- query ---

    @staticmethod
    def _visible(sig: CrossSigningSignature, owner: str, reader: str) -> bool:
        """Signatures by the key's owner are public; another user's (their user-signing
        key on the master key) are shown only to that user."""
        return sig.signer_user_id in (owner, reader)

    @staticmethod
    def _with_signatures(obj: dict[str, Any], sigs: list[CrossSigningSignature]) -> dict[str, Any]:
        if not sigs:
            return obj
        out = dict(obj)
        merged = {u: dict(s) for u, s in (obj.get("signatures") or {}).items() if isinstance(s, dict)}
        for s in sigs:
            merged.setdefault(s.signer_user_id, {})[s.signer_key_id] = s.signature
        out["signatures"] = merged
        return out

    async def local_keys(
        self, user_id: str, device_ids: list[str] | None, reader: str, *, names: bool = True
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """A local user's device keys by device (with the cross-signing signatures
        on them and, if `names`, the devices' display names) and their cross-signing
        keys by type ("master", "self_signing", and "user_signing" when `reader` is
        the user), with the signatures `reader` may see."""
        keys = await self.store.get_device_keys(user_id, device_ids or None)
        sigs = [s for s in await self.store.signatures_on(user_id) if self._visible(s, user_id, reader)]
        device_names = (
            {d.device_id: d.display_name for d in await self.devices.list_devices(user_id)} if keys and names else {}
        )
        served: dict[str, Any] = {}
        for device_id, obj in keys.items():
            obj = self._with_signatures(obj, [s for s in sigs if s.target_key_id == device_id])
            unsigned = dict(obj.get("unsigned") or {})
            if device_names.get(device_id) is not None:
                unsigned["device_display_name"] = device_names[device_id]
            if unsigned:
                obj = {**obj, "unsigned": unsigned}
            served[device_id] = obj
        cross: dict[str, dict[str, Any]] = {}
        for key_type, key in (await self.store.get_cross_signing_keys(user_id)).items():
            if key_type == "user_signing" and user_id != reader:
                continue
            targets = set(key.get("keys", {}).values())
            cross[key_type] = self._with_signatures(key, [s for s in sigs if s.target_key_id in targets])
        return served, cross

    async def query(
        self, reader: str, wanted: dict[str, list[str]], timeout_ms: Any = None
    ) -> dict[str, Any]:
        """/keys/query: local users from the database, other servers' users from
        their servers (or the cached device lists), within `timeout_ms`."""
        if sum(max(len(d), 1) for d in wanted.values()) > MAX_QUERY_DEVICES:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_QUERY_DEVICES} devices a query")
        answer = await self._query_local(reader, wanted)
        remote = {u: d for u, d in wanted.items() if parse_user_id(u) is not None and not self.local_server.is_mine(u)}
        if remote:
            got = await self._remote_query(remote, timeout_ms)
            for name in ("device_keys", "master_keys", "self_signing_keys", "failures"):
                answer[name].update(got.get(name, {}))
        return answer

    async def _remote_query(self, remote: dict[str, list[str]], timeout_ms: Any) -> dict[str, Any]:
        if self.remote is None:
            return {"failures": {u.partition(":")[2]: _remote_failure() for u in remote}}
        return await self.remote.query(remote, self.remote.timeout_s(timeout_ms))

    async def _query_local(self, reader: str, wanted: dict[str, list[str]], *, names: bool = True) -> dict[str, Any]:
        device_keys: dict[str, Any] = {}
        by_type: dict[str, dict[str, Any]] = {"master": {}, "self_signing": {}, "user_signing": {}}
        for user_id, device_ids in wanted.items():
            if parse_user_id(user_id) is None or not self.local_server.is_mine(user_id):
                continue
            served, cross = await self.local_keys(user_id, device_ids, reader, names=names)
            device_keys[user_id] = served
            for key_type, key in cross.items():
                if key_type in by_type:
                    by_type[key_type][user_id] = key
        return {
            "device_keys": device_keys, "failures": {}, "master_keys": by_type["master"],
            "self_signing_keys": by_type["self_signing"], "user_signing_keys": by_type["user_signing"],
        }

    async def federation_query(self, wanted: dict[str, list[str]]) -> dict[str, Any]:
        """POST /_matrix/federation/v1/user/keys/query: this server's users only,
        without device display names (as Synapse by default: they are not for
        other organizations to read) and with only the owners' signatures."""
        if sum(max(len(d), 1) for d in wanted.values()) > MAX_QUERY_DEVICES:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_QUERY_DEVICES} devices a query")
        answer = await self._query_local("", wanted, names=False)
        return {k: answer[k] for k in ("device_keys", "master_keys", "self_signing_keys")}

    async def user_devices(self, user_id: str) -> dict[str, Any]:
        """GET /_matrix/federation/v1/user/devices/{userId} of a local user: the
        devices that have keys, and `stream_id`, the last m.device_list_update sent."""
        stream_id = await self.announced.last_stream_id(user_id) if self.announced is not None else 0
        served, cross = await self.local_keys(user_id, None, "", names=False)
        answer: dict[str, Any] = {
            "user_id": user_id, "stream_id": stream_id,
            "devices": [{"device_id": d, "keys": k} for d, k in sorted(served.items())],
        }
        if "master" in cross:
            answer["master_key"] = cross["master"]
        if "self_signing" in cross:
            answer["self_signing_key"] = cross["self_signing"]
        return answer

    # --- claim ---

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_ms: Any = None) -> dict[str, Any]:
        if sum(len(d) for d in wanted.values()) > MAX_QUERY_DEVICES:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_QUERY_DEVICES} devices a claim")
        claimed = await self.claim_local(wanted)
        failures: dict[str, Any] = {}
        remote = {u: d for u, d in wanted.items() if parse_user_id(u) is not None and not self.local_server.is_mine(u)}
        if remote and self.remote is None:
            failures = {u.partition(":")[2]: _remote_failure() for u in remote}
        elif remote:
            assert self.remote is not None
            got = await self.remote.claim(remote, self.remote.timeout_s(timeout_ms))
            claimed.update(got["one_time_keys"])
            failures = got["failures"]
        return {"one_time_keys": claimed, "failures": failures}

    async def claim_local(self, wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, dict[str, Any]]]:
        """One-time keys (else fallback keys) of this server's users' devices; the
        answer of /keys/claim for them and of the federation's /user/keys/claim."""
        if sum(len(d) for d in wanted.values()) > MAX_QUERY_DEVICES:
            raise MatrixError(413, "M_TOO_LARGE", f"At most {MAX_QUERY_DEVICES} devices a claim")
        claimed: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, devices in wanted.items():
            if parse_user_id(user_id) is None or not self.local_server.is_mine(user_id):
                continue
            for device_id, algorithm in devices.items():
                if not _usable_id(device_id) or not _usable_id(algorithm):
                    continue  # no such device or algorithm can exist
                try:
                    key: OneTimeKey | None = await self.store.claim_one_time_key(user_id, device_id, algorithm)
                    if key is None:
                        fb = await self.store.claim_fallback_key(user_id, device_id, algorithm)
                        key = OneTimeKey(fb.key_id, fb.key) if fb is not None else None
                finally:
                    self._keys_changed(user_id)
                if key is not None:
                    claimed.setdefault(user_id, {})[device_id] = {key.key_id: key.key}
        return claimed

    # --- removal ---

    async def devices_removed(self, user_id: str) -> None:
        """Devices of the user were deleted (their keys with them, in the same
        transaction): their device list changed."""
        await self.device_lists.mark_changed(user_id)


def _usable_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_LENGTH and "\x00" not in value


def _remote_failure() -> dict[str, Any]:
    return {"status": 503, "message": "Federation is disabled"}
